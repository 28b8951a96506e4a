"""A run that lost its job, or whose job was cancelled elsewhere, on every store with the scheduler a
deployment on it uses (product bugs the fault runs found, tests/faults).

"Elsewhere" is a second manager on the same store, as another process would be: it takes the job over
(adopts it and claims it as the next attempt) or asks for a cancel while this process runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from tests.engine.test_scheduler import STORES, WAIT, Backend, FakeClock, make_store
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.engine.sources import JobSource
from vibe_jobs.jobtool import make_spec
from vibe_jobs.store import MemoryStore, open_store


@pytest.fixture(params=STORES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    store = make_store(request.param, tmp_path)
    try:
        yield Backend(request.param, store)
    finally:
        await store.close()
        if request.param == "postgres":
            await store.drop_schema()  # type: ignore[attr-defined]


@asynccontextmanager
async def elsewhere(b: Backend) -> AsyncIterator[JobManager]:
    """Another process on the backend's store (the same store object in memory, a store of its own else)."""
    if isinstance(b.store, MemoryStore):
        yield JobManager(b.store, Settings(), owner="elsewhere")
        return
    store = open_store(b.store.url)
    await store.open()
    try:
        yield JobManager(store, Settings(), owner="elsewhere")
    finally:
        await store.close()


async def drained(sched: JobSource) -> None:
    with anyio.fail_after(WAIT):
        await sched.drained()


async def test_a_stale_attempts_retryable_failure_leaves_the_newer_attempt_running(backend: Backend) -> None:
    """Attempt 1 fails with a retryable error after the job was taken over (attempt 2 runs elsewhere):
    its retry is refused, so the newer attempt is not requeued under the process running it."""
    started, fail = anyio.Event(), anyio.Event()

    async def flaky(job: JobContext) -> str:
        started.set()
        await fail.wait()
        raise RuntimeError("flaky")

    spec = make_spec(flaky, name="flaky", retry_safe=True, max_retries=3)
    async with elsewhere(backend) as other, backend.running([spec], clock=FakeClock()) as (here, sched):
        job_id = await here.create_job("flaky")
        with anyio.fail_after(WAIT):
            await started.wait()
        # taken over: adopted and claimed elsewhere as attempt 2 (one change, so no claim here comes between)
        await other.mutate(job_id, lambda r: {"attempt": r.attempt + 1, "owner": other.owner})
        fail.set()
        await drained(sched)
        rec = await here.get_record(job_id)
    assert (rec.status, rec.attempt, rec.owner, rec.retry_count) == (JobStatus.RUNNING, 2, "elsewhere", 0)


async def test_a_cancel_requested_elsewhere_is_not_lost_when_the_run_fails_retryably(backend: Backend) -> None:
    """A cancel asked for by another process while this one runs the job (so it is only requested) and a
    retryable failure of the run: the job ends cancelled, it is not queued again (where a claim, which
    skips cancel requests, would leave it pending for ever)."""
    go = anyio.Event()

    async def flaky(job: JobContext) -> str:
        await go.wait()
        async with elsewhere(backend) as other:
            await other.cancel_job(job.job_id, "not wanted any more")
        raise RuntimeError("flaky")  # before this process could see the request

    spec = make_spec(flaky, name="flaky", retry_safe=True, max_retries=3)
    async with backend.running([spec], clock=FakeClock()) as (here, sched):
        job_id = await here.create_job("flaky")
        go.set()
        rec = await here.wait(job_id, WAIT)
        await drained(sched)
        rec = await here.get_record(job_id)
    assert rec.status is JobStatus.CANCELLED, (rec.status, rec.progress_message)
    assert rec.cancel_requested == "not wanted any more"
