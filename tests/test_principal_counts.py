"""Many principals on the memory store: a principal's counts (what its quotas and its statistics read) are kept as
its jobs change, cost the same however many jobs the store retains, and go with the principal's last job."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import anyio
import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.identity import Viewer
from vibe_jobs.manager import JobManager
from vibe_jobs.results import text_result
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

HOUR = 3600.0
DONE = text_result("ok")


async def _retain(manager: JobManager, count: int, viewer: Viewer | None = None) -> None:
    async def one(i: int) -> None:
        job_id = await manager.create_job("echo", {"i": i}, viewer=viewer)
        await manager.start_job(job_id)
        await manager.set_job_result(job_id, DONE)

    for start in range(0, count, 200):  # 200 at a time: the SQLite store commits them together
        async with anyio.create_task_group() as tg:
            for i in range(start, min(count, start + 200)):
                tg.start_soon(one, i)


async def _create_us(manager: JobManager, viewer: Viewer, n: int = 50) -> float:
    """Median microseconds of a create of `viewer`'s, over batches of `n` (quotas on: counted at each)."""
    batches = []
    for b in range(5):
        started = time.perf_counter()
        for i in range(n):
            await manager.create_job("echo", {"b": b, "i": i}, viewer=viewer)
        batches.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(batches)


@pytest.mark.every_store
async def test_a_quota_count_costs_the_same_beside_100_times_more_retained_jobs(
    make_manager: ManagerFactory, store: JobStore, store_kind: str, tmp_path: Path
) -> None:
    """A quota's count read every job the principal (memory: every principal) ever had that the store retains:
    with quotas on, a create took 0.6 ms beside 10,000 retained jobs and 5.2 ms beside 100,000 (memory); 3.7 ms
    beside 10,000 of its own (SQLite), and with 50,000 a burst of its creates waited in line for its quota past
    the 5 s bound and was refused. The quota on params read the principal's active jobs by reading every job
    (memory) or every job of the principal (SQLite, PostgreSQL) the same way."""
    settings = Settings(max_pending=100_000, quota_pending=10_000, quota_params_bytes=10_000_000)
    other = MemoryStore() if store_kind == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'few.db'}")
    await other.open()
    try:
        viewer = Viewer("alice")
        await _retain(make_manager(settings=Settings(max_pending=100_000), store=other), 200, viewer)
        retained = 50_000 if store_kind == "memory" else 20_000  # (the memory store reads faster)
        await _retain(make_manager(settings=Settings(max_pending=100_000)), retained, viewer)  # filled without quotas
        few, many = make_manager(settings=settings, store=other), make_manager(settings=settings)
        await _create_us(few, viewer, 10)  # warm-up
        ratios = [await _create_us(many, viewer) / await _create_us(few, viewer) for _ in range(3)]
    finally:
        await other.close()
    assert min(ratios) < 3, f"a create beside {retained:,} retained jobs cost {min(ratios):.1f}x one beside 200"


async def test_each_principals_counts_follow_its_jobs_and_go_with_them(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    manager = make_manager(settings=Settings(max_pending=100_000))
    store = manager.store
    assert isinstance(store, MemoryStore)
    first: list[str] = []
    for p in range(1_000):
        viewer = Viewer(f"p{p}")
        ids = [await manager.create_job("echo", {"i": i}, viewer=viewer) for i in range(3)]
        first = first or ids
        await manager.start_job(ids[0])
        await manager.set_job_result(ids[1], text_result("no", is_error=True))
    expected = dict.fromkeys(JobStatus, 0) | {JobStatus.PENDING: 1, JobStatus.RUNNING: 1, JobStatus.FAILED: 1}
    for p in (0, 499, 999):
        assert await store.counts(f"p{p}") == expected
    assert await store.counts("nobody") == dict.fromkeys(JobStatus, 0)
    assert [rec.id for rec in await store.active(principal="p0")] == [first[0], first[2]]
    assert await store.active(principal="nobody") == []
    for rec in list(store.jobs.values()):
        if rec.status is JobStatus.PENDING:
            await manager.start_job(rec.id)
        if rec.status is not JobStatus.FAILED:
            await manager.set_job_result(rec.id, DONE)
    clock.advance(2 * HOUR)
    assert await manager.cleanup() == 3_000
    assert await store.counts("p0") == dict.fromkeys(JobStatus, 0)
    assert await store.active(principal="p0") == []
    assert store._counts_of == {} and store._active_of == {}, "a principal whose jobs are all gone still holds state"
