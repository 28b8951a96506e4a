"""Retention: finished jobs older than the retention are removed (and their memory freed); active jobs never."""

from __future__ import annotations

import gc
import time
import tracemalloc

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import FakeClock, ManagerFactory, stored_ids
from vibe_jobs.events import EventType
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.results import text_result
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore

pytestmark = pytest.mark.every_store

HOUR = 3600.0


async def _finished(manager: JobManager, status: JobStatus, tool: str = "echo") -> str:
    job_id = await manager.create_job(tool)
    await manager.start_job(job_id)
    if status is JobStatus.CANCELLED:
        await manager.cancel_job(job_id)
    else:
        await manager.set_job_result(job_id, text_result("x", is_error=status is JobStatus.FAILED))
    return job_id


async def test_cleanup_removes_only_old_finished_jobs(manager: JobManager, store: JobStore, clock: FakeClock) -> None:
    assert manager.settings.max_retention_ms == 3_600_000
    old_done = [await _finished(manager, s) for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)]
    old_pending = await manager.create_job("echo", {"p": 1})
    old_running = await manager.create_job("echo", {"r": 1})
    await manager.start_job(old_running)
    clock.advance(HOUR / 2)
    recent = await _finished(manager, JobStatus.COMPLETED)
    # a job created long ago that finished recently is judged by when it finished
    long_running = await manager.create_job("echo", {"long": 1})
    await manager.start_job(long_running)

    clock.advance(HOUR / 2)  # the old jobs finished exactly one retention ago: kept
    await manager.set_job_result(long_running, text_result("done at last"))
    assert await manager.cleanup() == 0
    assert len(await stored_ids(store)) == 7

    clock.advance(0.001)  # one millisecond more: gone
    assert await manager.cleanup() == 3
    assert set(await stored_ids(store)) == {old_pending, old_running, recent, long_running}
    for job_id in old_done:
        assert await store.get(job_id) is None

    clock.advance(10 * HOUR)  # pending and running jobs are never removed, however old
    assert await manager.cleanup() == 2
    assert set(await stored_ids(store)) == {old_pending, old_running}
    assert (await manager.get_job(old_running)).status is JobStatus.RUNNING
    counts = (await manager.statistics()).counts
    assert counts == {"pending": 1, "running": 1, "completed": 0, "failed": 0, "cancelled": 0}


