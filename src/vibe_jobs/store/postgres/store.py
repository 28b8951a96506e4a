"""The PostgreSQL store: many servers and workers share one database (`pip install 'vibe-jobs[postgres]'`).

URL: `postgresql://user:password@host:port/database`, with options as a query string:
`?schema=NAME` (the schema holding the tables; created and migrated on open; default `public`),
`?pool_min=1&pool_max=10` (connection pool size), `?application_name=NAME` (how the sessions show in
`pg_stat_activity`; default `vibe-jobs`). Other parameters go to asyncpg (`sslmode=...`).

Beyond the `JobStore` protocol (a pool of connections; every change a compare-and-set
`UPDATE ... WHERE id = $n AND <guards> RETURNING ...` that bumps `version`), the store is the
coordination point of a cluster:
- `claim_many(owner, lease_ms, limits, tools, k)`: take up to k runnable jobs in one statement (see
  postgres.sql);
- `renew_state(owner, job_ids, expires_at)`: heartbeat the process and the leases of its running jobs,
  answering which it still holds and their cancel requests;
- `listen(callback)`: wake-ups over LISTEN/NOTIFY on job creation, status change and cancel request
  (the insert trigger announces new jobs; the store announces the changes it made, after they committed);
- `sweeper_lock()`: a session advisory lock, so one process at a time fails the pending jobs a dependency blocks;
- `dependency_blocked()`: pending jobs a failed, cancelled or deleted dependency keeps from ever running;
- `release_ready()`: the sweeper's backstop for jobs left `blocked` although their dependencies completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg

from vibe_jobs.errors import ConfigError, DuplicateJob, StoreError, StoreLocked, StoreUnavailable
from vibe_jobs.figures import ClusterFigures, GroupStats
from vibe_jobs.logs import get_logger
from vibe_jobs.models import JobRecord
from vibe_jobs.owners import owner_prefix
from vibe_jobs.redact import PASSWORD_UNESCAPED, password_misread, redact_url
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store import codec, schedulerows
from vibe_jobs.store.base import (
    ADOPT_CHUNK,
    PRINCIPAL_LOCK_WAIT_MS,
    ClaimLimits,
    DurationRow,
    Guard,
    JobChange,
    JobQuery,
    SharedJobStore,
    adopted_records,
    check_active_filter,
    check_adoptable,
    check_updatable,
    principal_lock_refused,
)
from vibe_jobs.store.postgres import sql
from vibe_jobs.store.postgres.errors import CONNECTION_LOST, DB_ERRORS, connection_lost, store_error
from vibe_jobs.store.postgres.notify import Listener
from vibe_jobs.store.postgres.schema import NOW_MS, channel, check_schema_name, drop_schema, lock_key, made, migrate

__all__ = ["ClaimLimits", "JobChange", "Listener", "PostgresStore", "parse_url"]

log = get_logger("vibe_jobs.store.postgres")

_OPTIONS = ("schema", "pool_min", "pool_max", "application_name")
_RECONNECT_DELAYS = (0.0, 0.05, 0.2, 0.5, 1.0)
# The longest a lock's holder may leave the lock's session idle (ms), on PostgreSQL 14+ (`idle_session_timeout`):
# past it PostgreSQL ends the session and the lock goes with it, so a holder that stalls (paused, frozen, swapped
# out) holds the others for this long, not for as long as it stalls; a holder that runs keeps its session busy
# (`_kept_busy`). Within the waiters' PRINCIPAL_LOCK_WAIT_MS, a waiter behind a stalled holder gets the lock.
PRINCIPAL_LOCK_HOLD_MS = 3_000
SWEEPER_LOCK_HOLD_MS = 30_000
# The longest a firing's transaction may wait on its own process between statements (ms): it holds the tick's key
# and a share lock on the schedule, so a process that stalls there (paused, frozen, swapped out) would hold every
# other process's firing of that tick, and every pause, change or delete of that schedule, until it resumed.
# Past this PostgreSQL ends its session (the firing rolls back; its retry finds the tick fired, or fires it).
FIRE_STALL_MS = 5_000
_PAYLOAD_BYTES = 7_000  # a NOTIFY payload holds less than 8,000 bytes


def _payloads(changes: list[dict[str, Any]]) -> list[str]:
    """JSON lists of changes, each under `_PAYLOAD_BYTES` (a change alone may be longer: sent alone)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for change in changes:
        item = json.dumps(change)
        n = len(item.encode()) + 1
        if chunk and size + n > _PAYLOAD_BYTES:
            out.append(f"[{','.join(chunk)}]")
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        out.append(f"[{','.join(chunk)}]")
    return out


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """`postgresql://...?schema=x&pool_max=4&sslmode=...` -> (asyncpg DSN without our options, our options)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a ConfigError, one line wherever the URL is given
        raise ConfigError(f"not a store URL: {redact_url(url)!r} ({exc})") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"a PostgreSQL store URL looks like postgresql://user@host/db, not {redact_url(url)!r}")
    if password_misread(url):  # its start read as a port (`app:ab/cd@`, `app:12/cd@`, `app:/cd@`): not shown
        raise ConfigError(
            f"the store URL's host is not read ({PASSWORD_UNESCAPED}; an '@' in the database name or a parameter,"
            f" %40): {redact_url(url)!r}"
        )
    _check_ports(parts.netloc, url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours: dict[str, str] = {}
    for key, value in pairs:  # refused by name: a `?schema=$SCHEMA` with the variable unset put the jobs in public
        if key in _OPTIONS and key in ours:
            raise ConfigError(f"the store URL gives ?{key}= twice: give it once")
        if key in _OPTIONS and not value.strip():
            raise ConfigError(f"the store URL's ?{key}= is empty: give a value, or leave the option out")
        if key in _OPTIONS:
            ours[key] = value
    rest = [(k, v) for k, v in pairs if k not in _OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def _check_ports(netloc: str, url: str) -> None:
    """Each host's port (`host:5432`, `[::1]:5432`, several comma separated) a number from 1 to 65535: asyncpg
    raised OverflowError for 99999 and ValueError for `abc` when it connected, a traceback of `serve`."""
    for host in netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        port = port.partition(":")[2]  # none, or empty: the default port
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(
                f"the store URL's port {port!r} is not a port number (1 to 65535; PostgreSQL's is 5432):"
                f" {redact_url(url)!r}"
            )


def redact(url: str) -> str:
    """The URL as it may be shown (vibe_jobs.redact holds the one rule)."""
    return redact_url(url)


def _int_option(options: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(options.get(name, default))
    except ValueError:
        raise ConfigError(f"{name}={options[name]!r} must be a whole number") from None
    if value < (0 if name == "pool_min" else 1):
        raise ConfigError(f"{name}={value} is too small")
    return value


_WRITE_BATCH = 500  # updates sent in one statement at most
_S_COLS = ", ".join(schedulerows.COLUMNS)
_S_SELECT = f"SELECT {_S_COLS} FROM schedules"
_S_ARGS = ", ".join(f"${i + 1}" for i in range(len(schedulerows.COLUMNS)))
_S_INSERT = f"INSERT INTO schedules ({_S_COLS}) VALUES ({_S_ARGS})"
# The statements that delete many tick keys lock them first in key order (`sql.locked_in_order`, as jobs are locked
# in id order): a schedule's deletion and a pruning of old keys wait for each other. In the order each one's plan
# met the keys, they deadlocked (one of them failed).
_OLD_TICKS = (
    "fired_at < $1 AND NOT EXISTS (SELECT 1 FROM schedules s"
    " WHERE s.schedule_id = t.schedule_id AND s.next_fire_at IS NOT NULL AND t.tick >= s.next_fire_at)"
)
_PRUNE_LOCK, _PRUNE_LOCKED = sql.locked_in_order(
    f"SELECT 1 FROM schedule_ticks t WHERE {_OLD_TICKS} ORDER BY schedule_id, tick FOR UPDATE OF t"
)
_PRUNE_TICKS = f"WITH {_PRUNE_LOCK} DELETE FROM schedule_ticks t WHERE {_OLD_TICKS} AND {_PRUNE_LOCKED}"
_DELETE_LOCK, _DELETE_LOCKED = sql.locked_in_order(
    "SELECT 1 FROM schedule_ticks WHERE schedule_id = $1 ORDER BY tick FOR UPDATE"
)
_DELETE_TICKS = f"WITH {_DELETE_LOCK} DELETE FROM schedule_ticks WHERE schedule_id = $1 AND {_DELETE_LOCKED}"
_TICK = (
    "INSERT INTO schedule_ticks (schedule_id, tick, job_id, fired_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (schedule_id, tick) DO NOTHING RETURNING job_id"
)
_TICK_JOB = "SELECT job_id FROM schedule_ticks WHERE schedule_id = $1 AND tick = $2"
# FOR SHARE: a pause, change or delete of the schedule waits for this firing's commit (it answers after the job
# exists, never before it is written)
_SCHEDULE_AT = "SELECT 1 FROM schedules WHERE schedule_id = $1 AND version = $2 AND NOT paused FOR SHARE"
_FIRING = (_SCHEDULE_AT, _TICK, _TICK_JOB, sql.INSERT)  # a firing's statements, in `fire`'s order


class _Write:
    """One `update` call waiting for (or sent in) a group-committed statement."""

    __slots__ = ("announce", "args", "done", "error", "holds_back", "job_id", "lead", "result", "shape")

    def __init__(self, job_id: str, shape: tuple[tuple[str, ...], bool, bool, bool], args: list[Any]) -> None:
        self.job_id, self.shape, self.args = job_id, shape, args
        self.announce = "status" in shape[0] or "cancel_requested" in shape[0]
        self.done = anyio.Event()
        self.lead = False  # woken to send the queue, not with an outcome
        self.result: JobRecord | None = None
        self.holds_back = False  # it completed a job that holds back dependants (`sql.decode_update`)
        self.error: StoreError | None = None

    def outcome(self) -> JobRecord | None:
        if self.error is not None:
            raise self.error
        return self.result


def _single_args(r: _Write) -> list[Any]:
    """`update_sql`'s parameters: the changes, the id, then the guards (statuses as a list)."""
    _, by_version, by_attempt, by_status = r.shape
    n_guards = by_version + by_attempt + by_status
    guards = r.args[1 : 1 + n_guards]
    if by_status:
        guards[-1] = guards[-1].split(",")
    return [*r.args[1 + n_guards :], r.job_id, *guards]


