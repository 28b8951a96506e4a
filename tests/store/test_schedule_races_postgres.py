"""Schedule races on PostgreSQL between processes (two stores on one schema), ordered by the database's own
locks: a delete-schedule against a firing of a tick another process fired already."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from tests.store.test_postgres import StoreFactory, make_store, schema_url  # noqa: F401  # the fixtures
from tests.store.test_schedule_contract import fired, schedule

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.postgres


async def waiting_on(conn: Any, table: str) -> bool:
    """Whether a session waits for a lock on `table` (pg_locks: pg_stat_activity is read once a transaction)."""
    query = "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted"
    return bool(await conn.fetchval(query, table))


async def test_a_delete_racing_a_late_firing_of_a_fired_tick_lets_no_second_job_in(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    """delete_schedule deleted the schedule's tick keys, then the schedule, in two statements: a process that had
    read the schedule (its version unchanged) and fired a tick already fired by another, in between, found the
    schedule there and the tick's key gone, and stored a second job for the tick. The schedule goes first now: a
    firing then finds it gone, or (holding it FOR SHARE first) the key still there. The delete is held between
    its statements by a SHARE lock on `schedules` (which firings' FOR SHARE passes)."""
    a, b = await make_store(), await make_store()
    rec = schedule("s1")
    rec.next_fire_at = 5_000
    await a.insert_schedule(rec)
    assert await a.fire(fired("s1", 5_000), rec.version)  # the tick fired, by one process

    lock = await asyncpg.connect(a.dsn, server_settings={"search_path": a.schema})
    try:
        holding = lock.transaction()
        await holding.start()
        await lock.execute("LOCK TABLE schedules IN SHARE MODE")
        deleting = asyncio.ensure_future(a.delete_schedule("s1"))
        with anyio.fail_after(10):
            while not await waiting_on(lock, "schedules"):  # noqa: ASYNC110 - a database wait: no event
                await asyncio.sleep(0.01)
        late = await b.fire(fired("s1", 5_000), rec.version)  # another process, at the version it read
        await holding.rollback()
        with anyio.fail_after(10):
            assert await deleting
        jobs = await lock.fetchval("SELECT count(*) FROM jobs WHERE schedule_id = 's1' AND tick = 5000")
    finally:
        await lock.close()
    assert (late, jobs) == (False, 1), "the tick fired twice"
    assert await a.get_schedule("s1") is None
