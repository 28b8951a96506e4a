"""What a ticker pass reads of the jobs its due schedules fired last, on the real SQLite and PostgreSQL stores
(counting the jobs read by id): many schedules due at one tick cost one read of their last jobs, not one each,
and those of overlap allow (the default), whose rule asks nothing of their last job, none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import postgres_url, with_new_schema
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.engine.ticker import Ticker
from vibe_jobs.jobtool import make_spec
from vibe_jobs.results import text_result
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.store import JobQuery, JobStore
from vibe_jobs.testing.counting import CountingReads, CountingSQLite

PER_RULE = 100  # every-minute schedules of each overlap rule, all due at the same tick


def echo(text: str) -> str:
    return text


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        yield CountingSQLite(f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    pytest.importorskip("asyncpg")
    from vibe_jobs.store.postgres import PostgresStore

    class CountingPostgres(CountingReads, PostgresStore):
        """The PostgreSQL store, counting the jobs read."""

    url = with_new_schema(postgres_url("the PostgreSQL ticker reads"), "vj_tick")
    try:
        yield CountingPostgres(url)
    finally:
        await PostgresStore(url).drop_schema()


async def due_every_minute(m: JobManager, overlap: str, last_job_id: str, n: int, name: str = "") -> None:
    """`n` every-minute schedules of `overlap` (ids `name or overlap` and a number), created a minute ago, due
    now, each having fired `last_job_id`."""
    now = m.now()
    for i in range(n):
        rec = ScheduleRecord(
            f"{name or overlap}{i:04d}", "echo", {"text": "hi"}, None, 60.0, "UTC", None, None, False, "run_once", 10,
            overlap, "medium", None, now - 60_000, now, now - 60_000, now - 60_000, last_job_id=last_job_id,
        )  # fmt: skip
        await m.store.insert_schedule(rec)  # type: ignore[attr-defined]


async def test_a_tick_of_many_due_schedules_reads_their_last_jobs_at_once(store: Any) -> None:
    """300 every-minute schedules due at one tick (100 of each overlap rule): each one's last job was read
    alone before it fired, 300 store reads a tick (1,000 such schedules: 1,000 reads a minute, half a second of a
    PostgreSQL pass). Now one read, of the last jobs of the 200 whose rule asks; the rules still hold: a skip
    schedule whose last job runs skips its tick, the others fire."""
    async with JobManager(store, Settings(max_pending=10_000)) as m:
        done = await m.create_job("echo", {"text": "done"})
        await m.start_job(done)
        await m.set_job_result(done, text_result("ok"))
        running = await m.create_job("echo", {"text": "running"})
        await m.start_job(running)
        await due_every_minute(m, "allow", running, PER_RULE)
        await due_every_minute(m, "queue", done, PER_RULE)
        await due_every_minute(m, "skip", done, PER_RULE - 1)
        await due_every_minute(m, "skip", running, 1, "held")  # "held0000": a skip schedule its running job holds
        ticker = Ticker(Schedules(m, {"echo": make_spec(echo)}))
        store.reads = store.calls = 0
        await ticker.tick()
        assert (store.calls, store.reads) == (1, 2), (store.calls, store.reads)  # the two jobs, at once: was 300, 300
        assert ticker.fired == 3 * PER_RULE - 1
        fired = await schedule_ids_fired(store)
        assert "held0000" not in fired and len(fired) == 3 * PER_RULE - 1
        held = await m.store.get_schedule("held0000")  # type: ignore[attr-defined]
        assert held is not None and held.skipped == 1 and held.last_job_id == running


async def schedule_ids_fired(store: JobStore) -> set[str]:
    jobs = await store.query(JobQuery(status=JobStatus.PENDING, limit=10_000))
    return {job.schedule_id for job in jobs if job.schedule_id is not None}
