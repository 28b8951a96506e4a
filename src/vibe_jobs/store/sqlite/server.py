"""The SQLite server: a child process that owns a store's one connection and runs its statements.

Started by `sqlite.link.Link` as `python -I <this file> <fd> <parent pid>`; never imported by the package. It
uses the standard library only, so it starts in a few milliseconds without vibe_jobs or pydantic.

Why a process: SQLite's own work for a job (an INSERT into five b-trees, two UPDATEs, a share of a
commit) costs about as much CPU as the event loop's work for it. On a thread the two take turns
under the GIL; in a process they run at the same time, on two cores.

Protocol, over a socket pair, each message a 4-byte length and a pickle:
- parent -> server: the `Config` first; then batches `(definitions, ops)`: `definitions` lists
  `(sid, sql, writes)` of statements not sent before, `ops` lists `(sid, args, mode)`; `None` stops.
- server -> parent: `("ready", None)` or `("error", failure)` for the config; then, for every op
  in order, `(values, failures)`: `values[i]` is op i's value, `failures` maps the index of each
  failed op to `(kind, name, message)`.

Group commit: the server takes every batch that has arrived (up to `max_ops` ops), runs them in ONE
transaction, commits, and only then answers them all: a write is answered after its commit. An
op's own failure (a constraint, a bad value) fails only that op: SQLite undoes just its statement.
A failure of the database itself (disk full, busy, I/O error) rolls back and fails every op of the
transaction; the next one starts afresh.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections import deque
from typing import Any, TypedDict

HEADER = struct.Struct("!I")

# modes: what an op answers
NONE, ROWCOUNT, ONE, ALL, COLUMN, VACUUM = range(6)

Failure = tuple[str, str, str]  # kind ("sqlite", "python", "newer"), name, message

# Errors of one statement: the transaction is intact, only the op fails.
_OP_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.NotSupportedError,
)


class Config(TypedDict):
    path: str
    pragmas: list[str]  # run in order after WAL mode is set
    migrations: list[list[str]]  # schema steps; PRAGMA user_version counts those done
    max_ops: int  # ops in one transaction at most


class Newer(Exception):
    """The database was written by a newer schema than this program knows."""


class Foreign(Exception):
    """The file is another program's database (tables, no vibe-jobs schema): nothing in it is changed."""


def _no_room(exc: sqlite3.Error) -> bool:
    """A write that found no room: the disk is full, or a file reached this process's size limit (EFBIG: an I/O
    error of its write)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_FULL") or name.startswith("SQLITE_IOERR")


def sqlite_failure(exc: BaseException) -> Failure:
    if isinstance(exc, Newer):
        return ("newer", "NEWER", str(exc))
    if isinstance(exc, Foreign):
        return ("foreign", "FOREIGN", str(exc))
    if isinstance(exc, sqlite3.Error):
        return ("sqlite", getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR", str(exc))
    return ("python", type(exc).__name__, str(exc))


# -- opening -------------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    """A TEXT value as str; bytes that are not UTF-8 (a database is a file anyone may write) read as U+FFFD
    instead of failing every statement that reads the row."""
    return data.decode("utf-8", "replace")


def connect(config: Config) -> sqlite3.Connection:
    conn = sqlite3.connect(config["path"], isolation_level=None, cached_statements=512)
    conn.text_factory = _text
    try:
        _refuse_unknown(conn, len(config["migrations"]))  # before anything is changed (WAL mode, tables)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table exists
        if _wal_mode(conn) not in ("wal", "memory"):
            raise sqlite3.OperationalError("the database refused WAL mode")
        for pragma in config["pragmas"]:
            conn.execute(pragma)
        while _migrate_step(conn, config["migrations"]):
            pass
    except BaseException:
        conn.close()
        raise
    return conn


WAL_TRIES, WAL_PAUSE = 200, 0.01  # about 2 s for servers opening one new file at once


def _wal_mode(conn: sqlite3.Connection) -> str:
    """Switch to WAL. Openers of one new file at once race for the switch, and SQLite answers the loser "database
    is locked" at once, without waiting its busy time-out (seen: 4 of 480 openers, eight at a time): try again."""
    for _ in range(WAL_TRIES - 1):
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        time.sleep(WAL_PAUSE)
    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])


