"""Work that misbehaves, and the executor's rules for it (engine/executor.py): what a tool raises, BaseException
too, is its job's failure; work told to stop (a cancel, a time-out) that goes on is abandoned after the grace
period; a sync tool's thread, which cannot be stopped, keeps its slot and is never run again beside itself;
and job threads never take the server's own.

In-process on purpose for what cannot kill the test process; SystemExit and KeyboardInterrupt, which did
kill the server, are tested against the real server (tests/e2e/test_hostile_work_e2e.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

from tests.engine import test_scheduler
from tests.engine.test_scheduler import (
    WAIT,
    Backend,
    decide_now,
    finished,
    needs,
    on_stores,
    probe,
    task,
)
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.engine.recovery import RELEASED
from vibe_jobs.jobtool import make_spec
from vibe_jobs.store import open_store
from vibe_jobs.store.sqlite import SQLiteStore

backend = test_scheduler.backend  # the fixture: every store, with the scheduler a deployment on it uses


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What blocked threads wait on: opened by the test, and at its end whatever happened."""
    opened = threading.Event()
    yield opened
    opened.set()


class CustomBase(BaseException):
    pass


RAISED: dict[str, tuple[Callable[[], BaseException], str]] = {
    "custom": (lambda: CustomBase("not an Exception"), "CustomBase: not an Exception"),
    "generatorexit": (GeneratorExit, "GeneratorExit"),
    "cancelled": (asyncio.CancelledError, "CancelledError"),  # its own: nobody cancelled it
}


def stuck(gate: threading.Event) -> None:
    """A sync tool's body: blocks its thread until `gate` is set (bounded, should the fixture not run)."""
    gate.wait(30)


def swallowing(release: threading.Event, started: anyio.Event, swallowed: list[str] | None = None) -> Callable[[], Any]:
    """A job function that swallows every cancellation (noted in `swallowed`) until `release`; `started` is set as
    it begins."""

    async def swallow() -> str:
        started.set()
        while not release.is_set():
            try:
                await anyio.sleep(0.01)
            except BaseException:  # hostile on purpose
                if swallowed is not None:
                    swallowed.append("cancel")
        return "late"

    return swallow


@on_stores("memory", "postgres")
@pytest.mark.parametrize("kind", sorted(RAISED))
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_what_a_tool_raises_is_its_jobs_failure_even_a_base_exception(
    backend: Backend, kind: str, sync: bool
) -> None:
    make, text = RAISED[kind]

    async def raising() -> None:
        raise make()

    def raising_in_thread() -> None:
        raise make()

    spec = make_spec(raising_in_thread if sync else raising, name="raising")
    async with backend.running([spec], Settings(max_concurrent=1)) as (m, _):
        rec = await finished(m, await m.create_job("raising", {}))
        await probe(m)  # the engine goes on, its one slot free
    assert rec.status is JobStatus.FAILED, rec.status
    assert rec.progress_message == f"Job failed: {text}"


