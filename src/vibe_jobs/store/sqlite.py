"""The SQLite store: durable by default, embedded, one file (WAL mode).

URL: `sqlite:///` + a path, as SQLAlchemy spells it: `sqlite:////abs/path/jobs.db` (absolute),
`sqlite:///jobs.db` (relative to the working directory), `sqlite:///:memory:` (tests). Options as a
query string: `?synchronous=full` (fsync every group commit), `?busy_timeout=5` (seconds).

All SQL runs on one dedicated thread with group commit (`_writer.Writer`); the event loop only
encodes parameters, queues an operation and awaits its future. Every change is a compare-and-set
`UPDATE ... WHERE id = ? AND <guards> RETURNING ...` that bumps `version`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vibe_jobs.errors import ConfigError, StoreError
from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store import sqlite_codec as codec
from vibe_jobs.store._writer import Writer
from vibe_jobs.store.base import NO_GUARD, UPDATABLE, Guard, JobQuery
from vibe_jobs.store.sqlite_errors import open_error, store_error
from vibe_jobs.store.sqlite_schema import ACTIVE_SQL, FINAL_SQL, configure, migrate
from vibe_jobs.store.sqlite_table import Change, JobTable

VACUUM_AFTER = 1000  # deleted rows that make `delete_finished` give the free pages back to the disk
# `orphans` deletes leases that expired this long before its `now`: their owners are gone, and the
# margin keeps a lease that a clock stepped back could still find live.
EXPIRED_LEASE_KEPT_MS = 3_600_000

_FIND_ACTIVE = (
    f"{codec.SELECT} WHERE dedupe_key = ? AND dedupe_key IS NOT NULL AND {ACTIVE_SQL}"
    " ORDER BY created_at DESC, rowid DESC LIMIT 1"
)
_ACTIVE = f"{codec.SELECT} INDEXED BY jobs_active WHERE {ACTIVE_SQL} ORDER BY created_at, id"
_ACTIVE_OF = f"{codec.SELECT} INDEXED BY jobs_active WHERE owner = ? AND {ACTIVE_SQL} ORDER BY created_at, id"
_COUNTS = (
    f"SELECT status, count(*) FROM jobs INDEXED BY jobs_active WHERE {ACTIVE_SQL} GROUP BY status"
    f" UNION ALL SELECT status, count(*) FROM jobs INDEXED BY jobs_final WHERE {FINAL_SQL} GROUP BY status"
)
_DELETE_FINISHED = (
    "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs INDEXED BY jobs_expiry WHERE "
    f"{FINAL_SQL} AND coalesce(finished_at, updated_at) < ? LIMIT ?) RETURNING id"
)
_HEARTBEAT = (
    "INSERT INTO leases (owner, expires_at) VALUES (?, ?)"
    " ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at"
)
_RELEASE = "DELETE FROM leases WHERE owner = ?"
_DROP_EXPIRED = "DELETE FROM leases WHERE expires_at < ?"
_ORPHANS = (
    f"{codec.SELECT} INDEXED BY jobs_active WHERE {ACTIVE_SQL} AND (owner IS NULL OR owner NOT IN"
    " (SELECT owner FROM leases WHERE expires_at > ?)) ORDER BY created_at, id"
)


def _select(conn: sqlite3.Connection, query: tuple[str, Any]) -> list[JobRecord]:
    return [codec.decode(r) for r in conn.execute(*query)]


def _counts(conn: sqlite3.Connection, _: None) -> dict[str, int]:
    return dict(conn.execute(_COUNTS).fetchall())


def _execute(conn: sqlite3.Connection, statement: tuple[str, Any]) -> None:
    conn.execute(*statement)


def _orphans(conn: sqlite3.Connection, now: int) -> list[JobRecord]:
    conn.execute(_DROP_EXPIRED, (now - EXPIRED_LEASE_KEPT_MS,))
    return [codec.decode(r) for r in conn.execute(_ORPHANS, (now,))]


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """`sqlite:///<path>?opt=value` -> (path, options)."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"a SQLite store URL looks like sqlite:///path/to/jobs.db, not {url!r}")
    parts = urlsplit(url)
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if not path:
        raise ConfigError(f"the SQLite store URL {url!r} names no file")
    return path, {k: v[-1] for k, v in parse_qs(parts.query).items()}