def _refuse_unknown(conn: sqlite3.Connection, steps: int) -> None:
    """Newer when the database had more schema steps than this program knows (a rollback opening a file of the
    version it rolled back from: refused with not a byte written; setting WAL mode and `auto_vacuum` first rewrote
    the file's header). Foreign when it has tables but no vibe-jobs schema step (`user_version` 0). Both are read in
    one transaction: read apart, another server's first schema step (tables and step at once) committed in
    between made a new file look foreign to a server started at the same moment."""
    conn.execute("BEGIN")
    try:
        step = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    finally:
        conn.execute("COMMIT")
    if step > steps:
        raise Newer(str(step))
    if step == 0 and tables:
        shown = ", ".join(repr(name[:64]) for name in tables[:5])
        raise Foreign(shown + (f" and {len(tables) - 5} more" if len(tables) > 5 else ""))


def _migrate_step(conn: sqlite3.Connection, migrations: list[list[str]]) -> bool:
    """One schema step per transaction (safe against another process migrating at the same time). A file whose
    steps so far are not ours (built by a commit that numbered its steps otherwise) gets every step at once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_step(conn)
        if version > len(migrations):
            raise Newer(str(version))
        if version < len(migrations):
            if version and _schema(conn) != _reference(migrations[:version]):
                _replay(conn, migrations)
                version = len(migrations) - 1
            else:
                for sql in migrations[version]:
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a COMMIT that failed (SQLITE_FULL: no room to grow) may have rolled back itself
            conn.execute("ROLLBACK")
        raise
    return version + 1 < len(migrations)


def _schema_step(conn: sqlite3.Connection) -> int:
    """The database's schema step, with this connection's copy of the schema brought up to date first.
    `PRAGMA user_version` reads the file header without checking that copy: an opener that had read the schema
    (`_refuse_unknown`) before another process migrated the file kept the old one, and SQLite plans a query by
    it, so a read through an index changed since failed ("no query solution", INDEXED BY jobs_final)."""
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reloads a schema another process changed
    step: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return step


# A step's statement that makes or removes a named thing: CREATE [UNIQUE] kind name, DROP kind name, ALTER TABLE
# table ADD COLUMN name (any other statement changes data, and runs as it is)
_DDL = re.compile(
    r"\s*(?:CREATE\s+(?:UNIQUE\s+)?(?P<make>INDEX|TABLE|VIEW|TRIGGER)|DROP\s+(?P<drop>INDEX|TRIGGER|VIEW)"
    r"|ALTER\s+TABLE\s+(?P<table>\w+)\s+ADD\s+COLUMN)\s+(?P<name>\w+)",
    re.IGNORECASE,
)
_ZERO = {"INTEGER": "0", "REAL": "0", "TEXT": "''"}  # the value a NOT NULL column added without a default gets


def _schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """By name: each table's columns (in any order), each index's, view's and trigger's SQL (whitespace aside)."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite%'").fetchall()
    return {name: _columns(conn, name) if kind == "table" else " ".join(sql.split()) for kind, name, sql in rows}


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """(name, type, not null, default, primary key) of each column, sorted."""
    return sorted(tuple(row[1:]) for row in conn.execute(f'PRAGMA table_info("{table}")'))


def _reference(steps: list[list[str]]) -> dict[str, Any]:
    """The `_schema` of a database in memory that had exactly `steps`."""
    with contextlib.closing(sqlite3.connect(":memory:")) as ref:
        for sql in (sql for step in steps for sql in step):
            ref.execute(sql)
        return _schema(ref)


def _replay(conn: sqlite3.Connection, migrations: list[list[str]]) -> None:
    """Every step again, each statement kept where the file has what it makes already and redone where that
    differs (no table or column is dropped); then the indexes, views and triggers of no step are dropped. The
    SQLite store's first commit, and branches merged later, numbered their steps otherwise: a file of theirs
    failed every start ("no such index: jobs_final", "duplicate column name")."""
    for sql in (sql for step in migrations for sql in step):
        _replay_statement(conn, sql)
    wanted = _reference(migrations)
    extra = "SELECT type, name FROM sqlite_master WHERE type != 'table' AND name NOT LIKE 'sqlite%'"
    for kind, name in conn.execute(extra).fetchall():
        if name not in wanted:
            conn.execute(f'DROP {kind} IF EXISTS "{name}"')