def _unholdable(*keys: str | None) -> bool:
    """Does a key looked up hold a NUL? PostgreSQL's text cannot hold one (it refuses the statement, which
    would read as the store failing): no row has such a key. (Text the store writes has none:
    `manager.diagnostic_line`; ids, tools and principals are checked where they come in.)"""
    return any(key is not None and "\x00" in key for key in keys)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: the store leaves no session state behind (no SET,
    no cursors, LISTEN only on its own connections, advisory locks released by their holder), and asyncpg
    still rolls back a transaction left open. The default reset cost a round trip on every release."""


class PostgresStore(SharedJobStore):
    """A `JobStore` in a PostgreSQL schema. Records returned are decoded afresh from each answer, so
    none is shared or changed afterwards (`store.base`)."""

    waits: ClassVar[bool] = True  # store/base.py: JobStore.waits

    def __init__(self, url: str, *, existing: bool = False) -> None:
        self.url, self.existing = url, existing  # existing: open only a store a server made (`open_store`)
        self.dsn, options = parse_url(url)
        self.schema = check_schema_name(options.get("schema") or "public")
        self.pool_min = _int_option(options, "pool_min", 1)
        self.pool_max = _int_option(options, "pool_max", max(10, self.pool_min))
        if self.pool_max < self.pool_min:
            raise ConfigError(f"the store URL's ?pool_max={self.pool_max} is below its ?pool_min={self.pool_min}")
        self.where = redact(url)
        self.channel = channel(self.schema)
        self._claim_key = lock_key(self.schema, "claim")
        # advisory locks held (or waited for) at once, the sweeper's and principals' alike: each keeps a pooled
        # connection while its holder works on another, so they take at most half the pool (`_advisory_lock`)
        self._lock_holders = anyio.Semaphore(max(1, self.pool_max // 2))
        self.application_name = options.get("application_name") or "vibe-jobs"
        self._pool: asyncpg.Pool | None = None
        self._listeners: set[Listener] = set()
        self._outbox: list[dict[str, Any]] = []  # changes not announced yet
        self._announcer: asyncio.Task[None] | None = None  # sending them
        self._notify_conn: asyncpg.Connection | None = None
        self._closing = False  # close() began: an announcer closes its session when done
        self._writes: list[_Write] = []  # updates waiting for the statement in flight
        self._writing = False

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._closing = False
        try:
            conn = await self._connect()
            try:
                if self.existing and not await made(conn, self.schema):
                    raise ConfigError(
                        f"no job store in schema {self.schema!r} at {self.where}: check --store's ?schema=, or start "
                        "`vibe-jobs serve` on it first (a server creates its store when it first starts)"
                    )
                await migrate(conn, self.schema, self.where)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min,
                max_size=self.pool_max,
                server_settings=self._settings(),
                reset=_no_reset,
            )
        except DB_ERRORS as exc:
            raise store_error(exc, f"cannot open the job store at {self.where}: {exc}") from None

    async def close(self) -> None:
        self._closing = True
        for listener in list(self._listeners):
            await listener.close()
        self._listeners.clear()
        await self._flush_announcements()
        await self._close_notify_conn()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        await self._flush_announcements()  # a write that was in flight announced its change after all

    def _settings(self) -> dict[str, str]:
        return {"search_path": f'"{self.schema}"', "application_name": self.application_name}

    async def _connect(self) -> asyncpg.Connection:
        """A dedicated connection (outside the pool) with the store's search_path."""
        return await asyncpg.connect(self.dsn, server_settings=self._settings())

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"the job store at {self.where} is not open (use `await store.open()` first)")
        return self._pool

    def _error(self, exc: BaseException) -> StoreError:
        return store_error(exc, f"the job store at {self.where} failed: {type(exc).__name__}: {exc}")

    async def clock_ms(self) -> int:
        row = await self._fetchrow(f"SELECT {NOW_MS}")
        assert row is not None
        return int(row[0])

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._retrying(lambda: self.pool.fetch(query, *args))  # type: ignore[no-any-return]

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._retrying(lambda: self.pool.fetchrow(query, *args))  # type: ignore[no-any-return]

    async def _execute(self, query: str, *args: Any) -> str:
        return await self._retrying(lambda: self.pool.execute(query, *args))  # type: ignore[no-any-return]

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one statement; when its connection was lost (the server terminated the session or
        restarted), run it again on a fresh connection (the pool reconnects), a few times with a
        short backoff. A statement on a lost connection did not commit unless the loss came between
        its commit and the answer; every write is a compare-and-set, so running it again is a no-op
        then (the caller re-reads, as after any lost race)."""
        for delay in (*_RECONNECT_DELAYS, None):
            try:
                return await call()
            except (*CONNECTION_LOST, *DB_ERRORS) as exc:
                if not connection_lost(exc):
                    raise self._error(exc) from None
                if delay is None:
                    raise StoreUnavailable(self._error(exc).message) from None
                log.info("store.reconnecting", error=f"{type(exc).__name__}: {exc}")
                await anyio.sleep(delay)
        raise AssertionError("unreachable")

    async def _records(self, query: str, *args: Any) -> list[JobRecord]:
        return [sql.decode(row) for row in await self._fetch(query, *args)]

    # -- jobs ------------------------------------------------------------------------------

    async def insert(self, job: JobRecord) -> bool:
        """Store a new job. Idempotent across a lost connection: when a retried insert finds the job (or its
        dedupe key held by it) there already, the lost try had committed, and the job stored is this one."""
        args = sql.insert_args(job)
        tries = 0

        async def run() -> str:
            nonlocal tries
            tries += 1
            return await self.pool.execute(sql.INSERT, *args)

        try:
            status: str = await self._retrying(run)
        except DuplicateJob:
            if tries > 1 and await self._stored_as(job):
                return True
            raise DuplicateJob(f"a job with id '{job.id}' exists already", job_id=job.id) from None
        if status != "INSERT 0 0":
            if job.status is JobStatus.COMPLETED:  # inserted completed (an import): it releases its dependants
                await self._release_dependants([job.id])
            return True
        # nothing inserted: an active job holds its dedupe key; after a lost try that had committed, this one
        return tries > 1 and await self._stored_as(job)

    async def _stored_as(self, job: JobRecord) -> bool:
        found = await self.get(job.id)
        return found is not None and (found.tool_name, found.created_at, found.params) == (
            job.tool_name,
            job.created_at,
            job.params,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        if _unholdable(job_id):
            return None
        row = await self._fetchrow(sql.GET, job_id)
        return None if row is None else sql.decode(row)

    async def get_many(
        self, job_ids: Collection[str], principal: str | None = None, *, whole: bool = True
    ) -> dict[str, JobRecord]:
        ids = [job_id for job_id in job_ids if not _unholdable(job_id)]
        if not ids or _unholdable(principal):
            return {}
        text = sql.get_many_sql(principal is not None, codec.view_columns(whole, whole))
        found = await self._records(text, ids, *([] if principal is None else [principal]))
        return {rec.id: rec for rec in found}

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        """The compare-and-set; concurrent calls share one statement (see `_write`)."""
        check_updatable(job_id, changes)
        g = guard or Guard()
        statuses = None if g.statuses is None else ",".join(sql.status_texts(g.statuses))
        shape = (tuple(changes), g.version is not None, g.attempt is not None, statuses is not None)
        guards = [v for v in (g.version, g.attempt, statuses) if v is not None]
        return await self._write(_Write(job_id, shape, [job_id, *guards, *sql.change_values(changes)]))

    async def _write(self, req: _Write) -> JobRecord | None:
        """Group commit: the first writer sends its update at once; writers that arrive while a statement
        is in flight queue, and when it is done the first of them sends the whole queue (up to
        `_WRITE_BATCH`) as one `UPDATE ... FROM unnest(...)` per shape of change: one round trip and one
        durable commit for many jobs, each row still its own compare-and-set. Every caller returns once
        the statement holding its change committed, and the dependants of the jobs it completed were
        released (`_release_dependants`; the next batch goes meanwhile). Listeners are told after that."""
        self._writes.append(req)
        if self._writing:
            try:
                await req.done.wait()
            except BaseException:
                if req.lead or not req.done.is_set():  # never sent: withdraw it
                    with contextlib.suppress(ValueError):
                        self._writes.remove(req)
                    if req.lead:
                        self._pass_lead()
                raise
            if not req.lead:
                return req.outcome()
        self._writing = True
        batch = self._take_batch()
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await self._send(batch)
                finally:
                    self._pass_lead()
                await self._release_dependants([r.job_id for r in batch if r.holds_back])
        finally:
            for other in batch:
                if other is not req:
                    other.done.set()
        changed = [r.result for r in batch if r.result is not None and r.announce]
        if changed:
            self._announce(changed)
        return req.outcome()

    async def _release_dependants(self, done: list[str]) -> None:
        """Make claimable the dependants that the completed jobs `done` held back (schema step 15), after the
        completions committed and before they are announced (the claimers they wake find the dependants). A
        failure leaves them to the sweeper's `release_ready`."""
        if done:
            try:
                await self._execute(sql.RELEASE_DEPENDANTS, done)
            except StoreError as exc:
                log.info("store.release_deferred", jobs=len(done), error=exc.message)

    def _take_batch(self) -> list[_Write]:
        """The queued writes to send now: in order, at most one per job, at most `_WRITE_BATCH`."""
        batch: list[_Write] = []
        rest: list[_Write] = []
        ids: set[str] = set()
        for r in self._writes:
            if len(batch) < _WRITE_BATCH and r.job_id not in ids:
                ids.add(r.job_id)
                batch.append(r)
            else:
                rest.append(r)
        self._writes = rest
        return batch

    def _pass_lead(self) -> None:
        if self._writes:
            nxt = self._writes[0]
            nxt.lead = True
            nxt.done.set()
        else:
            self._writing = False

    async def _send(self, batch: list[_Write]) -> None:
        """One statement per shape of change (one for all in the common case); sets each outcome."""
        groups: dict[tuple[Any, ...], list[_Write]] = {}
        for r in batch:
            groups.setdefault(r.shape, []).append(r)
        for shape, group in groups.items():
            if len(group) == 1:
                await self._send_one(group[0])
                continue
            columns = [list(col) for col in zip(*(r.args for r in group), strict=True)]
            try:
                rows = await self._fetch(sql.update_many_sql(*shape), *columns)
                found = {rec.id: (rec, holds) for rec, holds in map(sql.decode_update, rows)}
            except StoreUnavailable as exc:  # no statement gets through now
                for r in group:
                    r.error = exc
            except StoreError as exc:  # a value the database refused (only its own write fails), a lost deadlock
                log.info("store.batch_refused", writes=len(group), error=exc.message)
                for r in group:
                    await self._send_one(r)
            else:
                for r in group:
                    r.result, r.holds_back = found.get(r.job_id, (None, False))

    async def _send_one(self, r: _Write) -> None:
        try:
            row = await self._fetchrow(sql.update_sql(*r.shape), *_single_args(r))
            if row is not None:
                r.result, r.holds_back = sql.decode_update(row)
        except StoreError as exc:
            r.error = exc

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        await self._execute(sql.TOUCH, access_count, last_access_time, next_check_time, job_id)

    async def query(self, query: JobQuery) -> list[JobRecord]:
        if _unholdable(query.tool_name, query.principal):
            return []
        text = sql.query_sql(
            query.status is not None,
            query.tool_name is not None,
            query.before is not None,
            query.principal is not None,
            codec.columns_of(query),
        )
        return await self._records(text, *codec.query_args(query))

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        found = await self._records(sql.FIND_ACTIVE, dedupe_key)
        return found[0] if found else None

    async def active(self, owner: str | None = None, *, principal: str | None = None) -> list[JobRecord]:
        check_active_filter(owner, principal)
        if owner is not None:
            return await self._records(sql.ACTIVE_OF, owner)
        if principal is not None:
            return await self._records(sql.ACTIVE_BY, principal)
        return await self._records(sql.ACTIVE)

    async def held(self, owner: str) -> list[JobRecord]:
        return await self._records(sql.HELD, owner)

    async def counts(self, principal: str | None = None, *, active: bool = False) -> dict[JobStatus, int]:
        if principal is None:
            rows = await self._fetch(sql.ACTIVE_COUNTS if active else sql.COUNTS)
        else:
            rows = await self._fetch(sql.ACTIVE_COUNTS_OF if active else sql.COUNTS_OF, principal)
        found = {row[0]: row[1] for row in rows}
        return {status: found.get(status.value, 0) for status in JobStatus}

    async def head_fits(
        self, tools: Collection[str], limits: ClaimLimits, *, now: int | None = None
    ) -> tuple[str, bool] | None:
        """The job a claim of `tools` would take first (resources aside: its id) and whether it fits the resource
        limits beside the running jobs now; None when no job is runnable."""
        caps = (limits.max_memory_mb, limits.max_cpu_weight, limits.max_disk_space_mb)
        names = list(tools)
        args = [names, now, list(limits.priority_weights), limits.aging_ms, *caps]
        rows = await self._fetch(sql.head_fits_sql(len(names)), *args)
        return (str(rows[0][0]), bool(rows[0][1])) if rows else None

    async def offer_tools(self, owner: str, tools: Collection[str]) -> None:
        """Record on `owner`'s lease the tools it runs (health reports pending jobs nobody runs)."""
        await self._execute(sql.OFFER_TOOLS, owner, sorted(tools))

    async def unserved_tools(self, now: int) -> dict[str, int]:
        """{tool: pending jobs} for tools that no process with a live lease runs."""
        return {row[0]: row[1] for row in await self._fetch(sql.UNSERVED, now)}

    async def finished_figures(self, now: int) -> ClusterFigures:
        """Statistics over every process's finished jobs (what one process saw is not the cluster)."""
        groups: dict[bool, dict[str, GroupStats]] = {False: {}, True: {}}
        for by_op, name, done, failed, cancelled, p50, p95, avg in await self._fetch(sql.FINISHED_BY_GROUP):
            if name is None:
                continue  # jobs without an operation type
            decided = done + failed
            groups[by_op][name] = GroupStats(
                completed=done,
                failed=failed,
                cancelled=cancelled,
                success_rate=done / decided if decided else None,
                p50_duration_ms=p50,
                p95_duration_ms=p95,
                average_duration_ms=float(avg) if avg is not None else None,
            )
        recent = await self._fetch(sql.FINISHED_RECENTLY, now)
        done_1m, failed_1m, done_5m, failed_5m = recent[0]
        return ClusterFigures(groups[False], groups[True], done_1m + failed_1m, done_5m, failed_5m)

    async def pending_by_priority(self, now: int) -> list[tuple[int, int, int | None]]:
        """(priority rank, pending jobs, waiting since) for every rank with pending jobs: the shared queue."""
        return [(row[0], row[1], row[2]) for row in await self._fetch(sql.PENDING_BY_PRIORITY, now)]

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        return [row[0] for row in await self._fetch(sql.DELETE_FINISHED, before, limit)]

    # -- leases ----------------------------------------------------------------------------

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        await self._execute(sql.HEARTBEAT, owner, expires_at)

    async def release(self, owner: str) -> None:
        await self._execute(sql.RELEASE, owner)

    async def load_durations(self) -> dict[str, DurationRow]:
        return {row[0]: (row[1], row[2], row[3]) for row in await self._fetch(sql.LOAD_DURATIONS)}

    async def save_durations(self, rows: Mapping[str, DurationRow], now: int) -> None:
        if rows:  # in key order: two processes saving keys in common wait for each other, never deadlock
            keys = sorted(rows)
            values = [rows[key] for key in keys]
            runs, ewma, recent = ([v[i] for v in values] for i in range(3))
            await self._execute(sql.SAVE_DURATIONS, keys, runs, ewma, recent, now)

    async def problem(self) -> str | None:
        return None  # the database server answers or fails: what `get` raises says it

    async def orphans(self, now: int, tools: Collection[str] | None = None) -> list[JobRecord]:
        """Active jobs whose owner holds no live lease, and running jobs whose job lease expired."""
        if tools is None:
            return await self._records(sql.ORPHANS, now)
        return await self._records(sql.ORPHANS_OF, now, list(tools))

    async def orphans_left(self, now: int, tools: Collection[str], owner: str) -> dict[str, int]:
        return {row[0]: row[1] for row in await self._fetch(sql.ORPHANS_LEFT, now, list(tools), owner)}

    async def orphans_of_program(self, now: int, tools: Collection[str], owner: str, program: str) -> list[JobRecord]:
        return await self._records(sql.ORPHANS_OF_PROGRAM, now, list(tools), owner, owner_prefix(program))

    async def adopt_pending(self, jobs: Sequence[JobRecord], owner: str, now: int) -> list[JobRecord]:
        """A statement per ADOPT_CHUNK jobs (`sql.ADOPT`, rows locked in id order). Processes adopting the same jobs
        at once: the first to lock a row adopts it; the other then finds the row at the next version and leaves it.
        A try whose connection was lost may have committed: the next try first reads back which of its jobs are ours
        now. No job changes status: nothing to announce."""
        check_adoptable(jobs)
        won: set[str] = set()
        for i in range(0, len(jobs), ADOPT_CHUNK):
            chunk = jobs[i : i + ADOPT_CHUNK]
            won.update(await self._adopt_chunk([rec.id for rec in chunk], [rec.version for rec in chunk], owner, now))
        return adopted_records(jobs, won, owner, now)

    async def _adopt_chunk(self, ids: list[str], versions: list[int], owner: str, now: int) -> list[str]:
        tries = 0

        async def run() -> list[str]:
            nonlocal tries
            tries += 1
            async with self.pool.acquire() as conn:
                landed = await conn.fetch(sql.ADOPTED, owner, now, ids, versions) if tries > 1 else []
                rows = await conn.fetch(sql.ADOPT, owner, now, ids, versions)
            return [row[0] for row in (*landed, *rows)]

        found: list[str] = await self._retrying(run)
        return found

    # -- cluster coordination --------------------------------------------------------------

    async def claim_many(
        self,
        owner: str,
        lease_ms: int,
        limits: ClaimLimits | None,
        tools: Collection[str],
        k: int,
        *,
        now: int | None = None,
    ) -> list[JobRecord]:
        """Take up to `k` runnable jobs of `tools` for `owner`, in claim order; one statement (see postgres.sql).

        Each job becomes running with `owner`, `attempt + 1`, `started_at` (kept from an earlier
        attempt) and a job lease until `now + lease_ms`. `now` defaults to the database clock;
        pass the caller's clock when the rest of the process uses it (leases, orphans).

        Idempotent across a lost connection: the rows carry this call's claim token, so when the
        connection drops after the statement committed but before its answer arrived, the retry
        returns those rows (read back by token) instead of claiming others and leaving them to be
        recovered, after their lease, as another attempt.

        The statement runs alone (one round trip), so the cluster-wide claim lock (an advisory lock,
        taken only when a limit is set) is never held across a round trip to this process. Claims
        are durable: a claim that a database crash could lose would let two workers run the same
        attempt (synchronous_commit=off was measured and did not raise throughput, so it is not
        worth that risk)."""
        if k < 1:
            return []
        lim = limits or ClaimLimits()
        token = uuid.uuid4().hex
        names = list(tools)
        args: list[Any] = [names, now, list(lim.priority_weights), lim.aging_ms]
        tail: list[Any] = [owner, lease_ms, k]
        query = sql.claim_sql(lim.limited, len(names))
        if lim.limited:
            args += sql.limit_args(lim)
            tail.append(self._claim_key)
        tail.append(token)
        tries = 0

        async def run() -> list[asyncpg.Record]:
            nonlocal tries
            tries += 1
            async with self.pool.acquire() as conn:
                if tries > 1 and (taken := await conn.fetch(sql.CLAIMED, owner, token)):
                    return taken  # the lost try had committed: these are its jobs (and nothing else is taken)
                return await conn.fetch(query, *args, *tail)

        found = [sql.decode(row) for row in await self._retrying(run)]
        if found:
            self._announce(found)
        return found

    # -- notifications ---------------------------------------------------------------------

    def _announce(self, records: list[JobRecord]) -> None:
        """NOTIFY listeners that these jobs changed status or got a cancel request (after the change
        committed; the insert trigger announces new jobs).

        A NOTIFY in the changing transaction would hold PostgreSQL's database-wide notify lock through
        that transaction's durable commit, so all status changes of the cluster would commit one at a
        time. Here the changes queue in `_outbox` and one background task sends everything queued, in
        one statement (a few changes per payload: every listener handles one notification per payload),
        on a dedicated session without synchronous commit; changes queued while it sends go in its next
        statement. The writer does not wait for it (a round trip less per write). Best effort: a
        notification is a wake-up (listeners also poll), so a failure to send is logged, not raised. A
        status written again with the same value is announced again (a spurious wake-up)."""
        self._outbox += [
            {
                "op": "update",
                "id": r.id,
                "status": r.status.value,
                "tool": r.tool_name,
                "cancel": r.cancel_requested is not None,
            }
            for r in records
        ]
        if self._announcer is None:
            self._announcer = asyncio.get_running_loop().create_task(self._send_announcements())

    async def _send_announcements(self) -> None:
        try:
            while self._outbox:
                changes, self._outbox = self._outbox, []
                try:
                    if self._notify_conn is None or self._notify_conn.is_closed():
                        self._notify_conn = await asyncpg.connect(
                            self.dsn, server_settings={**self._settings(), "synchronous_commit": "off"}, timeout=5
                        )
                    await self._notify_conn.execute(sql.NOTIFY, self.channel, _payloads(changes), timeout=5)
                except (*DB_ERRORS, TimeoutError) as exc:
                    log.warning("store.notify_failed", error=f"{type(exc).__name__}: {exc}", lost=len(changes))
                    await self._close_notify_conn()
        finally:
            self._announcer = None
            if self._closing:  # the store closed while this sent (its close found no session to close)
                await self._close_notify_conn()

    async def _flush_announcements(self) -> None:
        """Wait (a few seconds at most) until everything announced so far was sent."""
        with anyio.move_on_after(5), contextlib.suppress(Exception):
            while (task := self._announcer) is not None:
                await asyncio.shield(task)

    async def _close_notify_conn(self) -> None:
        conn, self._notify_conn = self._notify_conn, None
        if conn is not None:
            with contextlib.suppress(*DB_ERRORS):
                await conn.close(timeout=5)

    async def renew_state(self, owner: str, job_ids: Collection[str], expires_at: int) -> dict[str, str | None]:
        """Renew `owner`'s process lease and the job leases of `job_ids` it still runs.

        Answers {job id still held: its cancel request or None}: a job missing from it was taken over,
        finished or cancelled elsewhere, and this owner's writes to it will lose (the attempt moved on).
        """
        return {row[0]: row[1] for row in await self._fetch(sql.RENEW_STATE, owner, list(job_ids), expires_at)}

    async def listen(self, callback: Callable[[JobChange], Any], on_lost: Callable[[], Any] | None = None) -> Listener:
        """Call `callback(change)` for every job inserted or changed; `await listener.close()` to stop."""
        try:
            conn = await self._connect()
        except DB_ERRORS as exc:
            raise self._error(exc) from None
        listener = Listener(conn, self.channel, callback, on_lost)
        try:
            await listener.start()
        except BaseException as exc:  # a database error, or cancelled while starting: never leak the connection
            with anyio.CancelScope(shield=True):
                await listener.close()
            if isinstance(exc, DB_ERRORS):
                raise self._error(exc) from None
            raise
        self._listeners.add(listener)
        return listener

    def sweeper_lock(self) -> AbstractAsyncContextManager[bool]:
        """`async with store.sweeper_lock() as held:` - held is True in exactly one session at a time (with
        `?pool_max=1` in every process: the sweep's own work needs the one connection, and two sweeps at once
        only repeat compare-and-sets)."""
        return self._advisory_lock(lock_key(self.schema, "sweeper"), None, SWEEPER_LOCK_HOLD_MS, unaffordable=True)

    @contextlib.asynccontextmanager
    async def principal_lock(self, principal: str) -> AsyncIterator[bool]:
        """`async with store.principal_lock(principal) as held:` held by one session at a time, waited for: a
        quota's count and the insert it admits are one step across every process that shares the store. With a
        pool of one connection (`?pool_max=1`) it is not taken (held False): its holder could not count. A
        holder that keeps it over PRINCIPAL_LOCK_WAIT_MS gets the call refused (StoreLocked); one that stalls loses
        it after PRINCIPAL_LOCK_HOLD_MS (PostgreSQL 14+; a stalled holder may then let one more job in)."""
        key = lock_key(self.schema, f"principal:{principal}")
        try:
            async with self._advisory_lock(
                key, PRINCIPAL_LOCK_WAIT_MS, PRINCIPAL_LOCK_HOLD_MS, unaffordable=False
            ) as held:
                yield held
        except StoreLocked:
            raise principal_lock_refused(self.where) from None

    @contextlib.asynccontextmanager
    async def _advisory_lock(
        self, key: int, wait_ms: int | None, hold_ms: int, *, unaffordable: bool
    ) -> AsyncIterator[bool]:
        """A session-level advisory lock on a pooled connection (taken, or with `wait_ms` waited for that long:
        StoreLocked after), released on exit (and by PostgreSQL when that session dies, so a crashed holder never
        blocks the others; on PostgreSQL 14+ it ends the session once it has been idle `hold_ms`, so a stalled
        holder does not either). A holder keeps its connection while its work takes another: holders are at most half
        the pool (`_lock_holders`; more, and the holders and their work waited on each other for ever), and a
        pool of one connection takes none (held `unaffordable`). The pool does not reset connections, so a
        session that may hold the lock without knowing it (the answer to the lock request was cut off) is closed
        rather than put back; its backend ends when its wait does (`wait_ms`)."""
        if self.pool_max < 2:
            yield unaffordable
            return
        async with self._lock_holders:
            try:
                async with self.pool.acquire() as conn:
                    bound_ms = hold_ms if _bounds_idle_sessions(conn) else None
                    try:
                        held = await _take_advisory_lock(conn, key, wait_ms, bound_ms)
                    except asyncpg.PostgresError:
                        raise  # the server answered: not held, and the session is as it was
                    except BaseException:
                        conn.terminate()
                        raise
                    try:
                        async with _kept_busy(conn, bound_ms if held else None):
                            yield held
                    finally:
                        if held:
                            with anyio.CancelScope(shield=True):
                                await _release_advisory_lock(conn, key, bound_ms is not None)
            except DB_ERRORS as exc:
                raise self._error(exc) from None

    async def dependency_blocked(self, limit: int = 1000) -> list[tuple[JobRecord, str, JobStatus | None]]:
        """Pending jobs that can never run: (job, dependency id, its status or None when deleted)."""
        rows = await self._fetch(sql.DEPENDENCY_BLOCKED, limit)
        return [(sql.decode_first(r), r[-2], None if r[-1] is None else JobStatus(r[-1])) for r in rows]

    async def release_ready(self) -> int:
        """Make claimable the pending jobs a dependency held back whose dependencies are all completed now, that
        the writers of those completions did not release (an insert that raced the last one); how many. The
        sweeper's, about once a second."""
        released = await self._records(sql.RELEASE_READY)
        if released:
            log.info("store.released_late", jobs=len(released))
            self._announce(released)
        return len(released)

    async def usage(self) -> dict[str, Any]:
        """Cluster usage, summed from the running jobs: running, memory_mb, cpu_weight, disk_mb, and
        by_tool (the running count of every tool that has a job in the store)."""
        row = await self._fetchrow(sql.USAGE)
        if row is None:
            raise StoreError(f"the job store at {self.where} has no jobs table")
        return {**dict(row), "by_tool": json.loads(row["by_tool"])}

    # -- schedules -------------------------------------------------------------------------

    async def insert_schedule(self, rec: ScheduleRecord) -> None:
        try:
            await self._execute(_S_INSERT, *schedulerows.encode(rec))
        except DuplicateJob:
            raise DuplicateJob(f"a schedule with id '{rec.schedule_id}' exists already") from None

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        if _unholdable(schedule_id):
            return None
        row = await self._fetchrow(f"{_S_SELECT} WHERE schedule_id = $1", schedule_id)
        return None if row is None else schedulerows.decode(tuple(row))

    async def list_schedules(
        self, principal: str | None = None, *, limit: int | None = None, arguments: bool = True
    ) -> list[ScheduleRecord]:
        if principal is None:
            rows = await self._fetch(schedulerows.list_sql(arguments, "", "$1"), limit)  # LIMIT NULL: all of them
        else:
            rows = await self._fetch(schedulerows.list_sql(arguments, " WHERE principal = $1", "$2"), principal, limit)
        return [schedulerows.decode(tuple(row)) for row in rows]

    async def count_schedules(self, principal: str | None) -> int:
        if principal is None:
            row = await self._fetchrow("SELECT count(*) FROM schedules")
        else:
            row = await self._fetchrow("SELECT count(*) FROM schedules WHERE principal = $1", principal)
        return int(row[0]) if row is not None else 0

    async def due_schedules(self, now: int) -> list[ScheduleRecord]:
        rows = await self._fetch(
            f"{_S_SELECT} WHERE NOT paused AND next_fire_at <= $1 AND {schedulerows.NOT_HELD_SQL}"
            " ORDER BY next_fire_at, schedule_id",
            now,
        )
        return [schedulerows.decode(tuple(row)) for row in rows]

    async def next_fire_after(self, now: int) -> int | None:
        row = await self._fetchrow(
            "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at > $1", now
        )
        return None if row is None or row[0] is None else int(row[0])

    async def update_schedule(
        self, schedule_id: str, changes: Mapping[str, Any], version: int
    ) -> ScheduleRecord | None:
        schedulerows.check_changes(changes)
        sets = "".join(f"{k} = ${i + 1}, " for i, k in enumerate(changes))
        n = len(changes)
        text = (
            f"UPDATE schedules SET {sets}version = version + 1 WHERE schedule_id = ${n + 1} AND version = ${n + 2}"
            f" RETURNING {_S_COLS}"
        )
        row = await self._fetchrow(text, *schedulerows.change_values(changes), schedule_id, version)
        return None if row is None else schedulerows.decode(tuple(row))

    async def delete_schedule(self, schedule_id: str) -> bool:
        # The schedule first: a firing then finds it gone (or, holding it FOR SHARE, is waited for and its tick's
        # key deleted after). Its keys first let a process that had read it fire a tick fired already, again.
        deleted = await self._execute("DELETE FROM schedules WHERE schedule_id = $1", schedule_id) != "DELETE 0"
        await self._execute(_DELETE_TICKS, schedule_id)
        return deleted

    async def fire(self, job: JobRecord, version: int) -> bool:
        """The tick's key and the job in one transaction, while the schedule is unpaused at `version`: the
        key's primary key lets one firing of the tick in, cluster-wide; the others insert nothing.
        Idempotent across a lost connection (the key names the job that fired it). A process that stalls inside
        the transaction holds the others for at most FIRE_STALL_MS."""
        args = sql.insert_args(job)

        async def run() -> bool:
            async with self.pool.acquire() as conn:
                # prepared before the transaction: a statement's first use on a connection (parse, then wait for
                # the client) leaves the session `active`, where no time-out acts, holding what it holds
                at, tick, tick_job, insert = [await conn.prepare(q) for q in _FIRING]
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {FIRE_STALL_MS}")
                    if await at.fetchval(job.schedule_id, version) is None:
                        return bool(await tick_job.fetchval(job.schedule_id, job.tick) == job.id)
                    if await tick.fetchval(job.schedule_id, job.tick, job.id, job.created_at) is None:
                        return bool(await tick_job.fetchval(job.schedule_id, job.tick) == job.id)
                    await insert.fetch(*args)
                    return True

        fired: bool = await self._retrying(run)
        return fired

    async def fired_job(self, schedule_id: str, tick: int) -> str | None:
        found = await self._retrying(lambda: self.pool.fetchval(_TICK_JOB, schedule_id, tick))
        return None if found is None else str(found)

    async def prune_ticks(self, before: int) -> int:
        return int((await self._execute(_PRUNE_TICKS, before)).split()[-1])

    async def drop_schema(self) -> None:
        """Delete this store's schema and all its jobs (tests and throwaway schemas; never `public`)."""
        conn = await self._connect()
        try:
            await drop_schema(conn, self.schema)
        finally:
            await conn.close()