class SQLiteStore:
    """A `JobStore` in one SQLite file. Records returned are fresh copies."""

    def __init__(self, url: str, *, busy_timeout: float | None = None, synchronous: str | None = None) -> None:
        self.url = url
        self.path, options = parse_url(url)
        self.synchronous = (synchronous or options.get("synchronous", "normal")).upper()
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"synchronous must be normal, full or extra, not {self.synchronous!r}")
        self.busy_timeout = busy_timeout if busy_timeout is not None else float(options.get("busy_timeout", 5))
        self._writer: Writer | None = None
        self._table = JobTable()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._table = table = JobTable()
        writer = Writer(
            self._connect, self._error, on_begin=table.begin, on_rollback=table.rolled_back,
            after_commit=table.after_commit,
            name=f"vibe-jobs-sqlite:{Path(self.path).name}",
        )  # fmt: skip
        await writer.start()
        self._writer = writer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()

    def _connect(self) -> sqlite3.Connection:
        """Runs on the writer thread: open the file, set the pragmas, migrate the schema."""
        self._make_parent()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
        except sqlite3.Error as exc:
            raise open_error(self.path, exc) from None
        try:
            configure(conn, self.synchronous, int(self.busy_timeout * 1000))
            migrate(conn, self.path)
        except BaseException as exc:
            conn.close()
            raise (store_error(exc, self.path) if isinstance(exc, sqlite3.Error) else exc) from None
        return conn

    def _make_parent(self) -> None:
        if self.path == ":memory:":
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise open_error(self.path, exc) from None

    def _error(self, exc: sqlite3.Error) -> Exception:
        return store_error(exc, self.path)

    def _run(self, op: Any, arg: Any, writes: bool) -> Any:
        """Queue `op(conn, arg)` to the writer thread; await the result."""
        if self._writer is None:
            raise StoreError(f"the job store at {self.path} is not open (use `await store.open()` first)")
        return self._writer.submit(op, arg, writes)

    # -- jobs ------------------------------------------------------------------------------

    async def insert(self, job: JobRecord) -> None:
        await self._run(self._table.insert, (codec.encode(job), job), True)

    async def get(self, job_id: str) -> JobRecord | None:
        rec: JobRecord | None = await self._run(self._table.get, job_id, False)
        return rec

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        if not UPDATABLE.issuperset(changes):
            bad = sorted(set(changes) - UPDATABLE)
            raise StoreError(f"field '{bad[0]}' cannot be updated", job_id=job_id)
        rec: JobRecord | None = await self._run(self._table.update, Change(job_id, changes, guard or NO_GUARD), True)
        return rec

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        await self._run(self._table.touch, (access_count, last_access_time, next_check_time, job_id), True)

    async def query(self, query: JobQuery) -> list[JobRecord]:
        sql = codec.query_sql(query.status, query.tool_name is not None, query.before is not None)
        args: list[Any] = [codec.ENCODE["status"](query.status)] if query.status is not None else []
        if query.tool_name is not None:
            args.append(query.tool_name)
        if query.before is not None:
            args += query.before
        args.append(query.limit)
        return await self._rows(sql, args)

    async def _rows(self, sql: str, args: Any, writes: bool = False) -> list[JobRecord]:
        rows: list[JobRecord] = await self._run(_select, (sql, args), writes)
        return rows

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        found = await self._rows(_FIND_ACTIVE, (dedupe_key,))
        return found[0] if found else None

    async def active(self, owner: str | None = None) -> list[JobRecord]:
        return await (self._rows(_ACTIVE, ()) if owner is None else self._rows(_ACTIVE_OF, (owner,)))

    async def counts(self) -> dict[JobStatus, int]:
        found: dict[str, int] = await self._run(_counts, None, False)
        return {status: found.get(status.value, 0) for status in JobStatus}

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        table = self._table

        def op(conn: sqlite3.Connection, args: tuple[int, int]) -> list[str]:
            ids = [row[0] for row in conn.execute(_DELETE_FINISHED, args)]
            table.forget(ids, vacuum=len(ids) >= VACUUM_AFTER)
            return ids

        deleted: list[str] = await self._run(op, (before, limit), True)
        return deleted

    # -- leases ----------------------------------------------------------------------------

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        await self._run(_execute, (_HEARTBEAT, (owner, expires_at)), True)

    async def release(self, owner: str) -> None:
        await self._run(_execute, (_RELEASE, (owner,)), True)

    async def orphans(self, now: int) -> list[JobRecord]:
        """Also deletes leases long expired (see EXPIRED_LEASE_KEPT_MS): the table does not grow by one
        row for every process that ever ran."""
        found: list[JobRecord] = await self._run(_orphans, now, True)
        return found
