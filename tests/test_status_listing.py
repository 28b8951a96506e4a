"""The memory store lists a status few jobs hold from its index of jobs by status (built on the first such list, kept
as jobs change), not by going through every job newest first. What it costs: bench/list_jobs.py and
bench/dashboard_load.py (`/?status=running`)."""

from __future__ import annotations

import random
from typing import Any

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.models import JobRecord
from vibe_jobs.results import text_result
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import MemoryStore
from vibe_jobs.store.base import JobQuery


class CountingJobs(dict[str, JobRecord]):
    """`MemoryStore.jobs` counting the records looked up by id."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> JobRecord:
        self.reads += 1
        return super().__getitem__(key)


async def test_a_status_few_jobs_hold_is_listed_without_reading_every_job() -> None:
    store = MemoryStore()
    running = []
    for i in range(20_000):
        status = JobStatus.RUNNING if i % 4_000 == 7 else JobStatus.COMPLETED
        await store.insert(JobRecord(f"{i:032x}", "echo", {}, status, i, i))
        if status is JobStatus.RUNNING:
            running.append(f"{i:032x}")
    store.jobs = counting = CountingJobs(store.jobs)
    page = await store.query(JobQuery(JobStatus.RUNNING, limit=51))
    assert [rec.id for rec in page] == running[::-1]
    assert counting.reads < 100, counting.reads  # before: every job (20,000 lookups)
    counting.reads = 0
    older = await store.query(JobQuery(JobStatus.RUNNING, limit=2, before=(page[1].created_at, page[1].id)))
    assert [rec.id for rec in older] == running[::-1][2:4]
    assert counting.reads < 100, counting.reads
    completed = await store.query(JobQuery(JobStatus.COMPLETED, limit=3))  # many: the scan newest first
    assert [rec.id for rec in completed] == [f"{i:032x}" for i in (19_999, 19_998, 19_997)]


async def test_lists_by_status_follow_every_change(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(settings=Settings(max_pending=10_000, max_retention_ms=1_000))
    store = manager.store
    assert isinstance(store, MemoryStore)
    rng = random.Random(5)
    ids: list[str] = []
    deleted = 0
    for step in range(1_500):
        roll = rng.random()
        if roll < 0.4 or not ids:
            ids.append(await manager.create_job("echo", {"i": step}))
        else:
            rec = store.jobs.get(rng.choice(ids))
            if rec is not None and rec.status is JobStatus.PENDING:
                await manager.start_job(rec.id)
            elif rec is not None and rec.status is JobStatus.RUNNING:
                await manager.set_job_result(rec.id, text_result("ok", is_error=roll < 0.5))
        if step % 100 == 99:  # a list by each status (the first builds the index), then the clean-up's deletes
            for status in JobStatus:
                expected = sorted((r for r in store.jobs.values() if r.status is status), key=_key, reverse=True)
                assert await _every_page(store, status) == [r.id for r in expected], (step, status)
            clock.advance(0.6)
            deleted += await manager.cleanup()
        clock.advance(0.003)
    assert deleted > 100 and store._statuses is not None  # the index was built and followed deletes too


def _key(rec: JobRecord) -> tuple[int, str]:
    return (rec.created_at, rec.id)


async def _every_page(store: MemoryStore, status: JobStatus) -> list[str]:
    found: list[str] = []
    before = None
    while True:
        page = await store.query(JobQuery(status, limit=7, before=before))
        found += [rec.id for rec in page]
        if len(page) < 7:
            return found
        before = _key(page[-1])


async def test_lists_by_status_are_those_of_a_plain_scan_whatever_the_changes() -> None:
    """A differential check, many seeds: every page by status (each size, from any cursor, with the other filters)
    is the one a plain scan of the jobs newest first gives, through inserts (same millisecond, older timestamps,
    an id deleted and used again), status changes, reads (`touch`), adoptions and the retention's deletes."""
    statuses = list(JobStatus)
    for seed in range(40):
        rng = random.Random(seed)
        store, made = MemoryStore(), 0
        for step in range(250):
            roll = rng.random()
            if roll < 0.35 or not store.jobs:
                used = [job_id for job_id in (f"{i:04x}" for i in range(made)) if job_id not in store.jobs]
                job_id = rng.choice(used) if used and rng.random() < 0.1 else f"{made:04x}"
                made += job_id == f"{made:04x}"
                at = rng.choice((step, step, step - 5, 3))  # the same millisecond as others, or older
                rec = JobRecord(job_id, rng.choice("ab"), {}, rng.choice(statuses), at, at, principal=rng.choice("pq"))
                await store.insert(rec)
            elif roll < 0.7:
                job_id = rng.choice(list(store.jobs))
                await store.update(job_id, {"status": rng.choice(statuses), "finished_at": step, "updated_at": step})
            elif roll < 0.8:
                await store.touch(rng.choice(list(store.jobs)), step, step, None)
            elif roll < 0.85:
                pending = [r for r in store.jobs.values() if r.status is JobStatus.PENDING]
                await store.adopt_pending(pending[:3], "other", step)
            elif roll < 0.9:
                await store.delete_finished(step - rng.randrange(40), limit=rng.randrange(1, 20))
            else:
                status, limit = rng.choice(statuses), rng.randrange(1, 60)
                keys = sorted(((r.created_at, r.id) for r in store.jobs.values()), reverse=True)
                cut = rng.choice([None, *keys])
                tool, principal = rng.choice((None, "a")), rng.choice((None, "q"))
                query = JobQuery(status, tool, limit, cut, principal)
                scan = [
                    job_id
                    for key in keys
                    if (cut is None or key < cut)
                    and (rec := store.jobs[job_id := key[1]]).status is status
                    and tool in (None, rec.tool_name)
                    and principal in (None, rec.principal)
                ][:limit]
                assert [rec.id for rec in await store.query(query)] == scan, (seed, step, query)