async def _take_advisory_lock(conn: Any, key: int, wait_ms: int | None, bound_ms: int | None) -> bool:
    """Take the advisory lock `key` in `conn`'s session (waiting up to `wait_ms` for it, LockNotAvailableError
    after; or with None only trying), with the session's idle bound (`bound_ms`, None: none): held? Waited for,
    the bound and the lock are taken in one implicit transaction, all or nothing; the wait's time-out is local to
    it (the pool does not reset sessions), the lock and the bound outlive it (`_release_advisory_lock` resets
    the bound)."""
    bound = "" if bound_ms is None else f"SET idle_session_timeout = {int(bound_ms)}; "
    if wait_ms is not None:
        await conn.execute(f"SET LOCAL lock_timeout = {int(wait_ms)}; {bound}SELECT pg_advisory_lock({int(key)})")
        return True
    held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    if held and bound:
        try:
            await conn.execute(bound)
        except BaseException:
            conn.terminate()  # the lock goes with the session
            raise
    return held


async def _release_advisory_lock(conn: Any, key: int, bounded: bool) -> None:
    """Release the advisory lock `key` held in `conn`'s session, and the session's idle bound. A session that
    ended (PostgreSQL ended it idle past its bound: its holder stalled) released the lock as it ended."""
    if _session_gone(conn):
        return
    reset = "RESET idle_session_timeout; " if bounded else ""
    try:
        await conn.execute(f"{reset}SELECT pg_advisory_unlock({int(key)})")
    except DB_ERRORS:
        if not _session_gone(conn):
            raise


