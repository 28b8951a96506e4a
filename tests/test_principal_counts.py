"""Many principals on the memory store: a principal's counts (what its quotas and its statistics read) are kept as
its jobs change once first read, and go with the principal's last job. What a quota's count costs beside many
retained jobs: bench/quota_count.py."""

from __future__ import annotations

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.identity import Viewer
from vibe_jobs.results import text_result
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import MemoryStore

HOUR = 3600.0
DONE = text_result("ok")


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
    assert store._by is not None and store._by.counts == {} and store._by.active == {}, "a gone principal holds state"
