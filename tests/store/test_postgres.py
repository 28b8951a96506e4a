"""PostgreSQL-only behaviour: migrations, the claim statement, fencing, leases, the sweeper lock, NOTIFY.

Each test runs in a schema of its own (dropped afterwards). Skips with a reason when
VIBE_JOBS_TEST_POSTGRES_URL is unset, fails instead when VIBE_JOBS_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.engine.test_takeovers import info_logs
from tests.pg import postgres_url, with_new_schema
from tests.store.test_contract import insert_all, record
from vibe_jobs.errors import ConfigError, DuplicateJob, StoreError, StoreLocked, StoreUnavailable
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord, Priority, ResourceRequirements, TaskSpec
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import open_store
from vibe_jobs.store.base import Guard, JobQuery

asyncpg = pytest.importorskip("asyncpg")

from vibe_jobs.store.postgres import ClaimLimits, JobChange, PostgresStore, parse_url, redact  # noqa: E402
from vibe_jobs.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION  # noqa: E402
from vibe_jobs.store.postgres.sql import INSERT, MANY_TOOLS, insert_args  # noqa: E402

pytestmark = pytest.mark.postgres

P, R, C, F, X = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED,
                 JobStatus.CANCELLED)  # fmt: skip
LOW, MEDIUM, HIGH, CRITICAL = (p.rank for p in (Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL))
TOOLS = ("echo",)
NO_LIMITS = ClaimLimits()


def base_url() -> str:
    return postgres_url("the PostgreSQL tests")


StoreFactory = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
def schema_url() -> str:
    return with_new_schema(base_url(), "vj_test")


@pytest.fixture
async def make_store(schema_url: str) -> AsyncIterator[StoreFactory]:
    """Open stores on one fresh schema (as separate processes would); all closed, schema dropped after."""
    opened: list[PostgresStore] = []

    async def make() -> PostgresStore:
        s = PostgresStore(schema_url)
        await s.open()
        opened.append(s)
        return s

    try:
        yield make
    finally:
        for s in opened:
            await s.close()
        await PostgresStore(schema_url).drop_schema()


@pytest.fixture
async def store(make_store: StoreFactory) -> PostgresStore:
    return await make_store()


def task_job(job_id: str, *, created_at: int = 1_000, priority: int = MEDIUM, **task: Any) -> JobRecord:
    return record(job_id, created_at=created_at, priority=priority, task=TaskSpec(**task) if task else None)


def needs(memory: float = 0, cpu: float = 0, disk: float = 0) -> ResourceRequirements:
    return ResourceRequirements(memory_mb=memory, cpu_weight=cpu, disk_space_mb=disk)


async def claim_one(
    store: PostgresStore,
    owner: str,
    lease_ms: int,
    limits: ClaimLimits = NO_LIMITS,
    tools: tuple[str, ...] = TOOLS,
    *,
    now: int | None = None,
) -> JobRecord | None:
    """The next runnable job for `owner`, taken as production takes jobs (`claim_many`), or None."""
    found = await store.claim_many(owner, lease_ms, limits, tools, 1, now=now)
    return found[0] if found else None


async def claim_ids(store: PostgresStore, limits: ClaimLimits = NO_LIMITS, now: int = 10_000, **kw: Any) -> list[str]:
    """Claim until nothing is claimable; the ids in claim order."""
    out: list[str] = []
    while (rec := await claim_one(store, "w1", 30_000, limits, kw.get("tools", TOOLS), now=now)) is not None:
        out.append(rec.id)
    return out


async def raw(store: PostgresStore, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# -- URL and schema -------------------------------------------------------------------------


def test_url_options() -> None:
    dsn, opts = parse_url("postgresql://u:secret@h:5433/db?schema=s1&pool_max=4&sslmode=disable")
    assert dsn == "postgresql://u:secret@h:5433/db?sslmode=disable"
    assert opts == {"schema": "s1", "pool_max": "4"}
    s = PostgresStore("postgresql://u:secret@h/db?schema=s1&pool_min=2&pool_max=4")
    assert (s.schema, s.pool_min, s.pool_max, s.channel) == ("s1", 2, 4, "vibe_jobs.s1")
    assert PostgresStore("postgres://h/db").schema == "public"
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert isinstance(open_store("postgresql://h/db?schema=x"), PostgresStore)
    for bad in ("postgresql://h/db?schema=a;drop", "postgresql://h/db?pool_max=x", "postgresql://h/db?pool_max=0"):
        with pytest.raises(ConfigError):
            PostgresStore(bad)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("schema=", "?schema= is empty"),  # `?schema=$SCHEMA` with the variable unset: the jobs went to public
        ("schema=a&schema=b", "?schema= twice"),  # the last one was taken
        ("pool_min=5&pool_max=2", "?pool_max=2 is below its ?pool_min=5"),  # pool_max was raised to 5
    ],
)
def test_an_option_given_empty_twice_or_against_another_is_refused_by_name(query: str, says: str) -> None:
    """Review helper-56: each was taken silently for something other than what was asked."""
    with pytest.raises(ConfigError, match=re.escape(says)):
        PostgresStore(f"postgresql://u:secret@h/db?{query}")
    assert PostgresStore("postgresql://h/db?pool_min=20").pool_max == 20  # a larger minimum raises the default


async def test_unreachable_server_is_a_clear_error() -> None:
    s = PostgresStore("postgresql://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(
        StoreUnavailable, match=r"cannot open the job store at postgresql://nobody:\*\*\*@127.0.0.1:1/none"
    ):
        await s.open()
    with pytest.raises(StoreError, match="not open"):
        await s.get("x")


async def test_a_row_locked_elsewhere_is_a_transient_lock_error_and_recovers(schema_url: str) -> None:
    """Told by SQLSTATE 55P03 (lock_not_available), not by the message; `lock_timeout` goes to the server."""
    s = PostgresStore(f"{schema_url}&lock_timeout=50")
    await s.open()
    try:
        await s.insert(record("held"))
        other = await asyncpg.connect(s.dsn, server_settings={"search_path": s.schema})
        try:
            async with other.transaction():
                await other.execute("SELECT 1 FROM jobs WHERE id = 'held' FOR UPDATE")  # another writer's lock
                with pytest.raises(StoreLocked) as info:
                    await s.update("held", {"progress_message": "blocked"})
                assert info.value.transient
        finally:
            await other.close()
        done = await s.update("held", {"progress_message": "after"})  # the lock is gone: it lands
        assert done is not None and done.progress_message == "after"
    finally:
        await s.close()
        await s.drop_schema()


async def test_a_statement_past_the_statement_timeout_is_a_transient_lock_error(schema_url: str) -> None:
    """SQLSTATE 57014 (query_canceled: `statement_timeout`) was a plain StoreError, so no retry loop tried again."""
    s = PostgresStore(f"{schema_url}&statement_timeout=50")
    await s.open()
    try:
        with pytest.raises(StoreLocked, match="statement timeout") as info:
            await s._fetch("SELECT pg_sleep(1)")
        assert info.value.transient
    finally:
        await s.close()
        await s.drop_schema()


async def test_migrations_idempotent_and_concurrent(schema_url: str, make_store: StoreFactory) -> None:
    stores = await asyncio.gather(*(make_store() for _ in range(4)))  # four replicas start together
    await stores[0].insert(record("kept"))
    await stores[0].close()
    again = await make_store()  # reopening migrates nothing and keeps the data
    assert await again.get("kept") is not None
    rows = await raw(again, "SELECT version FROM vibe_jobs_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_schema_13_keeps_the_newest_active_job_of_each_dedupe_key(make_store: StoreFactory) -> None:
    """A database that holds equal active jobs already (schema 12 let them in) keeps its newest one's key."""
    store = await make_store()
    for rec in (
        record("older", dedupe_key="k", created_at=1),
        record("newer", dedupe_key="k2", status=R, created_at=2),
        record("done", dedupe_key="k", status=C, finished_at=3),
        record("alone", dedupe_key="j", created_at=3),
    ):
        assert await store.insert(rec)  # fmt: skip
    await raw(store, "DROP INDEX jobs_dedupe")  # back to schema 12's index, which let equal active jobs in
    await raw(store, "CREATE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL"
                     " AND status IN ('pending', 'running')")  # fmt: skip
    await raw(store, "UPDATE jobs SET dedupe_key = 'k' WHERE id = 'newer'")
    await raw(store, "DROP INDEX jobs_active_by")  # and without the later steps
    await raw(store, "DELETE FROM vibe_jobs_migrations WHERE version >= 13")
    upgraded = await make_store()
    assert [(r.id, r.dedupe_key) for r in await upgraded.active()] == [("older", None), ("newer", "k"),
                                                                        ("alone", "j")]  # fmt: skip
    assert not await upgraded.insert(record("another", dedupe_key="k"))


