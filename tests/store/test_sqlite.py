"""SQLite-only behaviour: durability, schema versions, bad files, concurrency, size, failures."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.store.test_contract import full_record, record
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.errors import ConfigError, StoreCorrupt, StoreError, StoreFull, StoreLocked, StoreUnavailable
from vibe_jobs.models import JobRecord
from vibe_jobs.store import codec, open_store
from vibe_jobs.store.base import Guard, JobQuery, PrincipalLocking, SharedJobStore
from vibe_jobs.store.codec import COLUMNS
from vibe_jobs.store.memory import MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore, parse_url, principals
from vibe_jobs.store.sqlite import sql as sqlite_sql
from vibe_jobs.store.sqlite import store as sqlite_module
from vibe_jobs.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

C, R, X = JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.CANCELLED


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jobs.db"


def url(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(url(db))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def reopened(db: Path) -> SQLiteStore:
    s = SQLiteStore(url(db))
    await s.open()
    return s


def raw(db: Path, sql: str) -> list[Any]:
    """Run SQL with a plain connection of our own (as another process would)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


# -- durability -----------------------------------------------------------------------------


async def test_every_field_survives_close_and_reopen(store: SQLiteStore, db: Path) -> None:
    await store.insert(full_record())
    await store.close()
    again = await reopened(db)
    try:
        assert await again.get("job-full") == full_record()
    finally:
        await again.close()


async def test_results_survive_byte_for_byte(store: SQLiteStore, db: Path) -> None:
    result = {"content": [{"type": "text", "text": "ünïcode ✓ 日本語 \u2028 \"quoted\" \\ end"}],
              "structuredContent": {"pi": 3.141592653589793, "big": 2**62, "neg": -0.0, "tiny": 1e-300},
              "isError": False}  # fmt: skip
    await store.insert(record("r"))
    await store.update("r", {"status": C, "result": result, "finished_at": 1})
    await store.close()
    again = await reopened(db)
    try:
        got = await again.get("r")
    finally:
        await again.close()
    assert got is not None and got.status is C
    assert json.dumps(got.result) == json.dumps(result)


async def test_insert_is_committed_when_it_returns(store: SQLiteStore, db: Path) -> None:
    await store.insert(record("committed"))
    assert raw(db, "SELECT id FROM jobs") == [("committed",)]  # seen by another connection at once


async def test_close_flushes_queued_work(store: SQLiteStore, db: Path) -> None:
    tasks = [asyncio.ensure_future(store.insert(record(f"q{i}"))) for i in range(100)]
    await asyncio.sleep(0)  # the inserts are queued, not yet committed
    await store.close()
    await asyncio.gather(*tasks)
    assert raw(db, "SELECT count(*) FROM jobs") == [(100,)]


async def test_many_concurrent_inserts_all_committed(store: SQLiteStore, db: Path) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(1_000):
            tg.start_soon(store.insert, record(f"c{i:04d}", created_at=i))
    await store.close()
    assert raw(db, "SELECT count(*), count(DISTINCT id) FROM jobs") == [(1_000, 1_000)]


async def test_changes_by_another_process_are_seen(store: SQLiteStore, db: Path) -> None:
    await store.insert(record("shared"))
    other = await reopened(db)
    try:
        assert await other.get("shared") is not None  # now in the other store's cache
        assert await store.update("shared", {"progress_message": "from A"}) is not None
        got = await other.get("shared")
        assert got is not None and (got.progress_message, got.version) == ("from A", 2)
        assert await other.update("shared", {"progress_message": "stale"}, Guard(version=1)) is None
    finally:
        await other.close()


async def test_long_expired_leases_are_deleted_by_recovery(store: SQLiteStore, db: Path) -> None:
    hour = 3_600_000
    now = 10 * hour
    await store.heartbeat("long-gone", expires_at=now - hour - 1)
    await store.heartbeat("just-expired", expires_at=now - 1)  # kept: a clock stepped back finds it live
    await store.heartbeat("alive", expires_at=now + 30_000)
    await store.insert(record("was-long-gone's", owner="long-gone", status=R))
    assert [r.id for r in await store.orphans(now)] == ["was-long-gone's"]
    assert sorted(raw(db, "SELECT owner FROM leases")) == [("alive",), ("just-expired",)]
    assert [r.id for r in await store.orphans(now - hour)] == ["was-long-gone's"]  # same answer as before


# -- schema ---------------------------------------------------------------------------------


async def test_the_store_keeps_no_record_of_finished_jobs_in_memory(store: SQLiteStore) -> None:
    """The records the store remembers (the base of a job's next update, so that it needs no read-back)
    are those of active jobs: a server's memory does not grow with the jobs it finished, nor does the
    heap the garbage collector walks."""
    result = {"content": [{"type": "text", "text": "x" * 1000}], "isError": False}
    async with JobManager(store, Settings()) as manager:
        ids = [await manager.create_job("tool", {"i": i}) for i in range(300)]
        for job_id in ids[:200]:
            await manager.update_job_status(job_id, JobStatus.RUNNING)
            await manager.set_job_result(job_id, result)
        for job_id in ids[:50]:
            assert (await manager.get_record(job_id)).status is JobStatus.COMPLETED  # read back, not kept
        assert set(store._known) == set(ids[200:])


