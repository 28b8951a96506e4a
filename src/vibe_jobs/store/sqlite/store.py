"""The SQLite store: durable by default, embedded, one file (WAL mode).

URL: `sqlite:///` + a path, as SQLAlchemy spells it: `sqlite:////abs/path/jobs.db` (absolute),
`sqlite:///jobs.db` (relative to the working directory), `sqlite:///:memory:` (tests). Options as a
query string: `?synchronous=full` (fsync every group commit), `?busy_timeout=5` (seconds).

All SQL runs in a child process that owns the connection and commits in groups (`sqlite.server`,
reached through `sqlite.link.Link`); the event loop only encodes parameters, queues an op and
awaits its future, which resolves after the commit. Every change is a compare-and-set
`UPDATE ... WHERE id = ? AND <guards>` that bumps `version`. The store remembers the last record it
read or wrote of each recent job: an update guarded by that record's version needs no RETURNING,
since the new record is that one with the changes applied.

A write whose answer was lost, because the server process died after the write was sent (killed, out of
memory), may have been committed or not. `insert`, `update` and `fire` read the row back after the restart to
tell: one that was committed answers as it would have; one that was not fails as any write does. Before, every
one failed "unavailable": a claim that had landed was then taken for a lost race and its job never ran, a
retry that had landed was never queued, and a created job was reported failed but stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Awaitable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import anyio

from vibe_jobs.errors import ConfigError, DuplicateJob, StoreCorrupt, StoreError, StoreUnavailable
from vibe_jobs.logs import get_logger
from vibe_jobs.models import JobRecord
from vibe_jobs.owners import owner_prefix
from vibe_jobs.recent import Recent, RecentRecords
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.shared import SharedCall
from vibe_jobs.states import JobStatus
from vibe_jobs.store import codec, schedulerows
from vibe_jobs.store.base import (
    ADOPT_CHUNK,
    CANCELLED_WITHOUT_RUN_SQL,
    NO_GUARD,
    WAITS_SINCE_SQL,
    DurationRow,
    Guard,
    JobQuery,
    adopted_records,
    check_active_filter,
    check_adoptable,
    check_updatable,
)
from vibe_jobs.store.liveness import ProcessId, has_ended, this_process
from vibe_jobs.store.sqlite import dbfile, principals, sql
from vibe_jobs.store.sqlite.change import Change
from vibe_jobs.store.sqlite.errors import failure_error, open_error
from vibe_jobs.store.sqlite.link import AnswerLost, Link, Statement, statement
from vibe_jobs.store.sqlite.older import older_servers
from vibe_jobs.store.sqlite.schema import ACTIVE_SQL, FINAL_SQL, MIGRATIONS, SCHEMA_VERSION, pragmas
from vibe_jobs.store.sqlite.server import ALL, COLUMN, NONE, ONE, ROWCOUNT, VACUUM, Config, Failure
from vibe_jobs.store.upgrades import older_servers_message

log = get_logger("vibe_jobs.store.sqlite")

MAX_OPS = 4000  # ops in one transaction at most
KNOWN_RECORDS = 20_000  # records remembered as the base of the next update of their job
PROBLEM_SECONDS = 2.0  # how long `problem` waits for the file system
PROBLEM_RETRY_SECONDS = 60.0  # while a check hangs, another starts after this long (one that never ran)
_COLUMN_AT = {name: i for i, name in enumerate(codec.COLUMNS)}  # a row's raw columns, as `get` reads them
_VERSION_AT = _COLUMN_AT["version"]
LANDINGS_KEPT = 1024  # updates settled by a read-back, remembered so that two alike are not both told they won
ANSWER_SECONDS = 60.0  # the least time a server process may answer nothing while ops wait (see Link)
VACUUM_AFTER = 1000  # deleted rows that make `delete_finished` give the free pages back to the disk
# `orphans` deletes leases that expired this long before its `now`: their owners are gone, and the
# margin keeps a lease that a clock stepped back could still find live.
EXPIRED_LEASE_KEPT_MS = 3_600_000

_FIND_ACTIVE = (
    f"{sql.SELECT} WHERE dedupe_key = ? AND dedupe_key IS NOT NULL AND {ACTIVE_SQL}"
    " ORDER BY created_at DESC, rowid DESC LIMIT 1"
)
_ACTIVE = f"{sql.SELECT} INDEXED BY jobs_active WHERE {ACTIVE_SQL} ORDER BY created_at, id"
_ACTIVE_OF = f"{sql.SELECT} INDEXED BY jobs_active WHERE owner = ? AND {ACTIVE_SQL} ORDER BY created_at, id"
_ACTIVE_BY = f"{sql.SELECT} INDEXED BY jobs_active_by WHERE principal = ? AND {ACTIVE_SQL} ORDER BY created_at, id"
# the queue every process on the file feeds: pending jobs by priority rank, with since when the longest-waiting
# one of each has waited (`store.base.QueueReading`)
_PENDING_BY_PRIORITY = (
    f"SELECT priority, count(*), min({WAITS_SINCE_SQL.format(now='?', greatest='max')})"
    f" FROM jobs INDEXED BY jobs_active WHERE {ACTIVE_SQL} AND status = 'pending' GROUP BY priority"
)
_COUNTS = (
    f"SELECT status, count(*) FROM jobs INDEXED BY jobs_active WHERE {ACTIVE_SQL} GROUP BY status"
    f" UNION ALL SELECT status, count(*) FROM jobs INDEXED BY jobs_final WHERE {FINAL_SQL} GROUP BY status"
)
_COUNTS_OF = "SELECT status, count(*) FROM jobs INDEXED BY jobs_principal WHERE principal = ? GROUP BY status"
_ACTIVE_COUNTS = f"SELECT status, count(*) FROM jobs INDEXED BY jobs_active WHERE {ACTIVE_SQL} GROUP BY status"
_ACTIVE_COUNTS_OF = (
    f"SELECT status, count(*) FROM jobs INDEXED BY jobs_active_by WHERE principal = ? AND {ACTIVE_SQL} GROUP BY status"
)
_NEEDED = (  # the dependencies of pending jobs: kept past the retention (store/base.py: delete_finished)
    "SELECT d.value FROM jobs AS p, json_each(p.task, '$.dependencies') AS d"
    f" WHERE p.{ACTIVE_SQL} AND p.status = 'pending' AND p.task IS NOT NULL"
)
_DELETE_FINISHED = (
    "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs INDEXED BY jobs_expiry WHERE "
    f"{FINAL_SQL} AND coalesce(finished_at, updated_at) < ? AND id NOT IN ({_NEEDED}) LIMIT ?) RETURNING id"
)
_HEARTBEAT = (
    "INSERT INTO leases (owner, expires_at, host, pid, started) VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE"
    " SET expires_at = max(expires_at, excluded.expires_at), host = excluded.host, pid = excluded.pid,"
    " started = excluded.started"
)
_LIVE_HERE = "SELECT owner, pid, started FROM leases WHERE host = ? AND expires_at > ?"
_DROP_ENDED = "DELETE FROM leases WHERE owner = ? AND host = ? AND pid = ? AND started IS ?"
_RELEASE = "DELETE FROM leases WHERE owner = ?"
_DROP_EXPIRED = "DELETE FROM leases WHERE expires_at < ?"
# an orphan: active, its owner holding no live lease at ? (now)
_ORPHAN = f"{ACTIVE_SQL} AND (owner IS NULL OR owner NOT IN (SELECT owner FROM leases WHERE expires_at > ?))"
_ORPHANS = f"{sql.SELECT} INDEXED BY jobs_active WHERE {_ORPHAN} ORDER BY created_at, id"
# The tool names come as one JSON array (`json_each`): one parameter however many tools a process has.
_TOOLS = "(SELECT value FROM json_each(?))"
_ORPHANS_OF = (
    f"{sql.SELECT} INDEXED BY jobs_active WHERE {_ORPHAN} AND (tool_name IN {_TOOLS} OR {CANCELLED_WITHOUT_RUN_SQL})"
    " ORDER BY created_at, id"
)
_ORPHANS_LEFT = (
    f"SELECT tool_name, count(*) FROM jobs INDEXED BY jobs_active WHERE {_ORPHAN} AND tool_name NOT IN {_TOOLS}"
    f" AND NOT ({CANCELLED_WITHOUT_RUN_SQL}) AND (owner IS NULL OR owner != ?) GROUP BY tool_name"
)
# `orphans_left`'s of one program (its owner ids start `program@`: `?` its length, `?` itself)
_ORPHANS_OF_PROGRAM = (
    f"{sql.SELECT} INDEXED BY jobs_active WHERE {_ORPHAN} AND tool_name NOT IN {_TOOLS}"
    f" AND NOT ({CANCELLED_WITHOUT_RUN_SQL}) AND owner != ? AND substr(owner, 1, ?) = ? ORDER BY created_at, id"
)
# `adopt_pending`: [[id, version], ...] as one JSON parameter, each row a compare-and-set on its version (a lookup
# by id for each pair); and, after a lost answer, those the statement had adopted (at the next version, ours)
_PAIRS = "(SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS v FROM json_each(?)) AS w"
_ADOPT = (
    f"UPDATE jobs SET owner = ?, updated_at = ?, version = version + 1 FROM {_PAIRS}"
    " WHERE jobs.id = w.id AND jobs.version = w.v RETURNING jobs.id"
)
_ADOPTED = (
    f"SELECT jobs.id FROM {_PAIRS}, jobs WHERE jobs.id = w.id AND jobs.version = w.v + 1 AND owner = ?"
    " AND updated_at = ?"
)

_GET = f"{sql.SELECT} WHERE id = ?"
_LOAD_DURATIONS = "SELECT key, runs, ewma_ms, recent FROM durations"
_SAVE_DURATION = (
    "INSERT INTO durations (key, runs, ewma_ms, recent, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key)"
    " DO UPDATE SET runs = excluded.runs, ewma_ms = excluded.ewma_ms, recent = excluded.recent,"
    " updated_at = excluded.updated_at"
)
_S_COLS = ", ".join(schedulerows.COLUMNS)
# tick keys no firing can come back to: the schedule is past them, ended or gone
_PASSED = (
    " WHERE fired_at < ? AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.schedule_id = schedule_ticks.schedule_id"
    " AND s.next_fire_at IS NOT NULL AND schedule_ticks.tick >= s.next_fire_at)"
)
_S_SELECT = f"SELECT {_S_COLS} FROM schedules"
# A firing: the job row, unless its (schedule, tick) fired already; the view's trigger writes the key
# (schema step 11). Which job a tick fired is read back from its key: a view's insert counts no rows.
_FIRE = (
    f"INSERT INTO fired_jobs ({', '.join(codec.COLUMNS)}) SELECT {', '.join('?' * len(codec.COLUMNS))}"
    " WHERE NOT EXISTS (SELECT 1 FROM schedule_ticks WHERE schedule_id = ? AND tick = ?)"
    " AND EXISTS (SELECT 1 FROM schedules WHERE schedule_id = ? AND version = ? AND paused = 0)"
)
_FIRED_BY = "SELECT job_id FROM schedule_ticks WHERE schedule_id = ? AND tick = ?"
_TOUCH = "UPDATE jobs SET access_count = ?, last_access_time = ?, next_check_time = ? WHERE id = ?"

# The statements as the server knows them (an id each, the text sent once per connection).
_S = {
    name: statement(sql, writes)
    for name, sql, writes in (
        ("insert", sql.INSERT, True), ("get", _GET, False), ("touch", _TOUCH, True),
        ("find_active", _FIND_ACTIVE, False), ("active", _ACTIVE, False), ("active_of", _ACTIVE_OF, False),
        ("active_by", _ACTIVE_BY, False),
        ("counts", _COUNTS, False), ("counts_of", _COUNTS_OF, False),
        ("active_counts", _ACTIVE_COUNTS, False), ("active_counts_of", _ACTIVE_COUNTS_OF, False),
        ("pending_by_priority", _PENDING_BY_PRIORITY, False), ("delete_finished", _DELETE_FINISHED, True),
        ("heartbeat", _HEARTBEAT, True), ("release", _RELEASE, True), ("drop_expired", _DROP_EXPIRED, True),
        ("live_here", _LIVE_HERE, False), ("drop_ended", _DROP_ENDED, True),
        ("orphans", _ORPHANS, False), ("orphans_of", _ORPHANS_OF, False), ("orphans_left", _ORPHANS_LEFT, False),
        ("orphans_of_program", _ORPHANS_OF_PROGRAM, False),
        ("adopt", _ADOPT, True), ("adopted", _ADOPTED, False),
        ("vacuum", "PRAGMA incremental_vacuum", False),
        ("load_durations", _LOAD_DURATIONS, False), ("save_duration", _SAVE_DURATION, True),
        ("insert_schedule", f"INSERT INTO schedules ({_S_COLS}) VALUES ({', '.join('?' * len(schedulerows.COLUMNS))})",
         True),
        ("get_schedule", f"{_S_SELECT} WHERE schedule_id = ?", False),
        ("count_schedules", "SELECT count(*) FROM schedules", False),
        ("count_schedules_of", "SELECT count(*) FROM schedules WHERE principal = ?", False),
        ("due_schedules", f"{_S_SELECT} WHERE paused = 0 AND next_fire_at <= ? AND {schedulerows.NOT_HELD_SQL}"
         " ORDER BY next_fire_at, schedule_id", False),
        ("next_fire_after", "SELECT min(next_fire_at) FROM schedules WHERE paused = 0 AND next_fire_at > ?", False),
        ("delete_schedule", "DELETE FROM schedules WHERE schedule_id = ?", True),
        ("delete_ticks", "DELETE FROM schedule_ticks WHERE schedule_id = ?", True),
        ("fire", _FIRE, True), ("fired_by", _FIRED_BY, False),
        ("prune_ticks", f"DELETE FROM schedule_ticks{_PASSED}", True),
    )
}  # fmt: skip


def _names(tools: Collection[str]) -> str:
    """Tool names as the JSON array `_TOOLS` reads."""
    return json.dumps(list(tools))


URL_OPTIONS = ("synchronous", "busy_timeout", "answer_timeout")
UNSAFE_LOOKS, UNSAFE_LOOK_SECONDS = 3, 0.05  # `dbfile.unsafe_to_open` must hold this long to refuse
MAX_BUSY_TIMEOUT = 3600.0  # seconds
MAX_ANSWER_TIMEOUT = 86_400.0  # seconds


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """`sqlite:///<path>?opt=value` -> (path, options), or ConfigError naming an option it does not know.
    A path starting with `~` is the user's home (`sqlite:///~/jobs.db`), as a shell would read it: a config
    file (Claude Desktop's) passes it unexpanded, and a directory named `~` in the working directory was made."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"a SQLite store URL looks like sqlite:///path/to/jobs.db, not {url!r}")
    parts = urlsplit(url)
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if not path:
        raise ConfigError(f"the SQLite store URL {url!r} names no file")
    if path.startswith("~"):
        path = os.path.expanduser(path)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))  # the last of a repeated option
    unknown = sorted(set(options) - set(URL_OPTIONS))
    if unknown:
        names = ", ".join(repr(name[:64]) for name in unknown[:5])
        hint = "" if "=" in parts.query else " (a '?' starts the URL's options: it cannot be part of the file's name)"
        raise ConfigError(f"the SQLite store URL has no option {names}; its options: {', '.join(URL_OPTIONS)}{hint}")
    return path, {name: value for name, value in options.items() if value}  # `?synchronous=`: the default


