"""The order in which PostgreSQL statements lock many job rows at once: one order (id order) for all of them, so
two such statements of two processes wait for each other instead of each holding a row the other needs (a
deadlock, which PostgreSQL breaks by failing one of them). Each test holds a writer's group-committed batch
between two of its rows with a row lock of the test's own session, so the interleaving is the database's, not
timing's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from tests.engine.test_takeovers import info_logs
from tests.store.test_contract import insert_all, record
from tests.store.test_postgres import StoreFactory, make_store, schema_url  # noqa: F401  # the fixtures
from vibe_jobs.models import JobRecord, TaskSpec
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import Guard

asyncpg = pytest.importorskip("asyncpg")

from vibe_jobs.store.postgres import PostgresStore, sql  # noqa: E402

pytestmark = pytest.mark.postgres

P, R, F = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED


@pytest.fixture
async def named(make_store: StoreFactory, schema_url: str) -> AsyncIterator[Callable[[str], Awaitable[PostgresStore]]]:  # noqa: F811
    """Stores on one schema, as processes would open them, each session named (`application_name`: the schema and
    `name`) so the test can tell which one waits for a lock."""
    schema = (await make_store()).schema  # creates the schema, and drops it after
    opened: list[PostgresStore] = []

    async def open_named(name: str) -> PostgresStore:
        store = PostgresStore(f"{schema_url}&application_name={schema}-{name}")
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_named
    finally:
        for store in opened:
            await store.close()


async def session(store: PostgresStore) -> Any:
    """A session of the test's own on the store's schema."""
    return await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})


async def waits(store: PostgresStore) -> None:
    """Until a session of `store` waits for a lock (a database wait: no event to wait on)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
    watch = await session(store)
    try:
        with anyio.fail_after(10):
            while not await watch.fetchval(query, store.application_name):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await watch.close()


