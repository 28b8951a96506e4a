"""The engine at its edges: stopping with a backlog, a store that refuses the outcome for a while,
and work abandoned after its time-out (its slot is given back exactly once)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.engine.executor import Run
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.jobtool import make_spec
from vibe_jobs.store import MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

WAIT = 10


async def test_stopping_with_a_backlog_leaves_the_queued_jobs_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    started, release = anyio.Event(), anyio.Event()

    async def slow(job: JobContext) -> str:
        started.set()
        await release.wait()
        return "done"

    spec = make_spec(slow, name="slow", retry_safe=True)
    first = JobManager(SQLiteStore(url), Settings(max_concurrent=1))
    LocalSource(first, {"slow": spec})
    async with first:
        ids = [await first.create_job("slow") for _ in range(5)]
        with anyio.fail_after(WAIT):
            await started.wait()
    # the one running job was interrupted; none of the four queued ones was claimed on the way out
    store = SQLiteStore(url)
    await store.open()
    try:
        stopped = [await store.get(job_id) for job_id in ids]
    finally:
        await store.close()
    pending = [rec for rec in stopped if rec is not None and rec.status is JobStatus.PENDING]
    assert len(pending) == 4, [rec and rec.status for rec in stopped]
    assert all(rec.attempt == 0 for rec in pending)  # never claimed


@contextmanager
def events_named(name: str, seen: anyio.Event) -> Iterator[None]:
    """Set `seen` when a log event called `name` is emitted (logging stays otherwise unchanged)."""

    def notice(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.get("event") == name:
            seen.set()
        return event

    config = structlog.get_config()
    structlog.configure(processors=[notice, *config["processors"]])
    try:
        yield
    finally:
        structlog.configure(processors=config["processors"])


async def test_an_outcome_the_store_refuses_for_a_while_is_written_once_it_accepts(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    running, locked = anyio.Event(), anyio.Event()

    async def quick(job: JobContext) -> str:
        running.set()
        await locked.wait()
        return "written at last"

    manager = JobManager(SQLiteStore(f"sqlite:///{db}?busy_timeout=0.05"), Settings())
    LocalSource(manager, {"quick": make_spec(quick, name="quick")})
    retried = anyio.Event()
    async with manager:
        locker = sqlite3.connect(db, isolation_level=None)
        try:
            with events_named("job.outcome_retry", retried):
                job_id = await manager.create_job("quick")
                with anyio.fail_after(WAIT):
                    await running.wait()
                    locker.execute("BEGIN EXCLUSIVE")  # another process holds the file: every write fails
                    locked.set()
                    await retried.wait()  # the outcome was refused at least once ...
        finally:
            locker.close()  # ... and is written once the lock is gone
        rec = await manager.wait(job_id, WAIT)
    assert rec.status is JobStatus.COMPLETED and "written at last" in str(rec.result)


async def test_an_abandoned_run_gives_its_slot_back_once() -> None:
    async def noop() -> None:
        return None

    manager = JobManager(MemoryStore(), Settings(max_concurrent=1))
    source = LocalSource(manager, {"noop": make_spec(noop, name="noop")})
    async with manager:
        job_id = await manager.create_job("noop")
        await manager.wait(job_id, WAIT)
        rec = await manager.get_record(job_id)
        needs = (10.0, 1.0, 0.0)
        source._take("noop", needs, +1)  # a run holding a slot ...
        run = Run(JobContext(manager, job_id, 1, "noop"), needs, rec)
        source.executor._release("noop", needs, run)  # ... freed when its abandoned failure is written
        source.executor._release("noop", needs, run)  # ... and again when the stubborn work returns late
        assert source._per_tool["noop"] == 0 and source._usage == [0.0, 0.0, 0.0]