def seconds_of(name: str, raw: str, least: float, most: float) -> float:
    """`?name=` in seconds, or ConfigError: a number from `least` to `most`."""
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not least <= seconds <= most:  # NaN fails both
        raise ConfigError(f"{name} must be seconds from {least:g} to {most:g}, not {raw[:64]!r}")
    return seconds


class SQLiteStore:
    """A `JobStore` in one SQLite file. A record it returns (or remembers) is never changed: an update
    makes a new one (`store.base`)."""

    waits: ClassVar[bool] = True  # store/base.py: JobStore.waits

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float | None = None,
        synchronous: str | None = None,
        answer_timeout: float | None = None,
        existing: bool = False,
    ) -> None:
        self.url, self.existing = url, existing  # existing: open only a store a server made (`open_store`)
        self.path, options = parse_url(url)
        self.synchronous = (synchronous or options.get("synchronous", "normal")).upper()
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"synchronous must be normal, full or extra, not {self.synchronous[:64]!r}")
        given = options.get("busy_timeout", "5")
        self.busy_timeout = (
            busy_timeout if busy_timeout is not None else seconds_of("busy_timeout", given, 0, MAX_BUSY_TIMEOUT)
        )
        # a server process silent this long while ops wait is hung, and is replaced (`Link`): by default long
        # enough for a write that waits out the busy timeout on another process's lock, twice
        if answer_timeout is None and "answer_timeout" in options:
            answer_timeout = seconds_of("answer_timeout", options["answer_timeout"], 1, MAX_ANSWER_TIMEOUT)
        default_timeout = max(ANSWER_SECONDS, 2 * self.busy_timeout + 10)
        self.answer_timeout = answer_timeout if answer_timeout is not None else default_timeout
        self._link: Link | None = None
        # the last record read or written of each recent job, oldest first (see the module docstring)
        self._known = RecentRecords(KNOWN_RECORDS)
        self._landed: Recent[bool] = Recent(LANDINGS_KEPT)  # "job@version" an update whose answer was lost made
        self._lifecycle = anyio.Lock()  # open, and restart after the server process died
        self._closed = False
        self._file: dbfile.Opened | None = None  # the files opened (a restart must not start on other ones)
        self._checking: float | None = None  # since when a `problem` check runs (a hung file system keeps it)
        # callers who ask while a check runs share the next one: they took the running one for a hung file system
        self._problem = SharedCall(self._check_problem)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._refuse_if_not_made()
        async with self._lifecycle:
            self._closed = False
            await self._start_server()
            self._file = None if self.path == ":memory:" else dbfile.opened(self.path)

    def _refuse_if_not_made(self) -> None:
        """With `existing`: refuse a file that is not there, or a database no server made (another program's: its
        tables would have been joined by ours)."""
        if not self.existing or self.path == ":memory:":
            return
        if not os.path.exists(self.path):
            raise ConfigError(
                f"no SQLite database at {self.path}: no job store at that path; check --store, or start `vibe-jobs "
                "serve` on it first (a server creates its store when it first starts)"
            )
        if dbfile.holds_no_store(self.path):
            raise ConfigError(
                f"the SQLite database at {self.path} holds no job store (no vibe-jobs server made it): check --store, "
                "or start `vibe-jobs serve` on it first"
            )

    async def _start_server(self) -> None:
        """Start a server process unless a live one runs (under `_lifecycle`); a dead one is reaped after."""
        old = self._link
        if old is not None and old.lost is None:
            return
        self._make_parent()
        await self._check_file_to_open(restart=old is not None)
        step, live = await anyio.to_thread.run_sync(older_servers, self.path, SCHEMA_VERSION)
        if live:
            raise StoreError(older_servers_message(self.path, step, live))
        config = Config(
            path=self.path,
            pragmas=pragmas(self.synchronous, int(self.busy_timeout * 1000)),
            migrations=MIGRATIONS,
            max_ops=MAX_OPS,
        )
        link = Link(config, self._failure, name=self.path, answer_timeout=self.answer_timeout)
        await link.start()
        if self._closed:  # closed while it started
            await link.stop()
            raise StoreError(f"the job store at {self.path} was closed")
        self._link = link
        self._known.clear()
        if old is not None:
            await old.stop()

    async def _check_file_to_open(self, restart: bool) -> None:
        """Refuse to open a database another process would corrupt with us (its `-shm` deleted under it), and
        to restart on a file other than the one the store opened: a server process started again on a deleted
        database made a new empty one and went on as if nothing was lost."""
        if self.path == ":memory:":
            return
        for look in range(UNSAFE_LOOKS):
            if (unsafe := dbfile.unsafe_to_open(self.path)) is None:
                break
            if look + 1 < UNSAFE_LOOKS:  # another connection opening or closing passes through it for an instant
                await anyio.sleep(UNSAFE_LOOK_SECONDS)
        else:
            raise StoreUnavailable(unsafe)
        if restart and (gone := dbfile.moved(self.path, self._file)) is not None:
            raise StoreCorrupt(f"{gone}; the store's process ended, and is not started on another file")

    async def close(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await link.stop()

    def _make_parent(self) -> None:
        if self.path == ":memory:":
            return
        path = Path(self.path)
        if path.is_dir():  # SQLite says only "unable to open database file"
            raise open_error(self.path, f"it is a directory; name a file in it (sqlite:///{path / 'jobs.db'})")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the store's own dir: owner only
        except OSError as exc:
            blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
            raise open_error(self.path, exc if blocker is None else f"{blocker} is a file, not a directory") from None

    async def problem(self) -> str | None:
        if self.path == ":memory:":
            return None
        return await self._problem()

    async def _check_problem(self) -> str | None:
        hung = f"the database file {self.path} did not answer within {PROBLEM_SECONDS:g} s"
        now = anyio.current_time()
        if self._checking is not None and now - self._checking < PROBLEM_RETRY_SECONDS:
            return hung  # the last check still waits on the file system: one thread, not one per probe
        self._checking = now
        with anyio.move_on_after(PROBLEM_SECONDS):  # a file system that hangs (NFS) hangs the thread, not us
            return await anyio.to_thread.run_sync(self._check_file, abandon_on_cancel=True)
        return hung

    def _check_file(self) -> str | None:
        try:
            return dbfile.problem(self.path, self._file)
        finally:
            self._checking = None

    def _failure(self, failure: Failure) -> Exception:
        return failure_error(failure, self.path)

    def _run(self, st: Statement, args: Any, mode: int) -> Awaitable[Any]:
        """Queue `st` with `args` to the server; the result comes after its transaction commits."""
        link = self._link
        if link is None:
            raise StoreError(f"the job store at {self.path} is not open (use `await store.open()` first)")
        if link.lost is not None:
            return self._restart_then(st, args, mode)
        return link.submit(st, args, mode)

    async def _restart_then(self, st: Statement, args: Any, mode: int) -> Any:
        """The server process died (killed, out of memory): the ops it had were failed; start a new one."""
        async with self._lifecycle:
            link = self._link
            if link is not None and link.lost is not None and not self._closed:
                log.warning("sqlite.server_restarted", path=self.path, why=link.lost)
                await self._start_server()
        return await self._run(st, args, mode)

    def _decoded(self, rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        return [self._known.remember(codec.decode(row)) for row in rows]

    # -- jobs ------------------------------------------------------------------------------

    async def insert(self, job: JobRecord) -> bool:
        row = codec.encode(job)
        try:
            stored: bool = await self._run(_S["insert"], row, ROWCOUNT) == 1  # 0: an active job holds its dedupe key
        except DuplicateJob:
            raise DuplicateJob(f"a job with id '{job.id}' exists already", job_id=job.id) from None
        except AnswerLost:
            found = await self._run(_S["get"], (job.id,), ONE)
            if found is None:  # not committed: the caller is told, and nothing is stored
                raise
            stored = True  # committed: job ids are random, so the row is this insert's
        if stored:
            self._known.remember(job)
        return stored

    async def get(self, job_id: str) -> JobRecord | None:
        try:
            row = await self._run(_S["get"], (job_id,), ONE)
        except AnswerLost:  # a read is safe to repeat, and the server is started again for it
            row = await self._run(_S["get"], (job_id,), ONE)
        return None if row is None else self._known.remember(codec.decode(row))

    async def get_many(
        self, job_ids: Collection[str], principal: str | None = None, *, whole: bool = True
    ) -> dict[str, JobRecord]:
        if not job_ids:
            return {}
        st = statement(sql.get_many_sql(principal is not None, codec.view_columns(whole, whole)), False)
        args = (json.dumps(list(job_ids)), *([] if principal is None else [principal]))
        try:
            rows = await self._run(st, args, ALL)
        except AnswerLost:  # a read is safe to repeat, and the server is started again for it
            rows = await self._run(st, args, ALL)
        found = self._decoded(rows) if whole else [codec.decode(row) for row in rows]  # views: not kept
        return {rec.id: rec for rec in found}

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        check_updatable(job_id, changes)
        guard = guard or NO_GUARD
        change = Change(job_id, changes)
        base = self._known.get(job_id)
        if base is not None and (guard.version is None or base.version != guard.version):
            base = None  # only a record at the version the update is guarded by is its base
        # the row is at the version of the base we hold: on success, the new record is that one changed
        st, args = change.statement(guard, returning=base is None)
        try:
            answer = await self._run(st, args, ONE if base is None else ROWCOUNT)
        except AnswerLost as lost:
            return await self._update_landed(change, guard, lost)
        return self._updated(change, base, answer)

    def _updated(self, change: Change, base: JobRecord | None, answer: Any) -> JobRecord | None:
        """The record an update made (`answer`: its row count on `base`, else the row it returned), or None
        when its guard failed (another process moved the job on)."""
        if base is not None and answer == 1:
            return self._known.remember(change.apply(base))
        if base is None and answer is not None:
            return self._known.remember(codec.decode(answer))
        self._known.pop(change.job_id, None)
        return None

    async def _update_landed(self, change: Change, guard: Guard, lost: AnswerLost) -> JobRecord | None:
        """What an update whose answer was `lost` did, read after the server's restart: the job as it made it, or
        None when another write came first (its guard failed). Not committed, or without a version to pin (the
        manager's writes all have one), or with the job moved on since: `lost`, as for any write that failed."""
        if guard.version is None:
            raise lost
        self._known.pop(change.job_id, None)
        row = await self._run(_S["get"], (change.job_id,), ONE)
        if row is None:
            return None  # deleted: the guard fails
        version = row[_VERSION_AT]
        if version != guard.version + 1:
            raise lost
        # the values as stored, compared with those sent (decoded ones may differ: made JSON-safe on reading)
        mine = all(row[_COLUMN_AT[key]] == value for key, value in zip(change.keys, change.values, strict=True))
        landing = f"{change.job_id}@{version}"
        if not mine or landing in self._landed:  # another write came first, or another of ours claimed it
            return None
        self._landed.put(landing, True)  # two writes alike lost at once: exactly one of them matched
        return self._known.remember(codec.decode(row))

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        # A touch keeps the version: the next update reads the row back instead of building on a record
        # whose access figures are behind.
        self._known.pop(job_id, None)
        await self._run(_S["touch"], (access_count, last_access_time, next_check_time, job_id), NONE)

    async def query(self, query: JobQuery) -> list[JobRecord]:
        by_principal = query.principal is not None
        whole = query.with_result and query.with_params
        text = sql.query_sql(
            query.status, query.tool_name is not None, query.before is not None, by_principal, codec.columns_of(query)
        )
        rows = await self._run(statement(text, False), codec.query_args(query), ALL)
        return self._decoded(rows) if whole else [codec.decode(row) for row in rows]  # views: not kept

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        found = self._decoded(await self._run(_S["find_active"], (dedupe_key,), ALL))
        return found[0] if found else None

    async def active(self, owner: str | None = None, *, principal: str | None = None) -> list[JobRecord]:
        check_active_filter(owner, principal)
        if owner is not None:
            return self._decoded(await self._run(_S["active_of"], (owner,), ALL))
        if principal is not None:
            return self._decoded(await self._run(_S["active_by"], (principal,), ALL))
        return self._decoded(await self._run(_S["active"], (), ALL))

    async def counts(self, principal: str | None = None, *, active: bool = False) -> dict[JobStatus, int]:
        prefix = "active_counts" if active else "counts"
        if principal is None:
            found = dict(await self._run(_S[prefix], (), ALL))
        else:
            found = dict(await self._run(_S[f"{prefix}_of"], (principal,), ALL))
        return {status: found.get(status.value, 0) for status in JobStatus}

    async def pending_by_priority(self, now: int) -> list[tuple[int, int, int | None]]:
        """(priority rank, pending jobs, waiting since) for every rank with pending jobs, of every process on
        the file (`store.base.QueueReading`)."""
        rows = await self._run(_S["pending_by_priority"], (now,), ALL)
        return [(row[0], row[1], row[2]) for row in rows]

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        ids: list[str] = await self._run(_S["delete_finished"], (before, limit), COLUMN)
        for job_id in ids:
            self._known.pop(job_id, None)
        if len(ids) >= VACUUM_AFTER:
            await self._run(_S["vacuum"], (), VACUUM)  # after the commit, outside any transaction
        return ids

    # -- leases ----------------------------------------------------------------------------

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        """The lease records the calling process too (see store.liveness)."""
        me = this_process()
        await self._run(_S["heartbeat"], (owner, expires_at, me.host, me.pid, me.started), NONE)

    async def release(self, owner: str) -> None:
        await self._run(_S["release"], (owner,), NONE)

    async def orphans(self, now: int, tools: Collection[str] | None = None) -> list[JobRecord]:
        """A lease is live until it expires or, on this machine, until its process has ended (its lease
        is deleted then, so a restart recovers a killed server's jobs at once).

        Also deletes leases long expired (see EXPIRED_LEASE_KEPT_MS): the table does not grow by one
        row for every process that ever ran. (`orphans_left` deletes none: it runs after this.)"""
        await self._drop_ended(now)
        dropped = self._run(_S["drop_expired"], (now - EXPIRED_LEASE_KEPT_MS,), NONE)
        if tools is None:
            found = self._run(_S["orphans"], (now,), ALL)
        else:
            found = self._run(_S["orphans_of"], (now, _names(tools)), ALL)
        await dropped
        return self._decoded(await found)

    async def orphans_left(self, now: int, tools: Collection[str], owner: str) -> dict[str, int]:
        return dict(await self._run(_S["orphans_left"], (now, _names(tools), owner), ALL))

    async def orphans_of_program(self, now: int, tools: Collection[str], owner: str, program: str) -> list[JobRecord]:
        prefix = owner_prefix(program)
        args = (now, _names(tools), owner, len(prefix), prefix)
        return self._decoded(await self._run(_S["orphans_of_program"], args, ALL))

    async def adopt_pending(self, jobs: Sequence[JobRecord], owner: str, now: int) -> list[JobRecord]:
        """One statement per ADOPT_CHUNK jobs. An answer lost with the server process is settled by reading back
        which of them are ours at the next version, and adopting the others again (each still a compare-and-set)."""
        check_adoptable(jobs)
        won: set[str] = set()
        for i in range(0, len(jobs), ADOPT_CHUNK):
            chunk = jobs[i : i + ADOPT_CHUNK]
            pairs = json.dumps([[rec.id, rec.version] for rec in chunk])
            try:
                won.update(await self._run(_S["adopt"], (owner, now, pairs), COLUMN))
            except AnswerLost:
                landed = set(await self._run(_S["adopted"], (pairs, owner, now), COLUMN))
                rest = json.dumps([[rec.id, rec.version] for rec in chunk if rec.id not in landed])
                won.update(landed, await self._run(_S["adopt"], (owner, now, rest), COLUMN))
        adopted = adopted_records(jobs, won, owner, now)
        for rec in adopted:
            self._known.remember(rec)  # the base of the job's next update (its start), as `update` keeps it
        return adopted

    async def _drop_ended(self, now: int) -> None:
        """Delete the unexpired leases of processes on this machine that have ended."""
        host = this_process().host
        for owner, pid, started in await self._run(_S["live_here"], (host, now), ALL):
            if has_ended(ProcessId(host, pid, started)):
                log.info("sqlite.owner_ended", owner=owner, pid=pid)
                await self._run(_S["drop_ended"], (owner, host, pid, started), NONE)

    async def load_durations(self) -> dict[str, DurationRow]:
        rows = await self._run(_S["load_durations"], (), ALL)
        return {key: (runs, ewma, recent) for key, runs, ewma, recent in rows}

    async def save_durations(self, rows: Mapping[str, DurationRow], now: int) -> None:
        for done in [self._run(_S["save_duration"], (key, *row, now), NONE) for key, row in rows.items()]:
            await done

    # -- schedules -------------------------------------------------------------------------

    async def insert_schedule(self, rec: ScheduleRecord) -> None:
        try:
            await self._run(_S["insert_schedule"], schedulerows.encode(rec), NONE)
        except DuplicateJob:
            raise DuplicateJob(f"a schedule with id '{rec.schedule_id}' exists already") from None

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        row = await self._run(_S["get_schedule"], (schedule_id,), ONE)
        return None if row is None else schedulerows.decode(row)

    async def list_schedules(
        self, principal: str | None = None, *, limit: int | None = None, arguments: bool = True
    ) -> list[ScheduleRecord]:
        mine = principal is not None
        st = statement(schedulerows.list_sql(arguments, " WHERE principal = ?" if mine else "", "?"), False)
        args = ([principal] if mine else []) + [-1 if limit is None else limit]  # LIMIT -1: all of them
        return [schedulerows.decode(row) for row in await self._run(st, args, ALL)]

    async def count_schedules(self, principal: str | None) -> int:
        if principal is None:
            row = await self._run(_S["count_schedules"], (), ONE)
        else:
            row = await self._run(_S["count_schedules_of"], (principal,), ONE)
        return int(row[0])

    async def due_schedules(self, now: int) -> list[ScheduleRecord]:
        return [schedulerows.decode(row) for row in await self._run(_S["due_schedules"], (now,), ALL)]

    async def next_fire_after(self, now: int) -> int | None:
        row = await self._run(_S["next_fire_after"], (now,), ONE)
        return None if row is None or row[0] is None else int(row[0])

    async def update_schedule(
        self, schedule_id: str, changes: Mapping[str, Any], version: int
    ) -> ScheduleRecord | None:
        schedulerows.check_changes(changes)
        sets = "".join(f"{k} = ?, " for k in changes)
        text = (
            f"UPDATE schedules SET {sets}version = version + 1 WHERE schedule_id = ? AND version = ?"
            f" RETURNING {_S_COLS}"
        )
        args = [*schedulerows.change_values(changes), schedule_id, version]
        row = await self._run(statement(text, True), args, ONE)
        return None if row is None else schedulerows.decode(row)

    async def delete_schedule(self, schedule_id: str) -> bool:
        # the schedule before its keys, as on PostgreSQL: a firing between them finds it gone, not a fired tick's
        # key gone (the two statements usually share a transaction; another process's may come between them)
        deleted = self._run(_S["delete_schedule"], (schedule_id,), ROWCOUNT)
        ticks = self._run(_S["delete_ticks"], (schedule_id,), NONE)
        found = bool(await deleted)
        await ticks
        return found

    async def fire(self, job: JobRecord, version: int) -> bool:
        """One statement: the job, unless the tick fired already or the schedule moved from `version`; with it
        the tick's key (so a second firing of the tick, from this or another process, inserts nothing). True
        when this job is the tick's."""
        key = (job.schedule_id, job.tick)
        insert = self._run(_S["fire"], [*codec.encode(job), *key, job.schedule_id, version], NONE)
        fired_by = self._run(_S["fired_by"], key, ONE)  # queued right behind it: it reads what the insert did
        lost = False
        try:
            await insert
        except AnswerLost:
            lost = True  # the server died: whether the job is the tick's is read after its restart
        finally:
            try:
                row = await fired_by
            except StoreUnavailable as exc:
                if isinstance(exc, AnswerLost):
                    lost = True  # the insert may be answered and this not (sent apart): read after the restart
                elif not lost:
                    raise
        if lost:
            row = await self._run(_S["fired_by"], key, ONE)
        inserted = row is not None and row[0] == job.id
        if inserted:
            self._known.remember(job)
        return inserted

    async def fired_job(self, schedule_id: str, tick: int) -> str | None:
        row = await self._run(_S["fired_by"], (schedule_id, tick), ONE)
        return None if row is None else str(row[0])

    async def prune_ticks(self, before: int) -> int:
        return int(await self._run(_S["prune_ticks"], (before,), ROWCOUNT))

    # -- quotas ----------------------------------------------------------------------------

    def principal_lock(self, principal: str) -> AbstractAsyncContextManager[bool]:
        """`PrincipalLocking`: held by one holder at a time across every process that shares the file, a lock file
        beside it (`sqlite.principals`). A database in memory is one process's: nothing to take (held False)."""
        if self.path == ":memory:":
            return contextlib.nullcontext(False)
        return principals.principal_held(self.path, principal)

    async def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the store's own connection and return its rows: a back door for tests."""
        rows: list[tuple[Any, ...]] = await self._run(statement(sql, False), args, ALL)
        return rows
