"""The job source a deployment uses, chosen by the store: claims from a shared store (PostgreSQL),
else the in-memory queue of this process. Either one feeds the same executor and is the manager's
`Runner`."""

from __future__ import annotations

from collections.abc import Mapping

from vibe_jobs.engine.claims import ClaimSource
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager
from vibe_jobs.store.base import SharedJobStore

JobSource = LocalSource | ClaimSource


def make_source(
    manager: JobManager,
    tools: Mapping[str, JobToolSpec],
    *,
    run_jobs: bool = True,
    concurrency: int | None = None,
    grace_seconds: float = 5.0,
    reservation_ms: int = 5_000,
) -> JobSource:
    """The source for the manager's store; `run_jobs=False` (serve only) needs a shared store, where
    other processes run the jobs. `concurrency`: the jobs this process runs at once (default: the settings'
    `max_concurrent`), on either source."""
    if isinstance(manager.store, SharedJobStore):
        return ClaimSource(
            manager,
            tools,
            run_jobs=run_jobs,
            concurrency=concurrency,
            grace_seconds=grace_seconds,
            reservation_ms=reservation_ms,
        )
    if not run_jobs:
        raise ValueError(
            "--no-worker (run_jobs=False) needs a shared store (postgresql://): nothing else would run the jobs"
        )
    return LocalSource(
        manager, tools, concurrency=concurrency, grace_seconds=grace_seconds, reservation_ms=reservation_ms
    )
