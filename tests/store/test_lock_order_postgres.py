"""The order in which PostgreSQL statements lock many job rows at once: one order (id order) for all of them, so
two such statements of two processes wait for each other instead of each holding a row the other needs (a
deadlock, which PostgreSQL breaks by failing one of them). Each test holds a writer's group-committed batch
between two of its rows with a row lock of the test's own session, so the interleaving is the database's, not
timing's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from tests.store.test_contract import insert_all, record
from tests.store.test_postgres import StoreFactory, make_store, schema_url  # noqa: F401  # the fixtures
from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import Guard

asyncpg = pytest.importorskip("asyncpg")

from vibe_jobs.store.postgres import PostgresStore  # noqa: E402

pytestmark = pytest.mark.postgres

P, R, F = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED


@pytest.fixture
async def named(make_store: StoreFactory, schema_url: str) -> AsyncIterator[Callable[[str], Awaitable[PostgresStore]]]:  # noqa: F811
    """Stores on one schema, as processes would open them, each session named (`application_name`) so the test
    can tell which one waits for a lock."""
    await make_store()  # creates the schema, and drops it after
    opened: list[PostgresStore] = []

    async def open_named(name: str) -> PostgresStore:
        store = PostgresStore(f"{schema_url}&application_name={name}")
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_named
    finally:
        for store in opened:
            await store.close()


async def waits(watch: Any, name: str) -> None:
    """Until a session of the store named `name` waits for a lock (a database wait: no event to wait on)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
    with anyio.fail_after(10):
        while not await watch.fetchval(query, name):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def session(store: PostgresStore) -> Any:
    """A session of the test's own on the store's schema."""
    return await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})


async def row_lock(conn: Any, job_id: str) -> Any:
    """Hold `job_id`'s row in a transaction of `conn` (commit it to let go)."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    return tx


def expired(now: int) -> dict[str, Any]:
    """What a process writes to a pending job whose deadline passed (`engine.deadlines.expire_pending`)."""
    return {"status": F, "updated_at": now, "finished_at": now, "progress_message": "Job failed: deadline passed"}


async def test_an_adoption_and_a_batch_of_writes_to_the_same_jobs_do_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]], schema_url: str  # noqa: F811
) -> None:
    """A process stalled past its lease resumes and its overdue deadline timers fail its pending jobs (one
    group-committed statement, in the order the timers fired: j2, x, j1) while another process adopts them as
    orphans (`adopt_pending`, rows locked in id order: j1, j2). The batch locked j2 and waited (here for x, held
    by the test); the adoption locked j1 and waited for j2; the batch then reached j1: a deadlock, and PostgreSQL
    failed the adoption (StoreLocked) or the batch (whose jobs then went to the adopter). With every multi-row
    statement locking in id order, the batch takes j1 first and the adoption waits for it, then finds the jobs
    failed (changed since it read them) and leaves them."""
    writer, adopter = await named("writer"), await named("adopter")
    # stored (and so laid out in the table) in the batch's order: a scan of the table meets them in that order too
    await insert_all(writer, [record(i, owner="stalled", created_at=n) for n, i in enumerate(("w0", "j2", "x", "j1"))])
    await writer.heartbeat("stalled", expires_at=500)  # its lease lapsed
    found = [rec for rec in await adopter.orphans(now=600) if rec.id in ("j1", "j2")]
    hold_first, hold_mid, watch = [await session(writer) for _ in range(3)]
    try:
        first = await row_lock(hold_first, "w0")
        writes = [asyncio.ensure_future(writer.update("w0", expired(700), Guard(version=1)))]
        await waits(watch, "writer")  # w0's write in flight: the next writes queue behind it, to go as one batch
        writes += [asyncio.ensure_future(writer.update(i, expired(700), Guard(version=1))) for i in ("j2", "x", "j1")]
        with anyio.fail_after(10):
            while len(writer._writes) < 3:  # noqa: ASYNC110 - the tasks' first steps queue them
                await asyncio.sleep(0)
        mid = await row_lock(hold_mid, "x")
        await first.commit()
        await writes[0]  # the batch is sent
        await waits(watch, "writer")  # held at x
        adopting = asyncio.ensure_future(adopter.adopt_pending(found, "adopter", 800))
        await waits(watch, "adopter")
        await mid.commit()
        with anyio.fail_after(20):
            done = await asyncio.gather(*writes)
            adopted = await adopting
    finally:
        for conn in (hold_first, hold_mid, watch):
            await conn.close()
    assert [rec is not None and rec.status for rec in done] == [F] * 4, "a write of the batch was lost"
    assert adopted == []  # failed since the adopter read them: left alone