async def test_a_running_job_is_left_for_recovery_when_the_server_stops(tmp_path: Path) -> None:
    """The server's own cancellation still goes through the run (it is not taken for the tool's error)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    started = anyio.Event()

    async def waits() -> None:
        started.set()
        await anyio.sleep_forever()

    manager = JobManager(SQLiteStore(url), Settings())
    LocalSource(manager, {"waits": make_spec(waits, name="waits")})
    async with manager:
        job_id = await manager.create_job("waits")
        with anyio.fail_after(WAIT):
            await started.wait()
    store = SQLiteStore(url)
    await store.open()
    try:
        rec = await store.get(job_id)
    finally:
        await store.close()
    assert rec is not None and rec.status is JobStatus.RUNNING, rec and rec.progress_message


@on_stores("memory", "postgres")
async def test_a_cancelled_job_that_ignores_its_cancellation_is_abandoned_after_the_grace(backend: Backend) -> None:
    release, started = threading.Event(), anyio.Event()
    swallowed: list[str] = []
    spec = make_spec(swallowing(release, started, swallowed), name="swallow", retry_safe=True)
    async with backend.running([spec], Settings(max_concurrent=1), grace_seconds=0.2) as (m, _):
        try:
            job_id = await m.create_job("swallow", {})
            with anyio.fail_after(WAIT):
                await started.wait()
            await m.cancel_job(job_id, "user asked")
            rec = await finished(m, job_id)
            await probe(m)  # the only slot is free again, while the work still runs
            assert swallowed
        finally:
            release.set()  # else the work would hold up the manager's stop for ever
    assert rec.status is JobStatus.CANCELLED and rec.progress_message == "Job cancelled: user asked"
    assert "the work ignored cancellation for 0.2 s: abandoned" in (rec.diagnostics or [])
    assert rec.retry_count == 0


@on_stores("memory", "postgres")
async def test_a_sync_tool_past_its_time_out_is_not_run_again_while_its_thread_goes_on(
    backend: Backend, gate: threading.Event
) -> None:
    calls = []

    def blocking() -> str:
        calls.append(1)
        stuck(gate)
        return "done"

    spec = make_spec(blocking, name="blocking", retry_safe=True)  # a retry would run beside the first thread
    async with backend.running([spec], Settings(max_concurrent=1)) as (m, sched):
        job_id = await m.create_job("blocking", {}, task=task(timeout_seconds=0.3))
        rec = await finished(m, job_id)
        after = await m.create_job("blocking", {})
        await decide_now(sched)
        assert (await m.get_record(after)).status is JobStatus.PENDING  # the thread keeps the only slot
        gate.set()
        assert (await finished(m, after)).status is JobStatus.COMPLETED
    assert rec.status is JobStatus.FAILED and rec.retry_count == 0 and len(calls) == 2
    assert rec.progress_message == (
        "Job failed: JobTimeout: timed out, and the tool's thread cannot be stopped: it goes on until it returns"
        " (keeping the job's slot)"
    )


@on_stores("memory", "postgres")
async def test_a_cancelled_sync_tool_ends_at_once_and_its_thread_keeps_the_slot(
    backend: Backend, gate: threading.Event
) -> None:
    started = anyio.Event()

    def blocking(job: JobContext) -> str:
        anyio.from_thread.run_sync(started.set)
        stuck(gate)
        return "done"

    spec = make_spec(blocking, name="blocking")
    async with backend.running([spec], Settings(max_concurrent=1)) as (m, sched):
        job_id = await m.create_job("blocking", {})
        with anyio.fail_after(WAIT):
            await started.wait()
        await m.cancel_job(job_id, "user asked")
        rec = await finished(m, job_id)
        after = await m.create_job("blocking", {})
        await decide_now(sched)
        assert (await m.get_record(after)).status is JobStatus.PENDING
        gate.set()
        assert (await finished(m, after)).status is JobStatus.COMPLETED
    assert rec.status is JobStatus.CANCELLED
    assert "the tool's thread cannot be stopped: it goes on until it returns (keeping the job's slot)" in (
        rec.diagnostics or []
    )


@on_stores("sqlite")
async def test_blocking_sync_jobs_leave_the_servers_own_threads_free(backend: Backend, gate: threading.Event) -> None:
    """anyio's default limiter has 40 threads, which the server's own blocking work shares (the SQLite store's
    health check): 41 blocking jobs, within the concurrency limit, all run, and the check still answers."""
    jobs, lock = 41, threading.Lock()
    started, all_started = [0], anyio.Event()

    def blocking() -> str:
        with lock:
            started[0] += 1
            if started[0] == jobs:
                anyio.from_thread.run_sync(all_started.set)
        stuck(gate)
        return "done"

    spec = make_spec(blocking, name="blocking")
    async with backend.running([spec], Settings(max_concurrent=jobs + 5)) as (m, _):
        ids = [await m.create_job("blocking", {}, task=task(needs=needs())) for _ in range(jobs)]
        with anyio.fail_after(WAIT):
            await all_started.wait()
            assert await m.store.problem() is None
        gate.set()
        assert all([(await finished(m, job_id)).status is JobStatus.COMPLETED for job_id in ids])


@on_stores("memory")
async def test_a_stop_held_by_a_job_and_a_thread_that_ignore_it_takes_one_grace(
    backend: Backend, gate: threading.Event
) -> None:
    """A stop waited the grace for the runs (work that ignores its cancellation), then the grace again for a
    sync tool's thread still going (`Executor.threads_left`, before the process exits): two graces where one
    is enough (the thread's job was settled or handed back with the others; its outcome is refused whatever it
    does). The thread is given what is left of the stop's grace."""
    grace, release, started = 0.6, threading.Event(), anyio.Event()
    threads_going = threading.Semaphore(0)
    swallow = swallowing(release, started)

    def blocking() -> str:
        threads_going.release()
        stuck(gate)
        return "done"

    specs = [make_spec(swallow, name="swallow"), make_spec(blocking, name="blocking")]
    try:
        async with backend.running(specs, Settings(max_concurrent=2), grace_seconds=grace) as (m, sched):
            await m.create_job("swallow", {})
            await m.create_job("blocking", {})
            with anyio.fail_after(WAIT):
                await started.wait()
                await anyio.to_thread.run_sync(threads_going.acquire)
            began = anyio.current_time()
        left = await sched.executor.threads_left()
        took = anyio.current_time() - began
    finally:
        release.set()
    assert left and sched.executor.left_at_stop, (left, sched.executor.left_at_stop)
    assert grace <= took < 1.5 * grace, f"the stop took {took:.2f} s, the grace is {grace} s"


