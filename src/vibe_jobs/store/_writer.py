"""One dedicated thread owns a SQLite connection; the event loop queues operations to it.

`on_begin(conn)` runs at the start of each batch (inside its write transaction, if any),
`on_rollback()` after a batch was rolled back and `after_commit(conn)` after each batch, outside
any transaction: hooks for state and housekeeping kept beside the connection.

Group commit: the thread takes every operation that has arrived (up to `max_batch`), runs them in
ONE transaction, commits, and only then resolves all their futures with one `call_soon_threadsafe`.
So a write's future resolves after its data is committed, and SQLite never blocks the event loop.

An operation is a callable and its argument, run as `op(conn, arg) -> value` (no closure to build
per call on the event loop). Its own failure (a constraint, a bad value) fails
only its future; the transaction goes on (SQLite undoes just that statement). A failure of the
database itself (disk full, busy, I/O error, corruption) rolls the batch back and fails every
future in it; the next batch starts afresh, so the store stays usable.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from vibe_jobs.errors import StoreError

Op = Callable[[sqlite3.Connection, Any], Any]
_Item = tuple[Op, Any, bool, "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", bool, Any]

# Errors of one statement: the transaction is intact, only the operation fails.
_OP_ERRORS = (
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
    sqlite3.InterfaceError, sqlite3.NotSupportedError,
)  # fmt: skip


def _stop(conn: sqlite3.Connection, arg: Any) -> None:
    """Sentinel operation: finish the work queued before it, then shut down."""


def _resolve(outcomes: list[_Outcome]) -> None:
    for fut, ok, value in outcomes:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Writer:
    """The connection's thread. `start()` connects (in the thread), `submit()` queues, `stop()` drains.

    Operations submitted during one event-loop iteration are handed to the thread together, by one
    callback at the next iteration: the thread then runs them while the loop waits, instead of
    fighting the loop for the GIL op by op (each SQLite call releases and re-takes the GIL).
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        map_error: Callable[[sqlite3.Error], Exception],
        *,
        on_begin: Callable[[sqlite3.Connection], None] = lambda conn: None,
        on_rollback: Callable[[], None] = lambda: None,
        after_commit: Callable[[sqlite3.Connection], None] = lambda conn: None,
        name: str = "vibe-jobs-sqlite",
        max_batch: int = 2000,
    ) -> None:
        self._connect, self._map_error, self._max_batch = connect, map_error, max_batch
        self._on_begin, self._on_rollback, self._after_commit = on_begin, on_rollback, after_commit
        self._queue: queue.SimpleQueue[list[_Item]] = queue.SimpleQueue()
        self._pending: list[_Item] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._queue.put([(_stop, None, False, ready)])  # the first item: answered once connected
        self._thread.start()
        await ready
        self._accepting = True

    def submit(self, op: Op, arg: Any, writes: bool) -> asyncio.Future[Any]:
        """Queue `op(conn, arg)`; `writes` says it changes data (the batch then runs in a write transaction)."""
        loop = self._loop
        if not self._accepting or loop is None:
            raise StoreError("the job store is not open (use `await store.open()` first)")
        fut = loop.create_future()
        pending = self._pending
        pending.append((op, arg, writes, fut))
        if len(pending) == 1:
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        if self._pending:
            chunk, self._pending = self._pending, []
            self._queue.put(chunk)

    async def stop(self) -> None:
        """Run everything queued so far, checkpoint, close the connection, end the thread."""
        if not self._accepting or self._loop is None:
            return
        self._accepting = False
        self._flush()
        done = self._loop.create_future()
        self._queue.put([(_stop, None, True, done)])
        await done

    # -- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        ((_, _, _, ready),) = self._queue.get()
        try:
            conn = self._connect()
        except Exception as exc:
            self._post([(ready, False, exc)])
            return
        self._post([(ready, True, None)])
        self._serve(conn)

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            batch, stop = self._drain()
            if batch:
                self._post(self._execute(conn, batch))
                self._maintain(conn)
            if stop is not None:
                self._close(conn, stop)
                return

    def _drain(self) -> tuple[list[_Item], asyncio.Future[Any] | None]:
        """Block for work, then take all that has arrived (up to about `max_batch` operations)."""
        batch = self._queue.get()
        while len(batch) < self._max_batch:
            try:
                batch += self._queue.get_nowait()
            except queue.Empty:
                break
        if batch[-1][0] is _stop:  # stop() queues the sentinel last, alone
            return batch[:-1], batch[-1][3]
        return batch, None

    def _execute(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Outcome]:
        writes = any(item[2] for item in batch)
        try:
            if writes:
                conn.execute("BEGIN IMMEDIATE")
            self._on_begin(conn)
            outcomes = self._run_all(conn, batch)
            if writes:
                conn.execute("COMMIT")
            return outcomes
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._on_rollback()
            return [(fut, False, self._map_error(exc)) for _, _, _, fut in batch]

    def _run_all(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Outcome]:
        """Each operation in order; a failure of the database itself (not of the operation) propagates."""
        outcomes: list[_Outcome] = []
        add = outcomes.append
        for op, arg, _, fut in batch:
            try:
                add((fut, True, op(conn, arg)))
            except _OP_ERRORS as exc:
                add((fut, False, self._map_error(exc)))
            except sqlite3.Error:
                raise
            except Exception as exc:
                add((fut, False, exc))
        return outcomes

    def _maintain(self, conn: sqlite3.Connection) -> None:
        """After the batch's futures are answered: housekeeping outside any transaction."""
        try:
            self._after_commit(conn)
        except sqlite3.Error:
            pass  # housekeeping only (e.g. the disk is full): the next batch reports real trouble

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _close(self, conn: sqlite3.Connection, done: asyncio.Future[Any]) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # another process is reading; the WAL is checkpointed later
        conn.close()
        self._post([(done, True, None)])

    def _post(self, outcomes: list[_Outcome]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_resolve, outcomes)
        except RuntimeError:
            pass  # the event loop is closed: nobody is waiting any more