async def row_lock(conn: Any, job_id: str) -> Any:
    """Hold `job_id`'s row in a transaction of `conn` (commit it to let go)."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    return tx


@contextlib.asynccontextmanager
async def batch_held_at(
    writer: PostgresStore, changes: dict[str, Any], ids: list[str], held: str
) -> AsyncIterator[list[asyncio.Task[JobRecord | None]]]:
    """`writer` writes `changes` to the jobs `ids` (each at version 1) as one group-committed
    statement, in that order: yields the writes while the statement waits for the row of `held` (one of `ids`),
    which a session of the test holds, and lets it go on leaving. (A first write to "w0", held alone, keeps the
    others queued until they go as one batch.)"""
    hold_first, hold_mid = await session(writer), await session(writer)
    try:
        first = await row_lock(hold_first, "w0")
        lead = asyncio.ensure_future(writer.update("w0", changes, Guard(version=1)))
        await waits(writer)  # w0's write in flight: the next ones queue behind it
        writes = [asyncio.ensure_future(writer.update(i, changes, Guard(version=1))) for i in ids]
        with anyio.fail_after(10):
            while len(writer._writes) < len(ids):  # noqa: ASYNC110 - the writes' first steps queue them
                await asyncio.sleep(0)
        mid = await row_lock(hold_mid, held)
        await first.commit()
        assert await lead is not None
        await waits(writer)  # the batch is sent, and waits at `held`
        yield writes
        await mid.commit()
    finally:
        for conn in (hold_first, hold_mid):
            await conn.close()


def expired(now: int) -> dict[str, Any]:
    """What a process writes to a pending job whose deadline passed (`engine.deadlines.expire_pending`)."""
    return {"status": F, "updated_at": now, "finished_at": now, "progress_message": "Job failed: deadline passed"}


def requeued(owner: str, now: int) -> dict[str, Any]:
    """What recovery writes to a running orphan it runs again (`engine.recovery.plan_recovery`)."""
    return {"owner": owner, "updated_at": now, "status": P, "retry_count": 1, "progress_message": "requeued"}


async def test_an_adoption_and_a_batch_of_writes_to_the_same_jobs_do_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]],
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
    async with batch_held_at(writer, expired(700), ["j2", "x", "j1"], held="x") as writes:
        adopting = asyncio.ensure_future(adopter.adopt_pending(found, "adopter", 800))
        await waits(adopter)
    with anyio.fail_after(20):
        done = await asyncio.gather(*writes)
        adopted = await adopting
    assert [rec is not None and rec.status for rec in done] == [F] * 3, "a write of the batch was lost"
    assert adopted == []  # failed since the adopter read them: left alone


async def test_a_renewal_and_a_recovery_of_the_same_jobs_do_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]],
) -> None:
    """A process stalled past its lease renews its running jobs' leases (`renew_state`: j1, j9 and 40 more) while
    another process's recovery requeues them (group-committed, in id order here: j1, j5, j9). The renewal locked rows as
    its plan met them, in the table's order (a bitmap scan in a table of some size; rows move in the table as
    they are updated): j9 first. The batch locked j1 and waited (for j5, held by the test), the renewal locked j9
    and waited for j1, the batch reached j9: a deadlock. In id order, the renewal waits for the batch, then finds
    the jobs no longer its own and answers them not held."""
    writer, stalled = await named("writer"), await named("stalled")
    held = ["j9", "j1", *(f"s{n:02d}" for n in range(40))]  # the jobs it runs, as a worker runs tens at once
    running = [record(i, owner="stalled", status=R, attempt=1) for i in ("j9", "w0", "j5", "j1", *held[2:])]
    others = [record(f"other-{n:05d}", owner="alive", status=R, attempt=1) for n in range(3_000)]
    filler = await session(writer)
    try:
        await filler.executemany(sql.INSERT, [sql.insert_args(rec) for rec in [*running, *others]])
        await filler.execute("ANALYZE jobs")  # the plans of a table of that size
    finally:
        await filler.close()
    async with batch_held_at(writer, requeued("recoverer", 700), ["j1", "j5", "j9"], held="j5") as writes:
        renewing = asyncio.ensure_future(stalled.renew_state("stalled", held, 10_000))
        await waits(stalled)
    with anyio.fail_after(20):
        done = await asyncio.gather(*writes)
        renewed = await renewing
    assert [rec is not None and (rec.status, rec.owner) for rec in done] == [(P, "recoverer")] * 3
    assert sorted(renewed) == held[2:]  # j1 and j9 requeued by the recoverer: no longer the stalled process's


async def durations_held(conn: Any, key: str) -> Any:
    """Hold the learned durations' row of `key` in a transaction of `conn` (commit it to let go)."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM durations WHERE key = $1 FOR UPDATE", key)
    return tx


async def test_two_processes_saving_the_same_learned_durations_in_other_orders_do_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]],
) -> None:
    """Each process saves the durations it learned as one upsert of many keys, in the order its tools' jobs
    finished: A k1 then k2, B k2 then k1. Held by the test's sessions (k1, then k2, let go in turn) A took k1 and
    waited for k2, which B took first and then waited for k1: deadlock detected, and one process's figures were
    not saved. Keys are saved in one order, so B waits for A."""
    a, b = await named("a"), await named("b")
    await a.save_durations({"k1": (1, 10.0, "[10]"), "k2": (1, 20.0, "[20]")}, 1_000)
    hold_1, hold_2 = await session(a), await session(a)
    try:
        tx_1, tx_2 = await durations_held(hold_1, "k1"), await durations_held(hold_2, "k2")
        saving_a = asyncio.ensure_future(a.save_durations({"k1": (2, 11.0, "[12]"), "k2": (2, 21.0, "[22]")}, 2_000))
        await waits(a)  # at k1
        saving_b = asyncio.ensure_future(b.save_durations({"k2": (3, 22.0, "[24]"), "k1": (3, 12.0, "[14]")}, 3_000))
        await waits(b)  # at k2 (sorted: at k1)
        await tx_1.commit()  # A takes k1 and waits for k2
        await waits(a)
        await tx_2.commit()
        with anyio.fail_after(10):
            await asyncio.gather(saving_a, saving_b)
    finally:
        for conn in (hold_1, hold_2):
            await conn.close()
    saved = {key: row[0] for key, row in (await a.load_durations()).items()}
    assert saved == {"k1": 3, "k2": 3}  # B saved last