@on_stores("postgres")
async def test_jobs_left_behind_or_claimed_as_a_stop_began_are_handed_back_in_words_of_the_stop(
    backend: Backend,
) -> None:
    """A worker's stop hands back the jobs it interrupted (`recovery.hand_back`: "released unfinished at its worker's
    stop"), but not one whose work ignored its cancellation past the grace (left behind), nor one whose claim was
    written as the stop began (the claim's answer never came back: no run knew of it). Both stayed running, owned by
    a process gone, and another process's recovery failed them as "interrupted: worker lost", the words of a worker
    that died. Each reads what the stop's other jobs read now."""
    release, started = threading.Event(), anyio.Event()
    swallow = swallowing(release, started)
    specs = [make_spec(swallow, name="swallow"), make_spec(swallow, name="claimed")]
    try:
        async with backend.running(specs, Settings(max_concurrent=1), grace_seconds=0.2) as (m, _):
            left_behind = await m.create_job("swallow", {})
            with anyio.fail_after(WAIT):
                await started.wait()
            in_flight = await m.create_job("claimed", {})  # its one slot taken: this process claims nothing more
            # a claim of this process that its claim loop, stopped, never heard the answer of
            claimed = await m.store.claim_many(m.owner, m.settings.lease_ms, None, ["claimed"], 1, now=m.now())  # type: ignore[attr-defined]
            assert [rec.id for rec in claimed] == [in_flight], claimed
    finally:
        release.set()
    store = open_store(backend.store.url)
    await store.open()
    try:
        ends = {job_id: await store.get(job_id) for job_id in (left_behind, in_flight)}
    finally:
        await store.close()
    for job_id, rec in ends.items():
        assert rec is not None and rec.status is JobStatus.FAILED, (job_id, rec and rec.status)
        assert rec.progress_message == f"Job failed: {RELEASED}", rec.progress_message


@on_stores("memory")
async def test_a_job_failed_by_a_misuse_of_its_context_names_the_tool_s_line_not_vibe_jobs(backend: Backend) -> None:
    """`job.progress(150)` is refused inside vibe-jobs (InvalidParams), and its job's diagnostics said "raised at
    manager.py:... in _check_percent": the line to fix is the tool's own call."""

    async def overshooting(job: JobContext) -> None:
        await job.progress(150)

    async with backend.running([make_spec(overshooting, name="overshooting")], Settings()) as (m, _):
        rec = await finished(m, await m.create_job("overshooting", {}))
    assert rec.status is JobStatus.FAILED and "between 0 and 100" in (rec.progress_message or "")
    where = [line for line in rec.diagnostics or () if line.startswith("raised at ")]
    assert where == [f"raised at {Path(__file__).name}:{_line_of('await job.progress(150)')} in overshooting"]


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1) if line.strip() == text)
