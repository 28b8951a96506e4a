"""The jobs table as the writer thread sees it: SQL plus a write-through cache of recent records.

Only the writer thread touches a `JobTable`. The cache makes `get` free and lets `update` skip
`RETURNING` (the new record is the cached one with the changes applied). It is kept exact:
- every change this connection makes updates it (after the statement succeeded);
- `PRAGMA data_version` is checked at the start of each batch (inside the write transaction, so
  nobody can commit in between): when another process committed, the cache is dropped;
- a rolled-back batch drops it.
Records handed out are never changed afterwards (an update builds a new record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

from vibe_jobs.errors import StoreError
from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store import sqlite_codec as codec
from vibe_jobs.store.base import Guard
from vibe_jobs.store.sqlite_schema import COLUMNS

_GET = f"{codec.SELECT} WHERE id = ?"
_TOUCH = "UPDATE jobs SET access_count = ?, last_access_time = ?, next_check_time = ? WHERE id = ?"
_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
_AT: dict[str, int] = {name: i for i, name in enumerate(COLUMNS)}  # a field's position in a record
_VERSION_AT = _AT["version"]
_fields = attrgetter(*COLUMNS)
_BY_VERSION: dict[tuple[str, ...], str] = {}  # UPDATE ... WHERE id = ? AND version = ?, by changed keys


class JobTable:
    def __init__(self, cache_size: int = 20_000) -> None:
        self.cache: dict[str, JobRecord] = {}
        self.cache_size = cache_size
        self._data_version: int | None = None
        self.vacuum_due = False
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None

    def begin(self, conn: sqlite3.Connection) -> None:
        """At the start of a batch: forget the cache when another connection has committed."""
        if conn is not self._conn:
            self._conn, self._cur = conn, conn.cursor()  # one cursor for the writes: none built per call
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self.cache.clear()
            self._data_version = version

    def rolled_back(self) -> None:
        self.cache.clear()

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Give the pages of deleted jobs back to the file system (auto_vacuum = INCREMENTAL).

        `executescript` steps the pragma to the end; `execute` would free a single page.
        """
        if self.vacuum_due:
            self.vacuum_due = False
            conn.executescript("PRAGMA incremental_vacuum;")

    def _remember(self, rec: JobRecord) -> JobRecord:
        cache = self.cache
        if len(cache) >= self.cache_size and rec.id not in cache:
            del cache[next(iter(cache))]  # the oldest entry
        cache[rec.id] = rec
        return rec

    def _cursor(self, conn: sqlite3.Connection) -> sqlite3.Cursor:
        return self._cur if conn is self._conn and self._cur is not None else conn.cursor()

    def insert(self, conn: sqlite3.Connection, item: tuple[list[Any], JobRecord]) -> None:
        row, rec = item
        try:
            self._cursor(conn).execute(codec.INSERT, row)
        except sqlite3.IntegrityError:
            raise StoreError(f"a job with id '{rec.id}' exists already", job_id=rec.id) from None
        self._remember(rec)

    def get(self, conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
        rec = self.cache.get(job_id)
        if rec is not None:
            return rec
        row = conn.execute(_GET, (job_id,)).fetchone()
        return None if row is None else self._remember(codec.decode(row))

    def update(self, conn: sqlite3.Connection, change: Change) -> JobRecord | None:
        rec = self.cache.get(change.job_id)
        if rec is None:
            return self._update_returning(conn, change)
        if not change.guard.holds(rec):
            return None
        cur = self._cursor(conn)
        cur.execute(change.sql, [*change.values, change.job_id, rec.version])
        if cur.rowcount != 1:
            del self.cache[change.job_id]  # cannot happen while the cache is exact; recover anyway
            return self._update_returning(conn, change)
        return self._remember(change.apply(rec))

    def _update_returning(self, conn: sqlite3.Connection, change: Change) -> JobRecord | None:
        row = conn.execute(*change.returning()).fetchone()
        return None if row is None else self._remember(codec.decode(row))

    def touch(self, conn: sqlite3.Connection, args: tuple[Any, ...]) -> None:
        conn.execute(_TOUCH, args)
        rec = self.cache.pop(args[3], None)
        if rec is not None:
            new = codec.clone(rec)
            new.access_count, new.last_access_time, new.next_check_time = args[:3]
            self._remember(new)

    def forget(self, ids: list[str], vacuum: bool) -> None:
        """Deleted jobs: drop them from the cache; `vacuum` asks for an incremental vacuum."""
        for job_id in ids:
            self.cache.pop(job_id, None)
        self.vacuum_due = self.vacuum_due or vacuum


class Change:
    """One `update` call, its values encoded on the event loop.

    `sql` is the UPDATE for a known current version (the cached record's): no RETURNING needed.
    """

    __slots__ = ("changes", "guard", "job_id", "sql", "values")

    def __init__(self, job_id: str, changes: Mapping[str, Any], guard: Guard) -> None:
        self.job_id, self.changes, self.guard = job_id, dict(changes), guard
        self.values = codec.change_values(self.changes)
        keys = tuple(self.changes)
        sql = _BY_VERSION.get(keys)
        if sql is None:
            sql = _BY_VERSION[keys] = codec.update_sql(keys, True, False, -1, False)
        self.sql = sql

    def returning(self) -> tuple[str, list[Any]]:
        g = self.guard
        by_version, by_attempt, n_statuses, args = codec.guard_values(g.version, g.attempt, g.statuses)
        sql = codec.update_sql(tuple(self.changes), by_version, by_attempt, n_statuses)
        return sql, [*self.values, self.job_id, *args]

    def apply(self, rec: JobRecord) -> JobRecord:
        """The record with the changes applied and the next version (a new record)."""
        fields = list(_fields(rec))
        for key, value in self.changes.items():
            fields[_AT[key]] = _STATUS[value] if key == "status" else value
        fields[_VERSION_AT] = rec.version + 1
        return JobRecord(*fields)