async def test_deleting_a_schedule_while_old_ticks_are_pruned_does_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]],
) -> None:
    """`delete_schedule` deletes the schedule's tick keys in key order (t1, t2, t3); `prune_ticks` deleted old keys as
    its scan met them, in the table's order (t3 first, as stored). Held by the test at t2, the deletion took t1 and
    waited; the pruning took t3 and waited; let go, the deletion reached t3: a deadlock, and PostgreSQL failed one of
    them (StoreLocked: the delete-schedule call refused, or a sweep's step). Both lock keys in one order now."""
    deleter, pruner = await named("deleter"), await named("pruner")
    conn = await session(deleter)
    try:
        # laid out t3, t2, t1, then other schedules' old keys: a table of a size where the deletion reads its
        # schedule's keys by the primary key and the pruning reads the table as laid out
        ticks = [("s", tick, f"job-{tick}", n) for n, tick in enumerate((3, 2, 1))]
        others = [(f"other-{n:04d}", 1, f"o-{n}", 10 + n) for n in range(3_000)]
        await conn.executemany(
            "INSERT INTO schedule_ticks (schedule_id, tick, job_id, fired_at) VALUES ($1, $2, $3, $4)",
            [*ticks, *others],
        )
        await conn.execute("ANALYZE schedule_ticks")
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM schedule_ticks WHERE schedule_id = 's' AND tick = 2 FOR UPDATE")
        deleting = asyncio.ensure_future(deleter.delete_schedule("s"))
        await waits(deleter)
        pruning = asyncio.ensure_future(pruner.prune_ticks(before=100))
        await waits(pruner)
        await tx.commit()
        with anyio.fail_after(20):
            await asyncio.gather(deleting, pruning)
        assert await conn.fetchval("SELECT count(*) FROM schedule_ticks WHERE schedule_id = 's'") == 0
    finally:
        await conn.close()


async def test_a_completion_releasing_its_dependants_and_a_batch_of_writes_to_them_do_not_deadlock(
    named: Callable[[str], Awaitable[PostgresStore]],
) -> None:
    """A process completes d and releases its dependants j1 and j2 (schema step 15) while another one's deadline
    timers fail them, with a job between them, as one group-committed batch (j2, j15, j1, held by the test at
    j15). The release takes its rows in id order: it waits for j1, which the batch holds, instead of taking j2 (met
    first in the table) and waiting for j1 while the batch waits for j2. The batch then fails them, and the release
    finds them failed and leaves them."""
    writer, completer = await named("writer"), await named("completer")
    await insert_all(writer, [record("d", status=R), record("w0"), record("j15")])
    for job_id in ("j2", "j1"):  # laid out in the table in that order
        await writer.insert(record(job_id, task=TaskSpec(dependencies=["d"])))
    with info_logs() as logs:
        async with batch_held_at(writer, expired(700), ["j2", "j15", "j1"], held="j15") as writes:
            completing = asyncio.ensure_future(completer.update("d", {"status": JobStatus.COMPLETED}))
            await waits(completer)  # its release, at j1
        with anyio.fail_after(20):
            done = await asyncio.gather(*writes)
            assert (await completing) is not None
    assert [rec is not None and rec.status for rec in done] == [F] * 3, "a write of the batch was lost"
    refused = [e["event"] for e in logs if e["event"] in ("store.batch_refused", "store.release_deferred")]
    assert refused == [], "a deadlock failed one of them"