# Branches merged later (identity, talkback, schedules, stage history) numbered their steps otherwise; their
# steps, written out as they were (each is one of ours, or ours without a column).
OTHER_NUMBERINGS = {
    "identity at 5 (4992207)": [*MIGRATIONS[:4], MIGRATIONS[6]],
    "talkback at 5 (7ce6871)": [*MIGRATIONS[:4], MIGRATIONS[8]],
    "schedules at 5 (2fccba9)": [
        *MIGRATIONS[:4],
        [sql.replace(", fired_at BIGINT NOT NULL", "") for sql in MIGRATIONS[7]],
    ],
    "stage history in 6 (ce301e5)": [*MIGRATIONS[:5], [*MIGRATIONS[5], *MIGRATIONS[10]]],
    "stage history at 7 (9a5b1ab)": [*MIGRATIONS[:6], MIGRATIONS[10]],
}
SHAPE = """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY 1, 2"""


@pytest.mark.parametrize("steps", OTHER_NUMBERINGS.values(), ids=OTHER_NUMBERINGS.keys())
async def test_a_schema_of_another_numbering_of_steps_is_upgraded_with_its_jobs(
    make_store: StoreFactory, steps: list[list[str]]
) -> None:
    """Such a schema failed every open ('column "principal" of relation "jobs" already exists'), or would have
    been read as having steps it never had (the durations table, trace_context)."""
    fresh = await make_store()
    want = await raw(fresh, SHAPE)
    await raw(fresh, f'DROP SCHEMA "{fresh.schema}" CASCADE')
    conn = await asyncpg.connect(fresh.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{fresh.schema}"; SET search_path = "{fresh.schema}"')
        for sql in (sql for step in steps for sql in step):
            await conn.execute(sql)
        await conn.execute("CREATE TABLE vibe_jobs_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ"
                           " NOT NULL DEFAULT now())")  # fmt: skip
        await conn.execute("INSERT INTO vibe_jobs_migrations SELECT generate_series(1, $1)", len(steps))
        await conn.execute(
            "INSERT INTO jobs (id, tool_name, params, status, created_at, updated_at, version, access_count, priority,"
            " attempt, retry_count, error_count, finished_at, dedupe_key) VALUES"
            " ('done', 'echo', '{}', 'completed', 1, 2, 1, 0, 1, 1, 0, 0, 2, NULL),"
            " ('waiting', 'echo', '{}', 'pending', 3, 3, 1, 0, 1, 0, 0, 0, NULL, 'k')"
        )
    finally:
        await conn.close()
    upgraded = await make_store()
    assert (await upgraded.get("done")).status is C  # type: ignore[union-attr]
    assert [(r.id, r.dedupe_key, r.principal) for r in await upgraded.active()] == [("waiting", "k", "local")]
    assert not await upgraded.insert(record("another", dedupe_key="k"))
    assert await raw(upgraded, SHAPE) == want
    rows = await raw(upgraded, "SELECT version FROM vibe_jobs_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_manager_keeps_the_database_s_time_when_its_clock_is_stepped(
    schema_url: str, make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes sharing the store keep its time (helper-60 F1). Measured only at open, the offset of a machine
    10 s behind stayed after NTP stepped its clock right, and the manager ran 10 s ahead of the database for the
    rest of its life (review helper-65 F3): it is measured again at every beat."""
    db = await make_store()
    shift, wall = [-10.0], time.time
    monkeypatch.setattr(time, "time", lambda: wall() + shift[0])
    async with JobManager(PostgresStore(schema_url), Settings(lease_ms=300), clock=time.time) as manager:
        assert abs(manager.now() - await db.clock_ms()) < 1_000  # the database's time, not this clock's
        shift[0] = 0.0  # NTP steps this machine's clock right
        for _ in range(200):  # a beat comes every 100 ms
            if abs(manager.now() - await db.clock_ms()) < 1_000:
                break
            await anyio.sleep(0.05)
        else:
            raise AssertionError(f"still {manager.now() - await db.clock_ms()} ms off the database's time")


async def test_newer_schema_refused(store: PostgresStore, schema_url: str) -> None:
    await raw(store, "INSERT INTO vibe_jobs_migrations (version) VALUES ($1)", SCHEMA_VERSION + 5)
    with pytest.raises(StoreError, match="newer vibe-jobs"):
        await PostgresStore(schema_url).open()


async def test_schemas_are_isolated(store: PostgresStore) -> None:
    other = PostgresStore(with_new_schema(base_url(), "vj_test"))
    await other.open()
    try:
        await store.insert(record("only-here"))
        assert await other.get("only-here") is None
    finally:
        await other.close()
        await other.drop_schema()


# -- the claim ------------------------------------------------------------------------------


async def test_claim_sets_owner_lease_attempt(store: PostgresStore) -> None:
    await store.insert(record("j", created_at=1))
    rec = await claim_one(store, "worker-a", 5_000, NO_LIMITS, now=2_000)
    assert rec is not None
    assert (rec.id, rec.status, rec.owner, rec.attempt, rec.version) == ("j", R, "worker-a", 1, 2)
    assert (rec.started_at, rec.updated_at) == (2_000, 2_000)
    assert (await raw(store, "SELECT lease_expires_at FROM jobs WHERE id = 'j'"))[0][0] == 7_000
    assert await claim_one(store, "worker-b", 5_000, NO_LIMITS, now=2_000) is None  # nothing left
    # requeued (a retry): the next claim is attempt 2 and keeps the first start time
    assert await store.update("j", {"status": P}, Guard(attempt=1, statuses=[R])) is not None
    rec = await claim_one(store, "worker-b", 5_000, NO_LIMITS, now=3_000)
    assert rec is not None and (rec.owner, rec.attempt, rec.started_at) == ("worker-b", 2, 2_000)


async def test_held_is_the_running_jobs_of_one_owner(store: PostgresStore) -> None:
    """What a stopping process hands back (`recovery.hand_back`): its running jobs, claimed or adopted, and nothing
    pending, finished or another owner's."""
    for job_id in ("mine", "ours-too", "theirs", "pending"):  # claimed in this order
        await store.insert(record(job_id, created_at=1))
    claimed = await store.claim_many("w", 5_000, NO_LIMITS, ["echo"], 2, now=2_000)
    assert [rec.id for rec in claimed] == ["mine", "ours-too"]
    theirs = await claim_one(store, "other", 5_000, NO_LIMITS, now=2_000)
    assert theirs is not None and theirs.id == "theirs"
    assert await store.update("pending", {"owner": "w"}) is not None
    done = await store.update("ours-too", {"status": JobStatus.COMPLETED, "finished_at": 3_000})
    assert done is not None
    assert [rec.id for rec in await store.held("w")] == ["mine"]
    assert await store.held("nobody") == []


async def test_claim_uses_database_clock_by_default(store: PostgresStore) -> None:
    await store.insert(record("j", run_after=None))
    rec = await claim_one(store, "w", 1_000, NO_LIMITS)
    assert rec is not None and rec.started_at is not None and rec.started_at > 1_600_000_000_000


async def test_claim_only_listed_tools_due_and_not_cancelled(store: PostgresStore) -> None:
    await store.insert(record("other-tool", tool_name="slow"))
    await store.insert(record("later", run_after=20_000))
    await store.insert(record("cancelling", cancel_requested="user"))
    await store.insert(record("running", status=R))
    assert await claim_ids(store, now=10_000) == []
    assert await claim_ids(store, now=20_000) == ["later"]
    assert await claim_ids(store, tools=("slow", "echo")) == ["other-tool"]


async def test_priority_order_fifo_within_level(store: PostgresStore) -> None:
    # same created_at: insertion order decides within a level (ids deliberately out of order)
    for job_id, prio in [("m-z", MEDIUM), ("l-a", LOW), ("m-b", MEDIUM), ("c-y", CRITICAL), ("m-a", MEDIUM)]:
        await store.insert(task_job(job_id, priority=prio))
    await store.insert(task_job("h-x", priority=HIGH))
    await store.insert(task_job("odd-high", priority=9))  # out of range: counts as critical
    await store.insert(task_job("odd-low", priority=-2))  # ... as low
    assert await claim_ids(store) == ["c-y", "odd-high", "h-x", "m-z", "m-b", "m-a", "l-a", "odd-low"]


async def test_priority_aging(store: PostgresStore) -> None:
    limits = ClaimLimits(aging_ms=1_000)  # weights low 1 .. critical 4: critical is 3 s "older" than low
    await store.insert(task_job("low-old", created_at=0, priority=LOW))  # key 0 - 1000 = -1000
    await store.insert(task_job("crit-new", created_at=3_500, priority=CRITICAL))  # key 3500 - 4000 = -500
    await store.insert(task_job("crit-newer", created_at=2_500, priority=CRITICAL))  # key -1500
    assert await claim_ids(store, limits) == ["crit-newer", "low-old", "crit-new"]


async def test_priority_weights_from_settings() -> None:
    limits = ClaimLimits.from_settings(Settings(max_concurrent=7, aging_ms=2500), {"a": 2, "b": None})
    assert (limits.max_running, limits.aging_ms, limits.per_tool) == (7, 2_500, {"a": 2})
    assert limits.priority_weights == (1.0, 2.0, 3.0, 4.0)
    assert (limits.max_memory_mb, limits.max_cpu_weight, limits.max_disk_space_mb) == (2048, 8, 1024)


async def test_dependency_gating(store: PostgresStore) -> None:
    await store.insert(task_job("a", created_at=2))
    await store.insert(task_job("b", created_at=1, dependencies=["a"]))  # older, but must wait for a
    await store.insert(task_job("c", created_at=0, dependencies=["a", "x"]))
    await store.insert(task_job("x", created_at=3))
    assert await claim_ids(store) == ["a", "x"]  # b and c wait: a is running, not completed
    await store.update("a", {"status": C, "finished_at": 5})
    assert await claim_ids(store) == ["b"]  # c still waits for x
    await store.update("x", {"status": C, "finished_at": 6})
    assert await claim_ids(store) == ["c"]


async def test_dependency_blocked_lists_jobs_that_can_never_run(store: PostgresStore) -> None:
    await store.insert(task_job("bad", created_at=1))
    await store.insert(task_job("ok", created_at=2))
    await store.insert(task_job("needs-bad", created_at=3, dependencies=["ok", "bad"]))
    await store.insert(task_job("needs-ghost", created_at=4, dependencies=["ghost"]))
    await store.insert(task_job("needs-ok", created_at=5, dependencies=["ok"]))
    await store.update("bad", {"status": F, "finished_at": 2})
    blocked = [(rec.id, dep, status) for rec, dep, status in await store.dependency_blocked()]
    assert blocked == [("needs-bad", "bad", F), ("needs-ghost", "ghost", None)]
    assert await claim_ids(store) == ["ok"]


async def held_back(store: PostgresStore) -> list[str]:
    """The jobs flagged `blocked` (schema step 15): pending, with a dependency not completed."""
    return [r[0] for r in await raw(store, "SELECT id FROM jobs WHERE blocked ORDER BY id")]


async def test_a_chain_is_claimed_link_by_link_each_released_by_its_dependency_s_completion(
    store: PostgresStore,
) -> None:
    """Only the pending jobs a dependency holds back are flagged (the claim's index leaves them out); completing
    a job releases its dependants whose dependencies are all completed, in the completing write."""
    await store.insert(task_job("a", created_at=1))
    for prev, name in zip("abcd", "bcde", strict=True):
        await store.insert(task_job(name, created_at=0, dependencies=[prev]))  # older than a: each would go first
    await store.insert(task_job("f", created_at=0, dependencies=["a", "e"]))
    assert await held_back(store) == ["b", "c", "d", "e", "f"]
    for name in "abcde":
        assert await claim_ids(store) == [name]
        await store.update(name, {"status": C, "finished_at": 9})
    assert await claim_ids(store) == ["f"]
    assert await held_back(store) == []
    await store.update("f", {"status": C, "finished_at": 9})
    await store.insert(task_job("g", created_at=10, dependencies=["a", "f"]))  # a and f completed: not held back
    await store.insert(task_job("h", created_at=11, dependencies=["imported"]))  # not there yet
    assert await held_back(store) == ["h"]
    await store.insert(record("imported", status=C, finished_at=1))  # a job inserted completed releases it
    assert await held_back(store) == []
    assert await claim_ids(store) == ["g", "h"]


async def test_completions_sent_as_one_statement_release_the_dependants_of_each(store: PostgresStore) -> None:
    """Writes that queue behind one in flight go as one statement (`update_many_sql`): the completed jobs of such
    a batch release their dependants too, and only completed ones."""
    await insert_all(store, [task_job(f"d{n}", created_at=1) for n in range(6)])
    await insert_all(store, [task_job(f"after-d{n}", created_at=2, dependencies=[f"d{n}"]) for n in range(6)])
    assert len(await claim_ids(store)) == 6
    ends = [C, C, F, C, X, C]
    writes = [store.update(f"d{n}", {"status": end, "finished_at": 5}) for n, end in enumerate(ends)]
    assert all(await asyncio.gather(*writes))
    assert await held_back(store) == ["after-d2", "after-d4"]  # failed, cancelled: for the sweeper to fail
    assert sorted(await claim_ids(store)) == ["after-d0", "after-d1", "after-d3", "after-d5"]


async def test_a_dependant_inserted_while_its_dependency_completes_is_released_by_the_sweep(
    store: PostgresStore,
) -> None:
    """The insert reads its dependency running and flags the job; the dependency completes (its release cannot see
    the insert, not committed yet), then the insert commits: nothing would ever release the job but the sweeper's
    `release_ready`."""
    await store.insert(task_job("dep", created_at=1))
    assert await claim_ids(store) == ["dep"]
    conn = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
    try:
        async with conn.transaction():
            await conn.execute(INSERT, *insert_args(task_job("late", created_at=2, dependencies=["dep"])))
            await store.update("dep", {"status": C, "finished_at": 5})
    finally:
        await conn.close()
    assert await held_back(store) == ["late"]
    assert await claim_ids(store) == []
    assert await store.release_ready() == 1
    assert await held_back(store) == []
    assert await claim_ids(store) == ["late"]
    assert await store.release_ready() == 0


async def test_step_15_flags_the_pending_jobs_a_dependency_holds_back(make_store: StoreFactory) -> None:
    """A database of step 14 holding jobs that wait on dependencies comes out of step 15 with those (and only
    those) flagged: the claim takes the ready ones, a completion releases the others, a failed one is found."""
    fresh = await make_store()
    await raw(fresh, f'DROP SCHEMA "{fresh.schema}" CASCADE')
    conn = await asyncpg.connect(fresh.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{fresh.schema}"; SET search_path = "{fresh.schema}"')
        for statement in (statement for step in MIGRATIONS[:14] for statement in step):
            await conn.execute(statement)
        await conn.execute("CREATE TABLE vibe_jobs_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ"
                           " NOT NULL DEFAULT now())")  # fmt: skip
        await conn.execute("INSERT INTO vibe_jobs_migrations SELECT generate_series(1, 14)")
        await conn.executemany(
            "INSERT INTO jobs (id, tool_name, params, status, created_at, updated_at, version, access_count, priority,"
            " attempt, retry_count, error_count, deps) VALUES ($1, 'echo', '{}', $2, $3, $3, 1, 0, 1, 0, 0, 0, $4)",
            [("done", "completed", 1, []), ("runs", "running", 2, []), ("bad", "failed", 3, []),
             ("ready", "pending", 4, ["done"]), ("free", "pending", 5, []), ("waits", "pending", 6, ["runs"]),
             ("waits-2", "pending", 7, ["done", "runs"]), ("doomed", "pending", 8, ["bad"]),
             ("ended", "cancelled", 9, ["runs"])],
        )  # fmt: skip
    finally:
        await conn.close()
    upgraded = await make_store()
    assert await held_back(upgraded) == ["doomed", "waits", "waits-2"]
    assert await claim_ids(upgraded) == ["ready", "free"]
    await upgraded.update("runs", {"status": C, "finished_at": 10})
    assert await claim_ids(upgraded) == ["waits", "waits-2"]
    assert [(rec.id, dep) for rec, dep, _ in await upgraded.dependency_blocked()] == [("doomed", "bad")]


async def test_resource_limits(store: PostgresStore) -> None:
    limits = ClaimLimits(max_memory_mb=1_000, max_cpu_weight=4, max_disk_space_mb=100)
    await store.insert(task_job("big1", created_at=1, resource_requirements=needs(600, 1)))
    await store.insert(task_job("big2", created_at=2, resource_requirements=needs(600, 1)))
    await store.insert(task_job("small", created_at=3, resource_requirements=needs(300, 1)))
    await store.insert(task_job("cpu-hog", created_at=4, resource_requirements=needs(0, 3)))
    await store.insert(task_job("disk", created_at=5, resource_requirements=needs(0, 0, 101)))
    assert await claim_ids(store, limits) == ["big1", "small"]  # big2 does not fit; small backfills
    usage = await store.usage()
    assert (usage["running"], usage["memory_mb"], usage["cpu_weight"]) == (2, 900, 2)
    await store.update("big1", {"status": C, "finished_at": 9})
    assert await claim_ids(store, limits) == ["big2"]  # 900 MB used; cpu-hog (3) would make cpu 5 > 4
    await store.update("small", {"status": F, "finished_at": 9})
    assert await claim_ids(store, limits) == ["cpu-hog"]  # "disk" never fits
    assert await store.usage() == {"running": 2, "memory_mb": 600, "cpu_weight": 4, "disk_mb": 0,
                                   "by_tool": {"echo": 2}}  # fmt: skip


async def test_default_resource_needs(store: PostgresStore) -> None:
    # no resourceRequirements: the model's defaults (256 MB, cpu 1) count against the limits
    for i in range(5):
        await store.insert(record(f"d{i}", created_at=i))
    assert await claim_ids(store, ClaimLimits(max_memory_mb=600)) == ["d0", "d1"]


async def test_per_tool_limit(store: PostgresStore) -> None:
    for i in range(4):
        await store.insert(record(f"s{i}", created_at=i, tool_name="slow"))
        await store.insert(record(f"e{i}", created_at=i + 10, tool_name="echo"))
    limits = ClaimLimits(per_tool={"slow": 2})
    assert await claim_ids(store, limits, tools=("slow", "echo")) == ["s0", "s1", "e0", "e1", "e2", "e3"]


@pytest.mark.parametrize("n", [MANY_TOOLS, MANY_TOOLS + 1, 20_000])
async def test_a_process_with_many_tools_claims_its_tools_jobs_and_no_others(store: PostgresStore, n: int) -> None:
    """A proxy offers thousands of tools (more than MANY_TOOLS: the claim tests them as a set): it takes exactly
    the jobs of its tools, oldest first, past older jobs of other tools and between jobs of names close to its
    own; the head of the queue it sees is its own. Claimed one at a time, the statement runs on its generic
    plan from the 6th execution on."""
    tools = (*(f"tool-{i}" for i in range(n - 2)), 'quote"d\\tool', "ünï")
    others = [f"tool-{n}", "Tool-1", "tool-1 ", "tool-", "", "other"]
    for i in range(40):
        await store.insert(record(f"x{i:02d}", tool_name=others[i % len(others)], created_at=i))  # ahead of ours
    mine = [tools[0], tools[-1], tools[-2], tools[n // 2], tools[n - 3], *tools[1:8]]
    for i, tool in enumerate(mine):
        await store.insert(record(f"m{i:02d}", tool_name=tool, created_at=100 + 2 * i))
        await store.insert(record(f"y{i:02d}", tool_name=others[i % len(others)], created_at=101 + 2 * i))
    limits = ClaimLimits(max_running=100, max_memory_mb=1e6, max_cpu_weight=1e6, max_disk_space_mb=1e6)
    assert await store.head_fits(tools, limits, now=10_000) == ("m00", True)
    first = await store.claim_many("w1", 30_000, limits, tools, 3, now=10_000)  # the limited statement
    assert [rec.id for rec in first] == ["m00", "m01", "m02"]
    assert await claim_ids(store, tools=tools) == [f"m{i:02d}" for i in range(3, len(mine))]
    assert await store.head_fits(tools, limits, now=10_000) is None  # nothing of ours left
    pending = await raw(store, "SELECT count(*) FROM jobs WHERE status = 'pending' AND tool_name <> ALL($1)", tools)
    assert pending[0][0] == 40 + len(mine)  # every job of another tool still waits


async def test_cluster_concurrency_limit_across_processes(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]  # three "processes", each with its own pool
    for i in range(40):
        await stores[0].insert(record(f"q{i:02d}", created_at=i))
    limits = ClaimLimits(max_running=5)

    async def claimer(s: PostgresStore, n: int) -> list[str]:
        got = []
        for _ in range(n):
            rec = await claim_one(s, f"w{id(s)}", 30_000, limits, now=50)
            if rec is not None:
                got.append(rec.id)
        return got

    results = await asyncio.gather(*(claimer(s, 4) for s in stores for _ in range(4)))
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == 5 and len(set(claimed)) == 5
    assert sorted(claimed) == [f"q{i:02d}" for i in range(5)]  # and the oldest ones
    await stores[1].update(claimed[0], {"status": C, "finished_at": 60})
    more = await asyncio.gather(*(claimer(s, 2) for s in stores))
    assert [j for r in more for j in r] == ["q05"]
    assert (await stores[2].counts())[R] == 5


async def test_skip_locked_two_connections_claim_different_jobs(store: PostgresStore) -> None:
    await store.insert(record("first", created_at=1))
    await store.insert(record("second", created_at=2))
    await store.insert(record("third", created_at=3))
    conn = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
    try:
        tx = conn.transaction()
        await tx.start()  # another claimer holds the row lock of "first" (mid-claim)
        assert await conn.fetchval("SELECT id FROM jobs WHERE id = 'first' FOR UPDATE") == "first"
        rec = await asyncio.wait_for(claim_one(store, "me", 1_000, NO_LIMITS, now=5), 5)  # no waiting
        assert rec is not None and rec.id == "second"
        rec = await asyncio.wait_for(claim_one(store, "me", 1_000, ClaimLimits(max_running=9), now=5), 5)
        assert rec is not None and rec.id == "third"
        assert await claim_one(store, "me", 1_000, NO_LIMITS, now=5) is None
        await tx.rollback()
    finally:
        await conn.close()
    rec = await claim_one(store, "me", 1_000, NO_LIMITS, now=5)
    assert rec is not None and rec.id == "first"  # free again


async def test_concurrent_claims_never_share_a_job(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(2)]
    for i in range(60):
        await stores[0].insert(record(f"k{i:02d}", created_at=i))

    async def drain(s: PostgresStore, limits: ClaimLimits) -> list[str]:
        got = []
        while (rec := await claim_one(s, "w", 30_000, limits, now=100)) is not None:
            got.append(rec.id)
        return got

    lim = ClaimLimits(max_running=1_000)
    results = await asyncio.gather(*(drain(s, lim if i % 2 else NO_LIMITS) for s in stores for i in range(4)))
    claimed = [j for r in results for j in r]
    assert sorted(claimed) == [f"k{i:02d}" for i in range(60)]  # each exactly once
    rows = await raw(stores[0], "SELECT count(*) FROM jobs WHERE attempt = 1 AND status = 'running'")
    assert rows[0][0] == 60


async def test_usage_follows_every_path(store: PostgresStore) -> None:
    await store.insert(record("ins", status=R, task=TaskSpec(resource_requirements=needs(10, 1))))
    await store.insert(record("upd", task=TaskSpec(resource_requirements=needs(20, 1))))
    await store.update("upd", {"status": R})  # started by an in-process scheduler, not a claim
    assert (await store.usage())["memory_mb"] == 30
    await store.update("ins", {"status": C, "finished_at": 1})
    await store.delete_finished(before=10)
    await store.update("upd", {"status": P})  # requeued
    assert await store.usage() == {"running": 0, "memory_mb": 0, "cpu_weight": 0, "disk_mb": 0,
                                   "by_tool": {"echo": 0}}  # fmt: skip
    await raw(store, "UPDATE cluster_usage SET running = 42")  # the legacy row (schema step 1) is not read
    assert (await store.usage())["running"] == 0


# -- a connection lost between a statement's commit and its answer --------------------------------


class _LossyConnection:
    def __init__(self, conn: Any, lossy: LossyStore) -> None:
        self._conn, self._lossy = conn, lossy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        result = await getattr(self._conn, method)(query, *args)
        if self._lossy.lose is not None and self._lossy.lose in query:
            self._lossy.lose = None
            self._conn.terminate()
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return result

    async def fetch(self, query: str, *args: Any) -> Any:
        return await self._run("fetch", query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        return await self._run("execute", query, *args)


class _LossyPool:
    def __init__(self, pool: Any, lossy: LossyStore) -> None:
        self._pool, self._lossy = pool, lossy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_LossyConnection]:
        async with self._pool.acquire() as conn:
            yield _LossyConnection(conn, self._lossy)

    async def execute(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)


class LossyStore(PostgresStore):
    """Loses the answer to the next statement whose text contains `lose`: the statement runs and commits,
    then the session dies before its answer arrives (as when the server or the network drops it)."""

    lose: str | None = None

    @property
    def pool(self) -> Any:
        return _LossyPool(super().pool, self)


async def test_a_claim_whose_answer_was_lost_returns_its_own_jobs(schema_url: str, store: PostgresStore) -> None:
    for i in range(6):
        await store.insert(record(f"c{i}", created_at=i))
    lossy = LossyStore(schema_url)
    await lossy.open()
    try:
        lossy.lose = "claim_token"
        claimed = await lossy.claim_many("w", 60_000, NO_LIMITS, TOOLS, 3, now=100)
        assert lossy.lose is None, "the claim's answer was not lost"
    finally:
        await lossy.close()
    assert [(r.id, r.status, r.owner, r.attempt) for r in claimed] == [(f"c{i}", R, "w", 1) for i in range(3)]
    rows = await raw(store, "SELECT id, status FROM jobs ORDER BY id")
    assert [(r["id"], r["status"]) for r in rows] == [(f"c{i}", "running" if i < 3 else "pending") for i in range(6)]


async def test_an_insert_whose_answer_was_lost_is_not_refused(schema_url: str, store: PostgresStore) -> None:
    lossy = LossyStore(schema_url)
    await lossy.open()
    try:
        lossy.lose = "INSERT INTO jobs"
        await lossy.insert(record("i1", params={"a": 1}))
        assert lossy.lose is None, "the insert's answer was not lost"
        with pytest.raises(DuplicateJob, match="exists already"):
            await lossy.insert(record("i1", params={"a": 1}))  # a second insert of the id is still refused
    finally:
        await lossy.close()
    assert [r["id"] for r in await raw(store, "SELECT id FROM jobs")] == ["i1"]


# -- fencing and leases ---------------------------------------------------------------------


async def test_stale_attempt_write_loses(store: PostgresStore) -> None:
    await store.insert(record("f"))
    first = await claim_one(store, "old", 1_000, NO_LIMITS, now=10)
    assert first is not None and first.attempt == 1
    # the old worker's lease lapsed; the job was requeued and claimed again by a new worker
    assert await store.update("f", {"status": P, "owner": None}, Guard(version=first.version)) is not None
    second = await claim_one(store, "new", 1_000, NO_LIMITS, now=20)
    assert second is not None and second.attempt == 2
    stale = {"status": C, "result": {"from": "old"}, "finished_at": 30}
    assert await store.update("f", stale, Guard(attempt=1, statuses=[R])) is None
    assert await store.update("f", {"progress_percentage": 50.0}, Guard(attempt=1)) is None
    done = await store.update("f", {"status": C, "result": {"from": "new"}}, Guard(attempt=2, statuses=[R]))
    assert done is not None and done.result == {"from": "new"}


async def test_concurrent_updates_share_statements_and_each_keeps_its_guards(store: PostgresStore) -> None:
    """Updates in flight together are group-committed; each row is still its own compare-and-set."""
    for i in range(12):
        await store.insert(record(f"g{i}", created_at=i))
    claimed = {r.id: r for r in await store.claim_many("w", 60_000, NO_LIMITS, TOOLS, 12, now=100)}
    assert len(claimed) == 12

    def finish(i: int, attempt: int) -> Awaitable[JobRecord | None]:
        changes = {"status": C, "result": {"n": i, "text": "ü"}, "finished_at": 200 + i, "cpu_seconds": 1}
        return store.update(f"g{i}", changes, Guard(attempt=attempt, statuses=[R]))

    outcomes = await asyncio.gather(
        *(finish(i, 1) for i in range(6)),  # the running attempt: applied
        finish(6, 2), finish(7, 0),  # another attempt: refused
        store.update("g8", {"progress_percentage": 40.5}, Guard(version=claimed["g8"].version)),
        store.update("g9", {"progress_percentage": 1.0}, Guard(version=claimed["g9"].version - 1)),  # stale
        store.update("g10", {"progress_message": "first"}, Guard(version=claimed["g10"].version)),
        store.update("g10", {"progress_message": "second"}, Guard(version=claimed["g10"].version)),
        store.update("g11", {"cancel_requested": "user"}),
        store.update("nope", {"progress_message": "x"}),
    )  # fmt: skip
    for i in range(6):
        done = outcomes[i]
        assert done is not None and done.status is C and done.result == {"n": i, "text": "ü"}
        assert done.version == claimed[f"g{i}"].version + 1 and done.cpu_seconds == 1
    assert outcomes[6] is None and outcomes[7] is None
    assert outcomes[8] is not None and outcomes[8].progress_percentage == 40.5
    assert outcomes[9] is None
    first, second = outcomes[10], outcomes[11]
    assert (first is None) != (second is None)  # the same version: exactly one of the two lands
    assert outcomes[12] is not None and outcomes[12].cancel_requested == "user"
    assert outcomes[13] is None
    rows = {r["id"]: r for r in await raw(store, "SELECT id, status, lease_expires_at, progress_message FROM jobs")}
    assert [rows[f"g{i}"]["status"] for i in range(8)] == ["completed"] * 6 + ["running"] * 2
    assert rows["g0"]["lease_expires_at"] is None and rows["g6"]["lease_expires_at"] is not None
    assert rows["g10"]["progress_message"] == (first or second).progress_message  # type: ignore[union-attr]


async def test_a_refused_value_fails_only_its_own_update_in_a_shared_statement(store: PostgresStore) -> None:
    for i in range(6):
        await store.insert(record(f"v{i}"))
    with info_logs() as logs:
        outcomes = await asyncio.gather(
            *(store.update(f"v{i}", {"progress_percentage": "not a number" if i == 3 else float(i)}) for i in range(6)),
            return_exceptions=True,
        )
    assert isinstance(outcomes[3], StoreError)
    # the batch's refusal is told (each write then went alone; a lost deadlock did so silently)
    refused = [line for line in logs if line["event"] == "store.batch_refused"]
    assert len(refused) == 1 and refused[0]["writes"] >= 2, logs
    for i in (0, 1, 2, 4, 5):
        done = outcomes[i]
        assert isinstance(done, JobRecord) and done.progress_percentage == float(i)


async def test_a_queued_update_withdrawn_by_cancellation_is_not_applied(store: PostgresStore) -> None:
    await store.insert(record("a"))
    await store.insert(record("b"))
    locker = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("SELECT 1 FROM jobs WHERE id = 'a' FOR UPDATE")  # holds the first writer's statement
        first = asyncio.create_task(store.update("a", {"progress_message": "a"}))
        await asyncio.sleep(0)  # one step: it sends its statement, which waits for the row lock
        assert store._writing
        second = asyncio.create_task(store.update("b", {"progress_message": "withdrawn"}))
        third = asyncio.create_task(store.update("b", {"current_stage": "kept"}))
        await asyncio.sleep(0)  # one step: both queue behind the statement in flight
        assert len(store._writes) == 2
        second.cancel()
        await tx.rollback()
        done_a, done_b = await first, await third
    finally:
        await locker.close()
    assert second.cancelled()
    assert done_a is not None and done_a.progress_message == "a"
    assert done_b is not None and done_b.current_stage == "kept" and done_b.progress_message is None
    assert await store.update("b", {"progress_message": "later"}) is not None  # nothing left stuck


async def test_job_lease_expiry_makes_an_orphan(store: PostgresStore) -> None:
    await store.insert(record("l", created_at=1))
    await store.insert(record("m", created_at=2))
    await store.heartbeat("w", expires_at=2_000)  # the process itself stays alive
    assert await claim_one(store, "w", 500, NO_LIMITS, now=1_000) is not None  # lease until 1500
    assert await claim_one(store, "w", 500, NO_LIMITS, now=1_000) is not None
    assert await store.orphans(now=1_400) == []
    assert await store.renew_state("w", ["m", "never-claimed"], expires_at=3_000) == {"m": None}
    assert [r.id for r in await store.orphans(now=1_600)] == ["l"]  # its lease ran out: stuck or lost
    await store.update("l", {"status": P})  # requeued: no job lease any more
    assert await store.orphans(now=1_600) == []
    assert [r.id for r in await store.orphans(now=3_000)] == ["l", "m"]  # renew set the process lease to 3000
    assert await store.renew_state("other", ["m"], expires_at=9_000) == {}  # not its job
    rows = await raw(store, "SELECT owner, expires_at FROM leases ORDER BY owner")
    assert [tuple(r) for r in rows] == [("other", 9_000), ("w", 3_000)]  # renew beats the process lease too
    assert await store.renew_state("w", ["m"], expires_at=2_500) == {"m": None}  # an older renewal, landing late
    assert await store.orphans(now=2_800) == []  # neither lease moved back


async def test_sweeper_lock_one_session_at_a_time(make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    async with a.sweeper_lock() as held_a:
        assert held_a
        async with b.sweeper_lock() as held_b:
            assert not held_b
        async with a.sweeper_lock() as again:  # another session of the same store: also refused
            assert not again
    async with b.sweeper_lock() as held_b:
        assert held_b


async def test_sweeper_lock_freed_when_the_session_dies(store: PostgresStore) -> None:
    from vibe_jobs.store.postgres.schema import lock_key

    conn = await asyncpg.connect(store.dsn)
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(store.schema, "sweeper"))
    async with store.sweeper_lock() as held:
        assert not held
    conn.terminate()  # a crashed sweeper
    for _ in range(50):
        async with store.sweeper_lock() as held:
            if held:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the lock of a dead session was not released")


async def test_sweeps_and_quota_counts_at_once_finish_on_a_pool_of_two(schema_url: str) -> None:
    """Each lock holder keeps a pooled connection while its work takes another. With ?pool_max=2 the sweeper's
    lock and a principal's took one connection each, then both waited for a third: every call of the server
    hung for good (helper-73 F1). Holders now share one budget of half the pool."""
    store = PostgresStore(f"{schema_url}&pool_max=2")
    await store.open()
    try:

        async def counts(principal: str) -> None:
            for _ in range(60):
                async with store.principal_lock(principal) as held:
                    assert held
                    await store.counts(principal)

        async def sweeps() -> None:
            for _ in range(60):
                async with store.sweeper_lock() as held:
                    if held:
                        await store.dependency_blocked()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for who in ("alice", "bob", "carol"):
                    tg.start_soon(counts, who)
                tg.start_soon(sweeps)
                tg.start_soon(sweeps)
    finally:
        await store.close()
        await store.drop_schema()


async def _lock_waiters(store: PostgresStore, name: str) -> int:
    rows = await raw(
        store, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", name
    )
    return int(rows[0][0])


async def test_a_principal_lock_a_stalled_process_holds_is_refused_after_a_bounded_wait(schema_url: str) -> None:
    """A replica that stalls (SIGSTOP, a hang) holding a principal's lock held that principal's every call on
    every other replica for as long as it stalled, with no time-out; each call its client gave up on left a
    backend queued on the lock (helper-73 F2, F3). The wait is bounded: the call is refused, saying why, and a
    wait given up on leaves no backend behind past that bound. Other principals are not held up."""
    from vibe_jobs.store.base import PRINCIPAL_LOCK_WAIT_MS
    from vibe_jobs.store.postgres.schema import lock_key

    name = f"vj_stall_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{schema_url}&application_name={name}")
    await store.open()
    stalled = await asyncpg.connect(store.dsn)  # the stalled replica's session, holding alice's lock
    try:
        await stalled.execute("SELECT pg_advisory_lock($1)", lock_key(store.schema, "principal:alice"))
        with anyio.fail_after(PRINCIPAL_LOCK_WAIT_MS / 1000 + 10):
            async with store.principal_lock("bob") as held:
                assert held
            with anyio.move_on_after(0.5):  # a client that gives up on its call while it waits
                async with store.principal_lock("alice"):
                    raise AssertionError("alice's lock is held by the stalled session")
            start = time.monotonic()
            with pytest.raises(StoreLocked, match=r"held this caller's quota count for over 5 s.*try again"):
                async with store.principal_lock("alice"):
                    raise AssertionError("alice's lock is held by the stalled session")
            assert time.monotonic() - start < PRINCIPAL_LOCK_WAIT_MS / 1000 + 2
            for _ in range(100):  # the given-up wait's backend ends by the bound too (the database has no event)
                if not await _lock_waiters(store, name):
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("a backend still waits for the lock")
    finally:
        stalled.terminate()
        await store.close()
        await store.drop_schema()


# A process firing a tick of a schedule (nothing prepared yet on its connection), caught by a lock the test holds:
# it is stopped there and the lock released, so that it stalls holding what its firing holds at that point.
_FIRING_PROCESS = """
import asyncio, sys
from tests.store.test_schedule_contract import fired
from vibe_jobs.logs import configure_logging
from vibe_jobs.store.postgres import PostgresStore

async def main():
    configure_logging("warning")  # to stderr: stdout answers the test
    store = PostgresStore(sys.argv[1])
    await store.open()
    print(await store.fire(fired("s1", 7_000), 1), flush=True)
    await store.close()

asyncio.run(main())
"""

_CAUGHT = {
    # its first statement, run (it waits for the row): stopped, it is idle in its transaction, holding the schedule
    "between-statements": "SELECT 1 FROM {schema}.schedules WHERE schedule_id = 's1' FOR UPDATE",
    # a statement's first parse on its connection (it waits for the table): before, that was inside the transaction,
    # where a stopped client leaves its session `active`, and no time-out acts
    "first-parse": "LOCK TABLE {schema}.schedule_ticks IN SHARE MODE",
}


async def _session_of(store: PostgresStore, name: str, where: str) -> bool:
    found = await raw(store, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND {where}", name)
    return bool(found[0][0])


@pytest.mark.parametrize("caught", list(_CAUGHT))
async def test_a_process_stalled_inside_a_firing_holds_the_tick_and_the_schedule_only_briefly(
    schema_url: str, caught: str
) -> None:
    """A ticker that stalled (SIGSTOP, a frozen VM) inside its firing held the tick's key and a share lock on the
    schedule for as long as it stalled: every other process's firing of that tick waited (their ticker passes with
    it: no schedule fired anywhere), and so did a pause of the schedule. PostgreSQL now ends a session idle in a
    firing after FIRE_STALL_MS, and nothing is parsed inside it: the others go on, the tick fires once, and the
    stalled one, resumed, finds it fired (review helper-80 F2, F3: it was refused a store error then)."""
    from tests.e2e.conftest import BASE_ENV, ROOT
    from tests.store.test_schedule_contract import fired, schedule
    from vibe_jobs.store.postgres.store import FIRE_STALL_MS

    name = f"vj_fire_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(schema_url)
    await store.open()
    await store.insert_schedule(schedule())
    blocker = await asyncpg.connect(store.dsn)
    proc = None
    try:
        await blocker.execute("BEGIN; " + _CAUGHT[caught].format(schema=f'"{store.schema}"'))
        proc = await anyio.open_process(
            [sys.executable, "-c", _FIRING_PROCESS, f"{schema_url}&application_name={name}"], cwd=ROOT,
            env={**os.environ, **BASE_ENV},
        )  # fmt: skip
        assert proc.stdout is not None
        answers = BufferedByteReceiveStream(proc.stdout)
        await _until(lambda: _session_of(store, name, "wait_event_type = 'Lock'"), "the firing waits on the lock")
        proc.send_signal(signal.SIGSTOP)
        await blocker.execute("COMMIT")
        await _until(lambda: _session_of(store, name, "wait_event_type = 'Client'"), "the firing waits on its process")
        with anyio.fail_after(FIRE_STALL_MS / 1000 + 10):  # before: for as long as the process stalled
            assert await store.fire(fired("s1", 7_000), 1)
            assert await store.update_schedule("s1", {"paused": True}, version=1) is not None
        proc.send_signal(signal.SIGCONT)
        with anyio.fail_after(30):
            assert await answers.receive_until(b"\n", 100) == b"False"  # resumed, it finds the tick fired
            assert await proc.wait() == 0
        assert len(await store.query(JobQuery(limit=10))) == 1
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        await blocker.close()
        await store.close()
        await store.drop_schema()


# A process holding a lock of its store (the principal's, or the sweeper's with its bound set short), then
# stopped: its session sits idle holding the lock. Resumed, it leaves the lock and uses its store again.
_HOLDING_PROCESS = """
import asyncio, sys
from vibe_jobs.logs import configure_logging
from vibe_jobs.store.postgres import PostgresStore, store as pg

async def main():
    configure_logging("warning")  # to stderr: stdout answers the test
    pg.SWEEPER_LOCK_HOLD_MS = 2_000  # its own bound (30 s) is too long for a test
    store = PostgresStore(sys.argv[1])
    await store.open()
    lock = store.principal_lock("alice") if sys.argv[2] == "principal" else store.sweeper_lock()
    async with lock as held:
        print(held, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(sum((await store.counts()).values()), flush=True)
    await store.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("lock", ["principal", "sweeper"])
async def test_a_process_stalled_holding_a_lock_holds_it_only_briefly(schema_url: str, lock: str) -> None:
    """A server that stalled (SIGSTOP, a frozen VM) holding a principal's lock had that principal's every call on
    every other server refused (after 5 s each) for as long as it stalled; one holding the sweeper's lock stopped
    the dependency sweep everywhere. PostgreSQL now ends a lock's session once it has been idle its bound
    (PRINCIPAL_LOCK_HOLD_MS; the sweeper's set short here), so the others take the lock; the stalled one, resumed,
    finds its lock gone with its session, and goes on."""
    from tests.e2e.conftest import BASE_ENV, ROOT
    from vibe_jobs.store.base import PRINCIPAL_LOCK_WAIT_MS
    from vibe_jobs.store.postgres.store import PRINCIPAL_LOCK_HOLD_MS

    assert PRINCIPAL_LOCK_HOLD_MS < PRINCIPAL_LOCK_WAIT_MS  # a waiter behind a stalled holder is not refused
    store = PostgresStore(schema_url)
    await store.open()
    proc = await anyio.open_process(
        [sys.executable, "-c", _HOLDING_PROCESS, schema_url, lock], cwd=ROOT, env={**os.environ, **BASE_ENV}
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        answers = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(30):
            assert await answers.receive_until(b"\n", 100) == b"True"
        proc.send_signal(signal.SIGSTOP)
        with anyio.fail_after(PRINCIPAL_LOCK_WAIT_MS / 1000 + 10):  # before: refused, for as long as it stalled
            if lock == "principal":
                async with store.principal_lock("alice") as held:
                    assert held
            else:
                await _until(lambda: _sweeper_lock_taken(store), "the sweeper's lock is free")
        proc.send_signal(signal.SIGCONT)
        await proc.stdin.send(b"\n")
        with anyio.fail_after(30):
            assert await answers.receive_until(b"\n", 100) == b"0"  # no store error: the lock went with its session
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        await store.close()
        await store.drop_schema()


async def test_a_holder_whose_insert_waits_on_the_database_keeps_the_principal_s_lock(schema_url: str) -> None:
    """The principal's lock session sits idle while its holder counts and inserts on other connections: with only
    the idle bound, a holder whose insert waited on the database (a table lock, a slow commit) lost the lock after
    PRINCIPAL_LOCK_HOLD_MS, and another server's call took it, counted 0 (the first insert not committed yet) and
    stored a second job past quota_pending=1 (review helper-83 F1). A holder that runs keeps its session busy."""
    from vibe_jobs.errors import QuotaExceeded
    from vibe_jobs.identity import Viewer
    from vibe_jobs.store.postgres.store import PRINCIPAL_LOCK_HOLD_MS

    name = f"vj_busy_{uuid.uuid4().hex[:8]}"
    stores = [PostgresStore(f"{schema_url}&application_name={name}") for _ in range(2)]
    for store in stores:
        await store.open()
    managers = [JobManager(store, Settings(quota_pending=1)) for store in stores]
    answers: list[str] = []

    async def create(manager: JobManager) -> None:
        try:
            answers.append(await manager.create_job("t", {}, viewer=Viewer("alice")))
        except QuotaExceeded:
            answers.append("quota_exceeded")

    admin = await asyncpg.connect(stores[0].dsn)
    try:
        await admin.execute(f'BEGIN; LOCK TABLE "{stores[0].schema}".jobs IN SHARE MODE')
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(create, managers[0])
                await _until(lambda: _waiting(stores[0], name, 1), "the first insert waits on the table")
                await anyio.sleep(PRINCIPAL_LOCK_HOLD_MS / 1000 + 1)  # the time the bound needs to act, if it did
                tg.start_soon(create, managers[1])
                await _until(lambda: _waiting(stores[0], name, 2), "the second call waits (on the lock, or the table)")
                await admin.execute("ROLLBACK")
        assert sorted(answer == "quota_exceeded" for answer in answers) == [False, True], answers
        assert len(await stores[0].active(principal="alice")) == 1
    finally:
        await admin.close()
        for store in stores:
            await store.close()
        await stores[0].drop_schema()


async def _waiting(store: PostgresStore, name: str, sessions: int) -> bool:
    return await _lock_waiters(store, name) >= sessions


async def _sweeper_lock_taken(store: PostgresStore) -> bool:
    async with store.sweeper_lock() as held:
        return held


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the database (it has no event for what its sessions do) until `check` holds, at most 15 s."""
    for _ in range(300):
        if await check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"not within 15 s: {what}")


# -- notifications --------------------------------------------------------------------------


async def test_notify_on_insert_status_change_and_cancel(make_store: StoreFactory) -> None:
    writer, reader = await make_store(), await make_store()
    got: asyncio.Queue[JobChange] = asyncio.Queue()
    listener = await reader.listen(got.put_nowait)

    async def next_change() -> JobChange:
        return await asyncio.wait_for(got.get(), 5)

    await writer.insert(record("n1", tool_name="echo"))
    assert await next_change() == JobChange("insert", "n1", P, "echo", False)
    await writer.update("n1", {"progress_message": "no wake-up for this"})
    await writer.update("n1", {"cancel_requested": "user"})
    assert await next_change() == JobChange("update", "n1", P, "echo", True)
    await writer.update("n1", {"status": X})
    assert await next_change() == JobChange("update", "n1", X, "echo", True)
    await writer.insert(record("n2"))
    claimed = await claim_one(writer, "w", 1_000, NO_LIMITS)
    assert claimed is not None
    assert [await next_change() for _ in range(2)] == [
        JobChange("insert", "n2", P, "echo", False), JobChange("update", "n2", R, "echo", False),
    ]  # fmt: skip
    assert got.empty()
    await listener.close()
    assert not listener.alive
    await writer.insert(record("n3"))
    await asyncio.sleep(0.1)
    assert got.empty()


async def test_notify_channels_are_per_schema(store: PostgresStore) -> None:
    other = PostgresStore(with_new_schema(base_url(), "vj_test"))
    await other.open()
    got: list[JobChange] = []
    try:
        async with await other.listen(got.append):
            await store.insert(record("elsewhere"))
            await asyncio.sleep(0.2)
        assert got == []
    finally:
        await other.close()
        await other.drop_schema()


async def test_listener_reports_a_lost_connection(store: PostgresStore) -> None:
    lost = asyncio.Event()
    listener = await store.listen(lambda change: None, on_lost=lost.set)
    await raw(store, "SELECT pg_terminate_backend($1)", listener.server_pid)
    await asyncio.wait_for(lost.wait(), 5)
    assert not listener.alive
    await listener.close()


async def test_a_listener_cancelled_while_it_starts_leaves_no_connection_open(store: PostgresStore) -> None:
    # a worker stopped in its first instants: every cut-short listen must close the connection it opened
    # (an asyncpg connection dropped unclosed warns with ResourceWarning when it is collected)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(40):
            with anyio.move_on_after(step * 0.0005):  # cut at every point of the start, connecting included
                listener = await store.listen(lambda change: None)
                await listener.close()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def sessions_of(store: PostgresStore, where: str = "true") -> int:
    """How many sessions the store has open (its application_name), of those matching `where`."""
    query = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND {where}"
    return int((await raw(store, query, store.application_name))[0][0])


async def until_sessions(store: PostgresStore, wanted: Callable[[int], bool], where: str = "true") -> None:
    """Wait (10 s at most) until the count of the store's sessions matching `where` is wanted."""
    for _ in range(200):
        if wanted(await sessions_of(store, where)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"sessions where {where}: {await sessions_of(store, where)}")


async def test_a_write_in_flight_while_the_store_closes_leaves_no_session_open(schema_url: str) -> None:
    """The write commits while `close()` waits for the pool: the change it announces afterwards goes out
    on a session that is closed too (it was left open, and warned ResourceWarning when collected)."""
    store = PostgresStore(f"{schema_url}&application_name=vj-close-{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        await store.insert(record("c1"))
        locker = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM jobs WHERE id = 'c1' FOR UPDATE")
            write = asyncio.create_task(store.update("c1", {"status": X}))  # announced: a status change
            await until_sessions(store, lambda n: n == 1, "wait_event_type = 'Lock'")  # the write waits
            closing = asyncio.create_task(store.close())
            await asyncio.sleep(0)  # it runs up to waiting for the pool, which waits for the write
            await lock.rollback()
        finally:
            await locker.close()
        await write
        await closing
        await until_sessions(store, lambda n: n == 0)
    finally:
        await store.close()
        await store.drop_schema()


async def test_a_key_holding_a_nul_finds_nothing_rather_than_failing(store: PostgresStore) -> None:
    """PostgreSQL's text cannot hold a NUL, so no job or schedule has such a key: a lookup by one finds
    nothing (it failed as the store's error, which health counts)."""
    await store.insert(record("n1", tool_name="echo"))
    assert await store.get("n1\x00") is None
    assert await store.query(JobQuery(tool_name="echo\x00")) == []
    assert await store.query(JobQuery(principal="local\x00")) == []
    assert await store.get_schedule("s\x00") is None
    assert [r.id for r in await store.query(JobQuery(tool_name="echo"))] == ["n1"]


async def test_a_step_of_this_machine_s_clock_between_beats_does_not_move_its_time(
    schema_url: str, make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's time was this machine's wall clock plus the offset last measured: an hour's step (NTP, a VM
    resumed) moved it an hour until the next beat, and a renewal meanwhile wrote this process's lease an hour ahead
    (a lease never moves back): had it died next, its jobs were nobody's to recover for an hour (helper-98)."""
    db = await make_store()
    shift, wall = [0.0], time.time
    monkeypatch.setattr(time, "time", lambda: wall() + shift[0])
    settings = Settings()  # a beat every 10 s: none comes during the test
    async with JobManager(PostgresStore(schema_url), settings, clock=time.time, owner="stepped") as manager:
        shift[0] = 3600.0  # NTP steps this machine's clock an hour forward
        assert abs(manager.now() - await db.clock_ms()) < 1_000
        await manager.renew_lease()
        [[expires_at]] = await raw(db, "SELECT expires_at FROM leases WHERE owner = 'stepped'")
        assert expires_at - await db.clock_ms() <= settings.lease_ms + 1_000