@contextlib.asynccontextmanager
async def _kept_busy(conn: Any, bound_ms: int | None) -> AsyncIterator[None]:
    """While a lock is held with an idle bound, a statement on its session every third of the bound: the session
    is idle only when its holder's process is (stopped, frozen), not while the holder's work waits on the database
    on other connections (a table lock, a slow commit), which would lose the lock under a holder that still
    counts on it (review helper-83 F1). A beat is never cut off (the session stays usable for the release); one
    that fails ends the beating (the session is gone, and the lock with it)."""
    if bound_ms is None:
        yield
        return
    stop = anyio.Event()
    beating = asyncio.get_running_loop().create_task(_beat(conn, bound_ms / 3000, stop))  # not a task group: the
    try:  # holder's own errors (QuotaExceeded) must leave as they are, not in an ExceptionGroup
        yield
    finally:
        stop.set()
        with anyio.CancelScope(shield=True):
            await beating


async def _beat(conn: Any, every_s: float, stop: anyio.Event) -> None:
    while True:
        with anyio.move_on_after(every_s):
            await stop.wait()
        if stop.is_set() or _session_gone(conn):
            return
        try:
            with anyio.CancelScope(shield=True):
                await conn.execute("SELECT 1")
        except DB_ERRORS:
            return


def _session_gone(conn: Any) -> bool:
    """The pooled connection's session ended: closed, or already taken back by the pool (as it does when its
    connection closes under it: then the proxy answers nothing)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def _bounds_idle_sessions(conn: Any) -> bool:
    return bool(conn.get_server_version().major >= 14)  # `idle_session_timeout` came in 14
