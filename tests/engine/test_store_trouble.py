"""A failing store against the real SQLite store, the real manager and the real local source: a job
accepted before the store failed runs once the store works again (no restart), and health names the
failure meanwhile."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from vibe_jobs import JobContext
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.errors import StoreFull
from vibe_jobs.jobtool import make_spec
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import STORE_CALM_MS
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.settings import Settings
from vibe_jobs.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.timeout(60)
CALLS = itertools.count()


async def flaky(job: JobContext) -> str:
    """Fails its first run (so that the job waits, accepted and pending, for its retry)."""
    if next(CALLS) == 0:
        raise RuntimeError("first run fails")
    return "ran"


@asynccontextmanager
async def running(db: Path, ahead: list[float] | None = None) -> AsyncIterator[JobManager]:
    """A manager on the SQLite file `db`, whose ticks run `ahead[0]` seconds ahead of the monotonic clock."""
    leap = ahead if ahead is not None else [0.0]
    ticks = lambda: time.monotonic() + leap[0]  # noqa: E731
    m = JobManager(SQLiteStore(f"sqlite:///{db}?busy_timeout=0.2"), Settings(), ticks=ticks)
    retry = RetryPolicy(max_retries=3, initial_delay_ms=800, jitter=0)
    LocalSource(m, {"flaky": make_spec(flaky, name="flaky", retry=retry)})
    async with m:
        yield m


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    """Poll `condition` with a deadline (the store's state has no event to wait on from outside)."""
    with anyio.fail_after(seconds):
        while not await condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_a_job_waiting_while_the_store_fails_runs_when_it_works_again(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    ahead = [0.0]
    async with running(db, ahead) as manager:
        job_id = await manager.create_job("flaky", {})

        async def waiting_for_retry() -> bool:
            rec = await manager.get_record(job_id)
            return rec.retry_count == 1 and rec.status.value == "pending"

        await until(waiting_for_retry)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every write of the server fails (locked) from here on
        try:

            async def degraded() -> bool:
                health = (await manager.statistics()).health
                return health.status != "healthy" and any("job store failed" in r for r in health.reasons)

            await until(degraded)  # the retry came due and its claim failed
            assert (await manager.get_record(job_id)).status.value == "pending"
        finally:
            blocker.execute("ROLLBACK")  # the store works again; nobody restarts anything
            blocker.close()

        async def ran() -> bool:
            return (await manager.get_record(job_id)).status.value == "completed"

        await until(ran)
        health = (await manager.statistics()).health
        assert [r for r in health.reasons if "job store" in r], "the store worked for a moment only: still reported"
        ahead[0] += STORE_CALM_MS / 1000
        await manager.create_job("flaky", {})  # its start: a write that works, the calm period after the failure

        async def over() -> bool:
            return not [r for r in (await manager.statistics()).health.reasons if "job store" in r]

        await until(over)  # the store worked for long enough: the trouble is over


async def test_health_names_a_full_disk(tmp_path: Path) -> None:
    async with running(tmp_path / "jobs.db") as manager:
        store = manager.store
        assert isinstance(store, SQLiteStore)
        assert (await manager.statistics()).health.status == "healthy"
        ((pages,),) = await store._sql("PRAGMA page_count")
        await store._sql(f"PRAGMA max_page_count = {pages}")  # the "disk" is full
        with pytest.raises(StoreFull):
            for n in range(100):
                await manager.create_job("flaky", {"pad": "x" * 50_000, "n": n})
        health = (await manager.statistics()).health
        assert health.status == "degraded" and "StoreFull" in health.reasons[0], health


async def test_health_names_a_damaged_database(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with JobManager(SQLiteStore(f"sqlite:///{db}"), Settings()) as manager:  # rows no process runs
        for n in range(300):
            await manager.create_job("noop-unknown", {"pad": "y" * 500, "n": n})
    size = db.stat().st_size
    with db.open("r+b") as raw:  # damage the pages in the middle of the file (the jobs' rows), keep the header
        raw.seek(size // 3)
        raw.write(b"\xde\xad\xbe\xef" * (size // 12))
    async with running(db) as manager:
        health = (await manager.statistics()).health
    assert health.status == "degraded" and "StoreCorrupt" in health.reasons[0], health