async def test_schema_and_pragmas(store: SQLiteStore, db: Path) -> None:
    await store.close()
    assert raw(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db, "PRAGMA auto_vacuum") == [(2,)]  # incremental
    assert tuple(row[1] for row in raw(db, "PRAGMA table_info(jobs)")) == COLUMNS
    assert tuple(JobRecord.__dataclass_fields__) == COLUMNS
    assert [row[1] for row in raw(db, "PRAGMA table_info(leases)")] == ["owner", "expires_at", "host", "pid", "started"]
    indexes = {row[0] for row in raw(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_newest", "jobs_tool", "jobs_active", "jobs_final", "jobs_dedupe", "jobs_expiry"} <= indexes


async def test_a_plain_insert_runs_no_trigger_and_a_firing_copies_every_column(store: SQLiteStore, db: Path) -> None:
    """Any trigger on `jobs` makes every insert build the NEW row for it (21 -> 40 us an insert): a firing writes
    its tick key through the `fired_jobs` view instead, whose trigger must copy each column a job has."""
    await store.close()
    on_jobs = raw(db, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'")
    assert on_jobs == []
    ((trigger,),) = raw(db, "SELECT sql FROM sqlite_master WHERE name = 'fired_jobs_insert'")
    copied = trigger.split("INSERT INTO jobs (", 1)[1].split(")", 1)[0].split(", ")
    assert tuple(copied) == COLUMNS  # a column added to jobs needs a step that recreates this trigger


def plan(db: Path, sql: str, args: tuple[Any, ...]) -> str:
    return " / ".join(row[3] for row in raw_args(db, f"EXPLAIN QUERY PLAN {sql}", args))


def raw_args(db: Path, sql: str, args: tuple[Any, ...]) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_finished_jobs_are_found_through_their_partial_indexes(store: SQLiteStore, db: Path) -> None:
    await store.close()
    expiry = plan(db, sqlite_module._DELETE_FINISHED, (0, 10))
    assert "jobs_expiry" in expiry and "SCAN jobs" not in expiry
    assert "jobs_final" in plan(db, sqlite_sql.query_sql(C, False, False), ("completed", 10))


async def test_a_read_of_many_jobs_by_id_of_one_principal_looks_each_up_by_id(store: SQLiteStore, db: Path) -> None:
    """`get_many` of a principal (a principal's schedules' last jobs) found its rows through the principal's index:
    every job the principal ever had read for a page of ids."""
    await store.close()
    for by_principal in (False, True):
        found = plan(db, sqlite_sql.get_many_sql(by_principal), ('["a"]', "p")[: 1 + by_principal])
        assert "(id=?)" in found and "jobs_principal" not in found, found


async def test_a_status_change_builds_no_temporary_btree(store: SQLiteStore, db: Path) -> None:
    """Each partial index's condition is evaluated on the old and the new row of every status change;
    a condition with a list of three or more values would build a temporary b-tree each time."""
    await store.close()
    conditions = [row[0] for row in raw(db, "SELECT sql FROM sqlite_master WHERE sql LIKE '%INDEX%WHERE%'")]
    assert conditions and all("'completed'" not in sql for sql in conditions)
    for keys in (("status", "started_at", "owner", "attempt", "updated_at"), ("status", "finished_at", "result")):
        sql = sqlite_sql.update_sql(keys, True, False, -1, False)
        program = raw_args(db, f"EXPLAIN {sql}", (None,) * (len(keys) + 2))
        assert [op for op in program if op[1] == "OpenEphemeral"] == []


async def test_schema_1_database_is_upgraded_with_its_jobs(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    for sql in [*MIGRATIONS[0], "PRAGMA user_version = 1"]:
        conn.execute(sql)
    jobs = [
        record("old-done", status=C, finished_at=100), record("old-cancelled", status=X, updated_at=120),
        record("new-done", status=C, finished_at=500, created_at=2_000), record("waiting"), record("busy", status=R),
    ]  # fmt: skip
    old_columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]  # schema 1's (later steps add some)
    insert = f"INSERT INTO jobs ({', '.join(old_columns)}) VALUES ({', '.join('?' * len(old_columns))})"
    at = [codec.COLUMNS.index(name) for name in old_columns]
    conn.executemany(insert, [[codec.encode(rec)[i] for i in at] for rec in jobs])
    conn.close()
    upgraded = await reopened(db)
    try:
        counts = await upgraded.counts()
        assert (counts[C], counts[X], counts[JobStatus.PENDING], counts[R]) == (2, 1, 1, 1)
        assert await upgraded.counts("local") == counts  # jobs from before principals are the local one's
        assert {r.principal for r in await upgraded.query(JobQuery(principal="local"))} == {"local"}
        assert [r.id for r in await upgraded.query(JobQuery(status=C))] == ["new-done", "old-done"]
        assert sorted(await upgraded.delete_finished(before=200)) == ["old-cancelled", "old-done"]
        assert sorted(r.id for r in await upgraded.active()) == ["busy", "waiting"]
    finally:
        await upgraded.close()
    assert raw(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    (final,) = raw(db, "SELECT sql FROM sqlite_master WHERE name = 'jobs_final'")
    assert "NOT IN ('pending', 'running')" in final[0]


async def test_schema_13_keeps_the_newest_active_job_of_each_dedupe_key(db: Path) -> None:
    """A database that holds equal active jobs already (schema 12 let them in) keeps its newest one's key."""
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    for sql in [*(sql for step in MIGRATIONS[:12] for sql in step), "PRAGMA user_version = 12"]:
        conn.execute(sql)
    jobs = [
        record("older", dedupe_key="k", created_at=1),
        record("newer", dedupe_key="k", status=R, created_at=2),
        record("done", dedupe_key="k", status=C, finished_at=1),
        record("alone", dedupe_key="j", created_at=3),
    ]
    columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    insert = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn.executemany(insert, [[codec.encode(rec)[codec.COLUMNS.index(c)] for c in columns] for rec in jobs])
    conn.close()
    upgraded = await reopened(db)
    try:
        assert [(r.id, r.dedupe_key) for r in await upgraded.active()] == [("older", None), ("newer", "k"),
                                                                            ("alone", "j")]  # fmt: skip
        assert not await upgraded.insert(record("another", dedupe_key="k"))
        assert (await upgraded.get("done")).dedupe_key == "k"  # type: ignore[union-attr]
    finally:
        await upgraded.close()


# The SQLite store's first commit (8779c40, on main before 447a0cc) had a schema step 1 of its own; branches merged
# later (identity, talkback, schedules, stage history) numbered their steps otherwise. Written out as they were.
_FIRST_STEP_1 = [
    MIGRATIONS[0][0],  # the same jobs table
    "CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC)",
    "CREATE INDEX jobs_status ON jobs (status, created_at DESC, id DESC)",
    "CREATE INDEX jobs_tool ON jobs (tool_name, created_at DESC, id DESC)",
    "CREATE INDEX jobs_active ON jobs (owner, created_at) WHERE status IN ('pending', 'running')",
    "CREATE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running')",
    "CREATE INDEX jobs_finished ON jobs (coalesce(finished_at, updated_at))"
    " WHERE status IN ('completed', 'failed', 'cancelled')",
    "CREATE TABLE leases (owner TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID",
]
_SCHEDULES_WITHOUT_FIRED_AT = [  # 2fccba9: schedules as step 4, its tick keys without `fired_at`
    sql.replace(",\n        fired_at INTEGER NOT NULL", "")
    .replace(", fired_at)", ")")
    .replace(", NEW.created_at)", ")")
    for sql in MIGRATIONS[6]
]
OTHER_NUMBERINGS = {
    "first store (8779c40)": [_FIRST_STEP_1],
    "identity at 4 (4992207)": [*MIGRATIONS[:3], MIGRATIONS[5]],
    "talkback at 4 (7ce6871)": [*MIGRATIONS[:3], MIGRATIONS[7]],
    "schedules at 4 (2fccba9)": [*MIGRATIONS[:3], _SCHEDULES_WITHOUT_FIRED_AT],
    "stage history in 5 (ce301e5)": [*MIGRATIONS[:4], [*MIGRATIONS[4], *MIGRATIONS[9]]],
    "stage history at 6 (9a5b1ab)": [*MIGRATIONS[:5], MIGRATIONS[9]],
}


def shape(db: Path) -> dict[str, Any]:
    """Each table's column names, each index's, view's and trigger's SQL (whitespace aside)."""
    rows = raw(db, "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite%'")
    return {
        name: sorted(c[1] for c in raw(db, f"PRAGMA table_info({name})")) if kind == "table" else " ".join(sql.split())
        for kind, name, sql in rows
    }


@pytest.mark.parametrize("steps", OTHER_NUMBERINGS.values(), ids=OTHER_NUMBERINGS.keys())
async def test_a_file_of_another_numbering_of_steps_is_upgraded_with_its_jobs(
    tmp_path: Path, steps: list[list[str]]
) -> None:
    """Such a file failed every start, naming no way out: "no such index: jobs_final" (the first store's file),
    "duplicate column name: principal" (and waiting_for, schedule_id, stage_history)."""
    db = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for sql in [*(sql for step in steps for sql in step), f"PRAGMA user_version = {len(steps)}"]:
            conn.execute(sql)
        jobs = [record("done", status=C, finished_at=100), record("waiting", dedupe_key="k"), record("busy", status=R)]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
        insert = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn.executemany(insert, [[codec.encode(rec)[codec.COLUMNS.index(c)] for c in columns] for rec in jobs])
    fresh = await reopened(tmp_path / "fresh.db")
    await fresh.close()
    upgraded = await reopened(db)
    try:
        counts = await upgraded.counts()
        assert (counts[C], counts[JobStatus.PENDING], counts[R]) == (1, 1, 1)
        assert [r.id for r in await upgraded.query(JobQuery(status=C))] == ["done"]
        assert sorted((r.id, r.dedupe_key) for r in await upgraded.active()) == [("busy", None), ("waiting", "k")]
        await upgraded.insert(full_record())
        assert await upgraded.get("job-full") == full_record()
        assert sorted(await upgraded.delete_finished(before=200)) == ["done"]
    finally:
        await upgraded.close()
    assert raw(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert shape(db) == shape(tmp_path / "fresh.db")
    again = await reopened(db)  # nothing left to do
    await again.close()
    assert shape(db) == shape(tmp_path / "fresh.db")


async def test_reopen_keeps_schema_version(store: SQLiteStore, db: Path) -> None:
    await store.close()
    again = await reopened(db)
    await again.close()
    assert raw(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_newer_schema_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    raw(db, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=rf"newer vibe-jobs \(schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}\)"):
        await SQLiteStore(url(db)).open()


@pytest.mark.parametrize("journal", ["delete", "wal"])
async def test_a_file_of_a_newer_schema_is_refused_without_a_byte_written(tmp_path: Path, journal: str) -> None:
    """A rollback to this version opening a newer vibe-jobs's file: refused before anything is changed. The step was
    checked only after WAL mode and `auto_vacuum` were set, which rewrote the file's header (its change counter, its
    journal mode: a newer version's choice of rollback journal was switched to WAL)."""
    db = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        for sql in [*(sql for step in MIGRATIONS for sql in step), f"PRAGMA user_version = {SCHEMA_VERSION + 1}"]:
            conn.execute(sql)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.read_bytes()
    with pytest.raises(StoreError, match=rf"newer vibe-jobs \(schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}\)"):
        await SQLiteStore(url(db)).open()
    assert db.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["newer.db"]  # no WAL or shared-memory file made


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_corrupt_file_refused(db: Path) -> None:
    write_file(db, b"this is not a database, just some text that is long enough " * 100)
    with pytest.raises(StoreCorrupt, match="is not a SQLite database or is corrupt") as info:
        await SQLiteStore(url(db)).open()
    assert str(db) in str(info.value)


async def test_unwritable_directory_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    write_file(blocker, b"not a directory")
    for target in (blocker / "sub" / "jobs.db", blocker / "jobs.db"):  # said "[Errno 17] File exists" for the 2nd
        with pytest.raises(StoreError, match=f"cannot open the job store at {target}: {blocker} is a file, not a dir"):
            await SQLiteStore(url(target)).open()


async def test_directory_as_database_refused(tmp_path: Path) -> None:
    """SQLite's own words were "the file cannot be opened or created (unable to open database file)"."""
    with pytest.raises(StoreError, match=f"cannot open the job store at {tmp_path}: it is a directory; name a file"):
        await SQLiteStore(url(tmp_path)).open()


async def test_parent_directory_created(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "jobs.db"
    s = SQLiteStore(url(target))
    await s.open()
    await s.close()
    assert target.exists()


# -- failures keep the store usable ---------------------------------------------------------


async def test_locked_database_is_a_clear_error_and_recovers(db: Path) -> None:
    s = SQLiteStore(url(db, "?busy_timeout=0.05"))
    await s.open()
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreLocked, match="locked by another process") as info:
            await s.insert(record("blocked"))
        assert info.value.transient
        blocker.execute("ROLLBACK")
        await s.insert(record("after"))
        assert await s.get("blocked") is None and await s.get("after") is not None
    finally:
        blocker.close()
        await s.close()


async def test_a_read_sent_with_a_write_the_database_refuses_is_answered(db: Path) -> None:
    """The store's process runs the ops that arrive together in one transaction: when it failed as a whole (the
    write lock held by another process here; the disk full, or the file at RLIMIT_FSIZE, in
    tests/e2e/test_resource_limits_e2e.py), a read that came with a write got the write's failure, and
    get-job-result answered "the job store has no room" for a job it could read. The reads are answered."""
    s = SQLiteStore(url(db, "?busy_timeout=0.05"))
    await s.open()
    await s.insert(record("kept"))
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        write, read = s.insert(record("blocked")), s.get("kept")  # sent together: one batch
        results = await asyncio.gather(write, read, return_exceptions=True)
        assert isinstance(results[0], StoreLocked), results
        assert isinstance(results[1], JobRecord) and results[1].id == "kept", results
    finally:
        blocker.close()
        await s.close()


async def test_disk_full_is_a_clear_error_and_recovers(store: SQLiteStore) -> None:
    await store.insert(record("before"))
    ((pages,),) = await store._sql("PRAGMA page_count")
    await store._sql(f"PRAGMA max_page_count = {pages}")  # "disk" full
    big = {"blob": "x" * 200_000}
    with pytest.raises(StoreFull, match="disk is full") as info:
        await store.insert(record("too-big", params=big))
    assert info.value.transient
    await store._sql("PRAGMA max_page_count = 1073741823")
    await store.insert(record("fits", params=big))
    assert {r.id for r in await store.query(JobQuery())} == {"fits", "before"}
    assert await store.get("too-big") is None


async def test_a_killed_server_process_fails_its_ops_clearly_and_is_replaced(store: SQLiteStore) -> None:
    await store.insert(record("before"))
    server = server_process(store)
    in_flight = asyncio.ensure_future(store.insert(record("in-flight")))
    server.kill()
    await server.wait()
    with pytest.raises(StoreUnavailable, match=r"SQLite server process .* stopped unexpectedly"):
        await in_flight
    await store.insert(record("after"))  # a new server process takes over
    assert server_process(store).pid != server.pid
    assert {r.id for r in await store.query(JobQuery())} == {"before", "after"}


async def test_no_server_process_is_started_again_on_a_database_deleted_under_it(store: SQLiteStore, db: Path) -> None:
    """It was: the new process made a new empty database, every job before it was gone, and the store went on
    (health, in 2 of 3 runs, said healthy)."""
    await store.insert(record("before"))
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{db}{suffix}")
    await kill_server(store)
    with pytest.raises(StoreCorrupt, match=r"was deleted while the store had it open.*not started on another file"):
        await store.insert(record("after"))
    assert not await anyio.Path(db).exists(), "no new database was made in its place"


async def kill_server(store: SQLiteStore) -> None:
    """Kill the store's server process and wait until the store has seen it go."""
    assert store._link is not None
    server_process(store).kill()
    await store._link.wait_gone()


def server_process(store: SQLiteStore) -> asyncio.subprocess.Process:
    assert store._link is not None and store._link._proc is not None
    return store._link._proc


CHILD = """
import asyncio, os, sys
from vibe_jobs.store.sqlite import SQLiteStore
async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    print(store._link._proc.pid, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.mark.parametrize("forked", [False, True], ids=["alone", "with-a-forked-child"])
async def test_the_server_process_ends_with_its_parent(db: Path, forked: bool) -> None:
    """Also when a child forked from the parent still holds the parent's end of the socket."""
    fork = "    os.fork() or (os.read(0, 1), os._exit(0))  # the child waits for stdin to close\n" if forked else ""
    script = CHILD.replace("    await store.open()\n", "    await store.open()\n" + fork)
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url(db), stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None and parent.stdin is not None
    server_pid = int(await parent.stdout.readline())
    watch = os.pidfd_open(server_pid)  # readable once that process has ended
    try:
        parent.kill()  # SIGKILL: the parent cannot stop its server itself
        with anyio.fail_after(10):
            await anyio.wait_readable(watch)
    finally:
        os.close(watch)
        parent.stdin.close()  # ends the forked child (it waits on this pipe)
        await parent.stdout.read()  # to the end: every holder of the pipe is gone
        await parent.wait()


async def test_nothing_but_the_parent_hears_from_the_server_process(db: Path) -> None:
    """Over stdio the parent's stdout carries the MCP protocol: the server process writes nothing to it."""
    script = CHILD.replace(
        "    print(store._link._proc.pid, flush=True)\n    await asyncio.Event().wait()",
        "    await store.heartbeat('x', 1)\n    await store.close()",
    )
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url(db), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await done.communicate()
    assert (done.returncode, out, err) == (0, b"", b"")


class Stage(str, enum.Enum):  # noqa: UP042 - str() of this one is "Stage.LOAD": the value must be stored
    """A caller's own str enum: the server process cannot import this module."""

    LOAD = "load"


async def test_values_the_database_cannot_hold_fail_only_their_own_op(store: SQLiteStore, db: Path) -> None:
    await store.insert(record("a"))

    async def op(coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except Exception as exc:
            return exc

    ops = [
        store.insert(record("before")),
        store.update("a", {"progress_message": "lone \ud800"}),  # UTF-8 cannot encode it
        store.update("a", {"progress_message": iter(())}),  # no value for a database
        store.insert(record("after")),
        store.update("a", {"current_stage": Stage.LOAD}),  # stored as its value
    ]  # in one batch, as the loop sends them
    before, surrogate, generator, after, stage = await asyncio.gather(*(op(c) for c in ops))
    assert (before, after) == (True, True)
    assert isinstance(surrogate, (StoreError, UnicodeEncodeError)) and "surrogate" in str(surrogate)
    assert isinstance(generator, StoreError) and "tuple_iterator" in str(generator)
    assert isinstance(stage, JobRecord) and stage.current_stage == "load"
    assert sorted(raw(db, "SELECT id FROM jobs")) == [("a",), ("after",), ("before",)]
    got = await store.get("a")
    assert got is not None and (got.progress_message, got.current_stage, got.version) == (None, "load", 2)


async def test_a_poll_between_updates_is_not_undone(store: SQLiteStore) -> None:
    await store.insert(record("a"))
    touch = store.touch("a", 9, 123, None)  # a poll and a progress update in the same moment
    update = store.update("a", {"progress_message": "half"}, Guard(version=1))
    _, updated = await asyncio.gather(touch, update)
    assert updated is not None and (updated.access_count, updated.progress_message) == (9, "half")
    assert updated == await store.get("a")


async def test_ops_during_a_restart_wait_for_the_new_server(store: SQLiteStore) -> None:
    await store.insert(record("a"))
    await kill_server(store)
    got = await asyncio.gather(store.get("a"), store.heartbeat("me", 10), store.get("a"))
    assert got[0] is not None and got[2] is not None


async def test_a_store_closed_during_a_restart_stays_closed(store: SQLiteStore) -> None:
    await store.insert(record("a"))
    await kill_server(store)
    restarting = asyncio.ensure_future(store.get("a"))
    await asyncio.sleep(0)  # one loop turn: the op takes the restart lock and starts a new server
    assert store._lifecycle.locked()  # the restart is under way when the store closes
    await store.close()
    with pytest.raises(StoreError, match=r"closed|not open"):
        await restarting
    assert store._link is None


async def test_bad_values_fail_only_their_operation(store: SQLiteStore) -> None:
    with pytest.raises(TypeError):
        await store.insert(record("bad", params={"x": object()}))
    with pytest.raises(StoreError, match="unknown job status"):
        await store.update("bad", {"status": "sleeping"})
    await store.insert(record("good"))
    assert await store.get("good") is not None and await store.get("bad") is None


async def test_not_open_is_an_error(db: Path) -> None:
    s = SQLiteStore(url(db))
    with pytest.raises(StoreError, match="not open"):
        await s.get("x")


# -- size stays bounded ---------------------------------------------------------------------


@pytest.mark.slow
async def test_file_shrinks_after_deleting_finished_jobs(store: SQLiteStore, db: Path) -> None:
    n, result = 100_000, {"content": [{"type": "text", "text": "done " * 20}], "isError": False}

    async def insert_range(start: int) -> None:
        for i in range(start, n, 500):
            await store.insert(record(f"big-{i:06d}", status=C, finished_at=i, result=result, params={"i": i}))

    async with anyio.create_task_group() as tg:
        for start in range(500):
            tg.start_soon(insert_range, start)
    full = size(db)
    while await store.delete_finished(before=n + 1):
        pass
    await store.close()
    cleaned = size(db)
    print(f"\n{n:,} finished jobs: {full / 1e6:.1f} MB; after deleting them: {cleaned / 1e6:.2f} MB")
    assert full > 20_000_000
    assert cleaned < full / 10


# -- URL and the JobManager -----------------------------------------------------------------


def test_parse_url() -> None:
    assert parse_url("sqlite:////abs/jobs.db") == ("/abs/jobs.db", {})
    assert parse_url("sqlite:///rel/jobs.db?synchronous=full") == ("rel/jobs.db", {"synchronous": "full"})
    assert parse_url("sqlite:///:memory:") == (":memory:", {})
    for bad in ("sqlite://", "sqlite:///", "sqlite:/x"):
        with pytest.raises(ConfigError):
            parse_url(bad)
    with pytest.raises(ConfigError, match="synchronous"):
        SQLiteStore("sqlite:///x.db?synchronous=off")


def test_a_path_from_home_is_the_user_s_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It was a directory named `~` in the working directory (Claude Desktop's config passes the URL as written)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_url("sqlite:///~/jobs/j.db?busy_timeout=1") == (f"{tmp_path}/jobs/j.db", {"busy_timeout": "1"})
    assert SQLiteStore("sqlite:///~/j.db").path == f"{tmp_path}/j.db"
    assert parse_url("sqlite:///not~home.db")[0] == "not~home.db"


def test_a_question_mark_in_a_file_name_is_refused_saying_why() -> None:
    with pytest.raises(ConfigError, match=r"no option '2026.db'.*'\?' starts the URL's options"):
        parse_url("sqlite:///report?2026.db")


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("?synchronus=full", "has no option 'synchronus'; its options: synchronous, busy_timeout"),
        ("?busy_timeout=abc", "busy_timeout must be seconds from 0 to 3600, not 'abc'"),
        ("?busy_timeout=nan", "not 'nan'"),  # a traceback (ValueError) before
        ("?busy_timeout=1e308", "not '1e308'"),  # a traceback (OverflowError) before
        ("?busy_timeout=-5", "not '-5'"),
        ("?answer_timeout=0", "answer_timeout must be seconds from 1 to 86400, not '0'"),
        ("?answer_timeout=soon", "answer_timeout must be seconds from 1 to 86400, not 'soon'"),
    ],
)
def test_a_mistyped_or_impossible_url_option_is_refused_naming_it(query: str, said: str) -> None:
    """A misspelt option was ignored silently (the store ran with its default), and some values ended in a
    traceback."""
    with pytest.raises(ConfigError) as refused:
        SQLiteStore(f"sqlite:///x.db{query}")
    assert said in str(refused.value)


def test_a_serve_on_a_url_with_an_unknown_option_says_so_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", f"sqlite:///{tmp_path}/j.db?synchronus=full"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "vibe-jobs: the SQLite store URL has no option 'synchronus'; its options: synchronous, busy_timeout, "
        "answer_timeout"
    )
    assert not (tmp_path / "j.db").exists()


@pytest.mark.parametrize("tables", [["customers"], ["jobs", "orders"]])
async def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path, tables: list[str]) -> None:
    """`vibe-jobs jobs list` on an application's database switched it to WAL and added six tables; one with a
    `jobs` table of its own failed on it, after the switch to WAL."""
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path)) as app:
        for table in tables:
            app.execute(f"CREATE TABLE {table} (id INTEGER)")
        app.commit()
    with pytest.raises(ConfigError, match=r"is another program's database, not a vibe-jobs job store"):
        await SQLiteStore(url(path)).open()
    with contextlib.closing(sqlite3.connect(path)) as app:
        assert app.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert app.execute("PRAGMA user_version").fetchone() == (0,)
        assert sorted(r[0] for r in app.execute("SELECT name FROM sqlite_master")) == sorted(tables)


async def test_memory_database_and_open_store() -> None:
    s = open_store("sqlite:///:memory:")
    assert isinstance(s, SQLiteStore)
    await s.open()
    try:
        await s.insert(record("m"))
        assert await s.get("m") is not None
    finally:
        await s.close()


async def test_job_manager_results_readable_after_reopen(db: Path) -> None:
    result = {"content": [{"type": "text", "text": "résultat ✓"}], "isError": False}
    async with JobManager(store=SQLiteStore(url(db)), settings=Settings()) as manager:
        job_id = await manager.create_job("echo", {"text": "héllo"})
        await manager.update_job_status(job_id, JobStatus.RUNNING, "working", 50)
        await manager.set_job_result(job_id, result)
    async with JobManager(store=SQLiteStore(url(db)), settings=Settings()) as manager:
        job = await manager.get_job(job_id)
    assert (job.status, job.result, job.params, job.progress_percentage) == (C, result, {"text": "héllo"}, 100.0)


def at_once(opener: Callable[[], None], threads: int) -> None:
    """Run `opener` in `threads` threads (it waits on a barrier of that many to start them together)."""
    started = [threading.Thread(target=opener) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()


def test_servers_opening_one_new_file_at_once_all_open_it() -> None:
    """Two servers started together on a new file: one read the schema step (none yet) and the tables (the
    other's first step, committed between the two reads) apart, and refused the file as another program's
    database. Eight openers at once on each of 30 new files: every one opens it, at the latest schema step."""
    from vibe_jobs.store.sqlite.schema import pragmas
    from vibe_jobs.store.sqlite.server import Config, connect
    from vibe_jobs.store.sqlite.store import MAX_OPS

    failures: list[BaseException] = []
    for round_ in range(30):
        with tempfile.TemporaryDirectory() as tmp:
            config = Config(
                path=f"{tmp}/jobs.db", pragmas=pragmas("NORMAL", 5000), migrations=MIGRATIONS, max_ops=MAX_OPS
            )
            start = threading.Barrier(8)

            def opener(config: Config = config, start: threading.Barrier = start) -> None:
                start.wait()
                try:
                    conn = connect(config)
                except BaseException as exc:
                    failures.append(exc)
                    return
                with contextlib.closing(conn):
                    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

            at_once(opener, 8)
        assert not failures, f"round {round_}: {failures[:3]}"


def test_openers_of_one_old_file_at_once_see_the_schema_they_migrated_to(tmp_path: Path) -> None:
    """Servers (or `vibe-jobs jobs`) started together on a file of schema 1: the one whose migration found every
    step done by another read its schema before that, kept it (PRAGMA user_version does not check it), and its
    first read through a partial index changed since (`jobs stats`: INDEXED BY jobs_final) failed with "no query
    solution". Eight openers at once on each of 20 schema-1 files: every one counts and lists its jobs."""
    from vibe_jobs.store.sqlite.schema import pragmas
    from vibe_jobs.store.sqlite.server import Config, connect
    from vibe_jobs.store.sqlite.store import MAX_OPS

    failures: list[BaseException] = []
    for round_ in range(20):
        path = tmp_path / f"old-{round_}.db"
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as old:
            for sql in ["PRAGMA journal_mode = WAL", *MIGRATIONS[0], "PRAGMA user_version = 1"]:
                old.execute(sql)
        config = Config(path=str(path), pragmas=pragmas("NORMAL", 5000), migrations=MIGRATIONS, max_ops=MAX_OPS)
        start = threading.Barrier(8)

        def opener(config: Config = config, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                with contextlib.closing(connect(config)) as conn:
                    conn.execute(sqlite_module._COUNTS).fetchall()
                    conn.execute(sqlite_sql.query_sql(C, False, False), ("completed", 10)).fetchall()
            except BaseException as exc:
                failures.append(exc)

        at_once(opener, 8)
        assert not failures, f"round {round_}: {failures[:3]}"


# -- a principal's lock across processes (sqlite.principals; across real processes: tests/test_quotas_*.py) ----


def listing(directory: Path) -> dict[str, int]:
    """{name: size} of the files in `directory` (a link's size: its target's)."""
    return {p.name: p.stat().st_size for p in directory.iterdir()}


async def refused_at_once(db: Path, principal: str, byte_ranges: bool = principals.BYTE_RANGES) -> bool:
    """Whether another holder (a descriptor of its own: as in another process) is refused `principal` now."""
    try:
        async with principals.principal_held(str(db), principal, byte_ranges=byte_ranges, wait_ms=0):
            return False
    except StoreLocked:
        return True


async def test_a_principal_s_lock_excludes_every_other_holder_and_only_its_own_close_releases_it(
    store: SQLiteStore, db: Path
) -> None:
    """An open-file-description lock: a second holder in this same process is refused (a process's POSIX lock
    would not exclude it); closing another descriptor of the lock file leaves it held (it would drop a POSIX
    lock); another principal's is free."""
    async with store.principal_lock("alice") as held:
        assert held
        assert await refused_at_once(db, "alice")
        os.close(os.open(principals.lock_path(str(db)), os.O_RDONLY))
        assert await refused_at_once(db, "alice")
        assert not await refused_at_once(db, "bob")
    assert not await refused_at_once(db, "alice")
    assert listing(db.parent)[f"{db.name}{principals.SUFFIX}"] == 0  # an empty file


async def test_without_byte_range_locks_every_principal_shares_the_one_lock(db: Path) -> None:
    """Where there is no open-file-description lock (not Linux), flock on the whole file: still exact, coarser."""
    db.parent.mkdir(parents=True)
    async with principals.principal_held(str(db), "alice", byte_ranges=False):
        assert await refused_at_once(db, "alice", byte_ranges=False)
        assert await refused_at_once(db, "bob", byte_ranges=False)
    assert not await refused_at_once(db, "bob", byte_ranges=False)


async def test_the_lock_file_is_beside_the_database_a_link_names(tmp_path: Path) -> None:
    """As SQLite's -wal and -shm: two processes naming one file by two paths lock the same file."""
    real, link = tmp_path / "real.db", tmp_path / "link.db"
    real.touch()
    link.symlink_to(real)
    async with principals.principal_held(str(link), "alice"):
        assert await refused_at_once(real, "alice")
    assert sorted(listing(tmp_path)) == ["link.db", "real.db", "real.db-quota"]


async def test_a_database_in_memory_takes_no_principal_lock() -> None:
    store = SQLiteStore("sqlite:///:memory:")
    async with store.principal_lock("alice") as held:
        assert not held


def test_the_sqlite_store_locks_principals_and_is_no_cluster_store() -> None:
    """The manager takes a store's principal lock by `PrincipalLocking`; the engine's job source stays the local
    one (`SharedJobStore` is PostgreSQL's). The memory store is one process's: the manager's own lock is enough."""
    store = SQLiteStore("sqlite:///:memory:")
    assert isinstance(store, PrincipalLocking) and not isinstance(store, SharedJobStore)
    assert not isinstance(MemoryStore(), PrincipalLocking)


async def test_a_principal_utf_8_cannot_encode_is_a_store_error_with_quotas_on(tmp_path: Path) -> None:
    """A lone surrogate (a JWT `sub` of "\\ud800" decodes to one) reached the quota lock's hash, which encoded it
    strictly: a bare UnicodeEncodeError left create_job, an error no surface answers (review helper-83 F2). Now it
    meets the store as without quotas, which refuses it (StoreError, a JobError the surfaces answer)."""
    from vibe_jobs.identity import Viewer

    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    try:
        for settings in (Settings(), Settings(quota_pending=5)):
            with pytest.raises(StoreError):
                await JobManager(store, settings).create_job("t", {}, viewer=Viewer("a\ud800"))
    finally:
        await store.close()


async def test_a_job_of_a_negative_version_is_changed_under_its_own_guard(tmp_path: Path) -> None:
    """A version below 0 (a row someone wrote by hand) took the cached guard of version 1023 from the end of the
    guards' tuple: no change of the job could ever land (StaleWrite), where before it was guarded as itself
    (review helper-83 F3)."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    try:
        job_id = await JobManager(store, Settings()).create_job("t", {})
        await store._sql("UPDATE jobs SET version = -1 WHERE id = ?", (job_id,))
        rec = await JobManager(store, Settings()).cancel_job(job_id)  # a manager that read the job afresh
        assert rec.status is JobStatus.CANCELLED
    finally:
        await store.close()


async def test_a_link_planted_as_the_quota_lock_file_is_not_followed(tmp_path: Path) -> None:
    """`<db>-quota` is opened to lock a principal: a symbolic link planted there (to a file that does not exist
    yet, or to one of the server's) was followed, creating or opening its target (review helper-83). Now the call
    is refused, naming the lock file, and nothing is made at the target."""
    from vibe_jobs.identity import Viewer

    db, target = tmp_path / "jobs.db", tmp_path / "elsewhere"
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    try:
        (tmp_path / "jobs.db-quota").symlink_to(target)
        with pytest.raises(StoreError, match="quota lock file"):
            await JobManager(store, Settings(quota_pending=5)).create_job("t", {}, viewer=Viewer("alice"))
        assert not target.exists()
    finally:
        await store.close()