async def test_cleanup_respects_the_configured_retention(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(settings=Settings(max_retention_ms=1000))
    job_id = await _finished(manager, JobStatus.COMPLETED)
    clock.advance(1.0)
    assert await manager.cleanup() == 0
    clock.advance(0.001)
    assert await manager.cleanup() == 1
    assert await manager.store.get(job_id) is None


async def test_cleanup_at_an_explicit_time(manager: JobManager, clock: FakeClock) -> None:
    job_id = await _finished(manager, JobStatus.FAILED)
    assert await manager.cleanup(now=clock.ms + 3_600_000) == 0
    assert await manager.cleanup(now=clock.ms + 3_600_001) == 1
    assert await manager.store.get(job_id) is None


async def test_expired_jobs_are_published(manager: JobManager, clock: FakeClock) -> None:
    done = await _finished(manager, JobStatus.COMPLETED)
    with manager.subscribe() as sub:
        clock.advance(2 * HOUR)
        await manager.cleanup()
        events = [sub._buffer.popleft() for _ in range(len(sub._buffer))]
    assert [(e.type, e.job_id) for e in events] == [(EventType.EXPIRED, done)]


async def test_the_cleanup_task_runs_on_its_interval(make_manager: ManagerFactory) -> None:
    """JOB_MANAGER_CLEANUP_INTERVAL: the cleanup task runs every interval. An interval shorter than a third of the
    lease (10 s by default) ran only at that third, so a job past a retention of 0.1 s stayed for 10 s."""
    settings = Settings(cleanup_interval_ms=100, max_retention_ms=100)  # the default lease: a beat every 10 s
    async with make_manager(clock=time.time, settings=settings) as manager:
        with manager.subscribe() as events:
            job_id = await _finished(manager, JobStatus.COMPLETED)
            active = await manager.create_job("echo")
            with anyio.fail_after(5):
                async for event in events:
                    if event.type is EventType.EXPIRED and event.job_id == job_id:
                        break
        assert await manager.store.get(job_id) is None
        assert (await manager.get_job(active)).status is JobStatus.PENDING


class _CleanupTimes(MemoryStore):
    """The memory store, noting when each clean-up pass asks it for finished jobs to delete."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[float] = []
        self.third = anyio.Event()

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        self.passes.append(anyio.current_time())
        if len(self.passes) >= 3:
            self.third.set()
        return await super().delete_finished(before, limit)


async def test_a_cleanup_interval_of_0_given_in_python_is_no_busy_loop() -> None:
    """The environment refuses an interval of 0, Python's Settings took it: the clean-up loop then ran a pass per
    turn of the event loop, a store query each, burning a core for as long as the server ran."""
    store = _CleanupTimes()
    async with JobManager(store, Settings(cleanup_interval_ms=0)):
        with anyio.fail_after(5):
            await store.third.wait()
    gaps = [b - a for a, b in zip(store.passes, store.passes[1:], strict=False)]
    assert min(gaps[:2]) >= 0.04, gaps


async def test_a_removed_job_is_not_found_and_dedupe_starts_afresh(manager: JobManager, clock: FakeClock) -> None:
    first = await manager.create_job("echo", {"a": 1}, dedupe=True)
    await manager.start_job(first)
    await manager.set_job_result(first, text_result("ok"))
    clock.advance(2 * HOUR)
    await manager.cleanup()
    assert (await manager.list_jobs()).jobs == []
    second = await manager.create_job("echo", {"a": 1}, dedupe=True)
    assert second != first
    assert await manager.create_job("echo", {"a": 1}, dedupe=True) == second


async def test_cleanup_removes_more_than_one_batch(manager: JobManager, store: JobStore, clock: FakeClock) -> None:
    failed = text_result("no", is_error=True)

    async def finished(i: int) -> None:
        await manager.set_job_result(await manager.create_job("echo", {"i": i}), failed)

    for start in range(0, 10_500, 500):  # the store deletes at most 10,000 per call
        async with anyio.create_task_group() as tg:  # 500 at a time: the SQLite store commits them together
            for i in range(start, start + 500):
                tg.start_soon(finished, i)
    keep = await manager.create_job("echo", {"keep": True})
    clock.advance(2 * HOUR)
    assert await manager.cleanup() == 10_500
    assert await stored_ids(store) == [keep]


@pytest.mark.parametrize(
    "count",
    [
        5_000,
        # under tracemalloc this takes 15-35 s (RUN_SLOW=1 runs it)
        pytest.param(100_000, marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
    ],
)
async def test_finished_jobs_are_removed_and_their_memory_freed(
    make_manager: ManagerFactory, clock: FakeClock, count: int, store_kind: str
) -> None:
    if store_kind != "memory":
        pytest.skip("measures the memory store's own memory")
    manager = make_manager()
    store = manager.store
    assert isinstance(store, MemoryStore)
    failed = text_result("no", is_error=True)
    await _finished(manager, JobStatus.COMPLETED, "warm-up")  # first-use allocations outside the measurement
    clock.advance(2 * HOUR)
    await manager.cleanup()

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(count):
            job_id = await manager.create_job("echo", {"i": i})
            await manager.set_job_result(job_id, failed)  # pending -> failed: one change per job
        del job_id
        grown, _ = tracemalloc.get_traced_memory()
        assert (await manager.statistics()).counts["failed"] == count

        clock.advance(HOUR + 0.001)
        assert await manager.cleanup() == count
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert store.jobs == {}
    assert sum((await store.counts()).values()) == 0
    growth = grown - before
    assert growth > count * 500  # the jobs really were held (about 0.7 KB each)
    assert after - before < 0.1 * growth, f"{(after - before) / 1e6:.2f} MB of {growth / 1e6:.1f} MB not freed"


async def _expired_jobs(manager: JobManager, count: int) -> None:
    failed = text_result("no", is_error=True)

    async def finished(i: int) -> None:
        await manager.set_job_result(await manager.create_job("echo", {"i": i}), failed)

    for start in range(0, count, 500):  # 500 at a time: the SQLite store commits them together
        async with anyio.create_task_group() as tg:
            for i in range(start, min(count, start + 500)):
                tg.start_soon(finished, i)


async def test_a_sweep_of_many_batches_lets_other_work_run_between_them(
    manager: JobManager, store: JobStore, clock: FakeClock
) -> None:
    """The retention deletes in batches, and the event loop serves other work between them: on the memory
    store, whose calls never wait, a sweep of 100,000 expired jobs held every other task (tool calls, progress,
    health) for its whole 250-450 ms, 1,000,000 for 24-37 s."""
    await _expired_jobs(manager, 10_500)  # the store deletes at most 10,000 per call
    clock.advance(2 * HOUR)
    turns = 0
    swept = anyio.Event()

    async def other_work() -> None:
        nonlocal turns
        while not swept.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_work)
        await anyio.lowlevel.checkpoint()  # the other task runs once before the sweep starts
        before = turns
        assert await manager.cleanup() == 10_500
        during = turns - before
        swept.set()
    assert during >= 1, "no other task ran while the sweep deleted two batches"
    assert await stored_ids(store) == []


async def test_list_jobs_pages_every_kept_job_once_after_a_sweep_of_the_memory_store(
    make_manager: ManagerFactory, clock: FakeClock, store_kind: str
) -> None:
    """The memory store drops deleted jobs' keys from its paging order a part at a time: pages read over the
    keys still there list every kept job exactly once, also a job stored again under a deleted job's id."""
    if store_kind != "memory":
        pytest.skip("the memory store's paging order")
    manager = make_manager(settings=Settings(max_pending=200_000))
    failed = text_result("no", is_error=True)
    kept: list[str] = []
    deleted: list[str] = []
    for i in range(120_000):  # more keys than one batch's part of the paging order (COMPACT_STEP)
        job_id = await manager.create_job("echo", {"i": i})
        if i % 3:
            await manager.set_job_result(job_id, failed)  # expires
            deleted.append(job_id)
        else:
            kept.append(job_id)
        clock.advance(0.001)
    clock.advance(2 * HOUR)
    assert await manager.cleanup() == 80_000
    now = clock.ms
    assert await manager.store.insert(JobRecord(deleted[0], "echo", {}, JobStatus.PENDING, now, now))
    kept.append(deleted[0])
    listed: list[str] = []
    cursor = None
    while True:
        page = await manager.list_jobs(limit=500, cursor=cursor)
        listed += [job.id for job in page.jobs]
        if not (cursor := page.next_cursor):
            break
    assert len(listed) == len(set(listed)) == len(kept)
    assert set(listed) == set(kept)