def _replay_statement(conn: sqlite3.Connection, sql: str) -> None:
    made = _DDL.match(sql)
    if made is None:
        conn.execute(sql)
        return
    name = made["name"]
    if made["table"]:
        if name not in (column[0] for column in _columns(conn, made["table"])):
            conn.execute(sql)
    elif made["drop"]:
        conn.execute(f"DROP {made['drop']} IF EXISTS {name}")
    elif (have := conn.execute("SELECT type, sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()) is None:
        conn.execute(sql)
    elif made["make"].upper() == "TABLE":
        _add_columns(conn, name, sql)
    elif " ".join(have[1].split()) != " ".join(sql.split()):
        conn.execute(f"DROP {have[0]} {name}")
        conn.execute(sql)


def _add_columns(conn: sqlite3.Connection, table: str, create: str) -> None:
    """The columns of `create` that `table` lacks (a NOT NULL one without a default gets its type's zero)."""
    have = {column[0] for column in _columns(conn, table)}
    columns: list[tuple[Any, ...]] = _reference([[create]])[table]
    for name, kind, not_null, default, _ in columns:
        if name not in have:
            default = default if default is not None or not not_null else _ZERO.get(kind.upper(), "''")
            constraint = (" NOT NULL" if not_null else "") + ("" if default is None else f" DEFAULT {default}")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{constraint}")


# -- the socket ----------------------------------------------------------------------------------


def take_messages(buf: bytearray) -> list[Any]:
    """Every whole message at the front of `buf` (4-byte length, pickle), taken out of it."""
    messages = []
    while len(buf) >= 4:
        (size,) = HEADER.unpack_from(buf)
        if len(buf) < 4 + size:
            break
        messages.append(pickle.loads(memoryview(buf)[4 : 4 + size]))
        del buf[: 4 + size]
    return messages


class Channel:
    """Length-prefixed pickles over a blocking socket, with a non-blocking look for more."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, bytearray()
        self.arrived: deque[Any] = deque()

    def send(self, value: Any) -> None:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(HEADER.pack(len(data)) + data)

    def receive(self, block: bool = True) -> tuple[bool, Any]:
        """(True, message), or (False, None) when nothing has arrived (block=False) or the parent is gone."""
        while True:
            if self.arrived:
                return True, self.arrived.popleft()
            try:
                data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False, None
            if not data:
                if block:
                    raise EOFError
                return False, None
            self.buf += data
            self.arrived.extend(take_messages(self.buf))


# -- serving -------------------------------------------------------------------------------------


class Server:
    def __init__(self, conn: sqlite3.Connection, channel: Channel, max_ops: int) -> None:
        self.conn, self.channel, self.max_ops = conn, channel, max_ops
        self.cur = conn.cursor()
        self.statements: dict[int, tuple[str, bool]] = {}

    def serve(self) -> None:
        while True:
            ops, stop = self._take()
            if ops:
                self.channel.send(self._transaction(ops))
            if stop:
                self._close()
                return

    def _take(self) -> tuple[list[tuple[int, Any, int]], bool]:
        """Block for a batch, then take every batch that has arrived too (up to `max_ops` ops)."""
        ops: list[tuple[int, Any, int]] = []
        block = True
        while len(ops) < self.max_ops:
            got, message = self.channel.receive(block)
            if not got:
                break
            if message is None:
                return ops, True
            definitions, batch = message
            for sid, sql, writes in definitions:
                self.statements[sid] = (sql, writes)
            ops += batch
            block = False
        return ops, False

    def _transaction(self, ops: list[tuple[int, Any, int]], again: bool = True) -> tuple[list[Any], dict[int, Failure]]:
        statements = self.statements
        writes = any(statements[sid][1] for sid, _, mode in ops if mode != VACUUM)
        try:
            if writes:
                self.conn.execute("BEGIN IMMEDIATE")
            values, failures, vacuum = self._run_all(ops)
            if writes:
                self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            if again and _no_room(exc) and self._emptied_wal():
                return self._transaction(ops, again=False)
            failure = sqlite_failure(exc)
            if writes:
                return self._reads_alone(ops, failure)
            return [None] * len(ops), dict.fromkeys(range(len(ops)), failure)
        if vacuum:
            self._vacuum()
        return values, failures

    def _run_all(self, ops: list[tuple[int, Any, int]]) -> tuple[list[Any], dict[int, Failure], bool]:
        """Each op in order; a failure of the database itself (not of the op) propagates."""
        values: list[Any] = []
        failures: dict[int, Failure] = {}
        vacuum = False
        add, cur, statements = values.append, self.cur, self.statements
        for i, (sid, args, mode) in enumerate(ops):
            if mode == VACUUM:
                vacuum = True
                add(None)
                continue
            try:
                cur.execute(statements[sid][0], args)
                add(None if mode == NONE else _answer(cur, mode))
            except _OP_ERRORS as exc:
                failures[i] = sqlite_failure(exc)
                add(None)
            except sqlite3.Error:
                raise
            except Exception as exc:  # a value SQLite cannot take (an int too large, ...)
                failures[i] = sqlite_failure(exc)
                add(None)
        return values, failures, vacuum

    def _reads_alone(self, ops: list[tuple[int, Any, int]], failure: Failure) -> tuple[list[Any], dict[int, Failure]]:
        """A batch with writes that failed as a whole (the disk full, the write lock held by another process): its
        writes (and a vacuum) get `failure`; its reads run again, each on its own outside any transaction, so that
        a read never fails for the writes it arrived with (they were rolled back: it reads what is stored)."""
        values: list[Any] = []
        failures: dict[int, Failure] = {}
        statements, cur = self.statements, self.cur
        for i, (sid, args, mode) in enumerate(ops):
            values.append(None)
            if mode == VACUUM or statements[sid][1]:
                failures[i] = failure
                continue
            try:
                cur.execute(statements[sid][0], args)
                values[i] = None if mode == NONE else _answer(cur, mode)
            except Exception as exc:  # this read's own failure (the database may fail reads too)
                failures[i] = sqlite_failure(exc)
        return values, failures

    def _vacuum(self) -> None:
        """Give deleted jobs' pages back to the file system (auto_vacuum = INCREMENTAL), outside any
        transaction. `executescript` steps the pragma to its end; `execute` would free one page."""
        try:
            self.conn.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.Error:
            pass  # housekeeping only (e.g. the disk is full): the next batch reports real trouble

    def _emptied_wal(self) -> bool:
        """Copy the write-ahead log into the database and truncate it; whether it did (no reader held it).
        The log grows until a commit finds it past 1,000 pages (4 MiB): under a smaller file-size limit
        (RLIMIT_FSIZE) it reached the limit first, and every write failed from then on, the database itself
        still a few pages."""
        try:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]  # then 0 frames: emptied
        except sqlite3.Error:
            return False
        return not busy

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # another process is reading; the WAL is checkpointed later
        self.conn.close()
        self.channel.send(("closed", None))


def _answer(cur: sqlite3.Cursor, mode: int) -> Any:
    if mode == ROWCOUNT:
        return cur.rowcount
    rows = cur.fetchall()  # to the end, also for ONE: a RETURNING statement is done only when stepped out
    if mode == ONE:
        return rows[0] if rows else None
    return rows if mode == ALL else [row[0] for row in rows]


def main(fd: int, parent: int) -> None:
    os.umask(0o077)  # the database (and its -wal, -shm) hold arguments and outputs: created for the owner only
    _outlive_no_parent(parent)
    channel = Channel(socket.socket(fileno=fd))
    try:
        _, config = channel.receive()
        conn = connect(config)
    except (EOFError, OSError):
        return  # the parent is gone (its open was cancelled)
    except BaseException as exc:
        _try_send(channel, ("error", sqlite_failure(exc)))
        return
    if not _try_send(channel, ("ready", None)):
        conn.close()
        return
    try:
        Server(conn, channel, config["max_ops"]).serve()
    except (EOFError, OSError):
        pass  # the parent is gone: whatever it had not seen answered is rolled back or committed whole


def _outlive_no_parent(parent: int) -> None:
    """Signals meant for the whole process group (Ctrl-C, a service manager's SIGTERM) are left to the
    parent, which drains and stops this process itself; the socket's end (EOF) ends it too. If the
    parent is killed outright while a forked child of it still holds the socket, Linux's parent-death
    signal ends this process anyway."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the socket's end still ends this process
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the signal was armed


def _try_send(channel: Channel, message: Any) -> bool:
    try:
        channel.send(message)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
