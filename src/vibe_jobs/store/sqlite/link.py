"""The event loop's side of a SQLite server process (`sqlite.server`): start it, send it ops, and
resolve each op's future when its answer arrives (after the commit of its transaction).

Ops queued during one event-loop iteration go out together at the next one, or sooner in chunks
(see MIN_CHUNK): the server starts on the first ops while the loop still prepares the rest, and it
commits whatever has arrived by then in one transaction (group commit).

A server that answers nothing for `answer_timeout` seconds while ops wait is hung (stopped, deadlocked) and is
killed: its ops fail with `AnswerLost`, and the store starts another process for the next op (a VACUUM in flight
may take LONG_OP_TIMES longer). Every op would have waited for ever.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from vibe_jobs.errors import StoreError, StoreUnavailable
from vibe_jobs.logs import get_logger
from vibe_jobs.store.sqlite.server import HEADER, VACUUM, Config, Failure, take_messages

log = get_logger("vibe_jobs.store.sqlite")

SERVER = str(Path(__file__).with_name("server.py"))
# Queued ops go out at once when they are as many as those the server has in hand (and at least
# MIN_CHUNK): the server works on one half while the loop prepares the other, at any concurrency
# (a fixed chunk falls back to lockstep when it exceeds the ops in flight; bench/MEASUREMENTS.md).
MIN_CHUNK = 8
LONG_OP_TIMES = 10  # a long op (VACUUM) in flight may leave the server silent this many answer time-outs


# What the store's process is given of the server's environment: it needs none of the server's tokens, keys
# or store URLs, and a process holding them is one more /proc/PID/environ a same-user program could read.
STORE_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SQLITE_TMPDIR", "LD_LIBRARY_PATH")


def store_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in STORE_ENVIRONMENT if name in environ}


class _PlainPickler(pickle.Pickler):
    """Pickles only what the server can take without importing our (or the caller's) modules.

    Exact None/bool/int/float/str/bytes/list/tuple/dict are pickled as they are (this hook is not
    called for them); a subclass of str, int or float (a str enum from anywhere) goes as the plain
    value, as sqlite3 would bind it; anything else is refused.
    """

    def reducer_override(self, obj: Any) -> Any:
        if obj is str or obj is int or obj is float:
            return NotImplemented  # the callables of the reductions below
        for plain in (str, int, float):
            if isinstance(obj, plain):
                return plain, (_plain_value(obj, plain),)
        raise TypeError(f"a job store value must be text, a number or null, not {type(obj).__name__}")


def _plain_value(obj: Any, plain: type[Any]) -> Any:
    """The value sqlite3 binds for a subclass of str, int or float: its own data (an enum's value)."""
    return plain.__str__(obj) if plain is str else plain(obj)


def _dumps(message: Any) -> bytes:
    buf = io.BytesIO()
    _PlainPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    return buf.getvalue()


class AnswerLost(StoreUnavailable):
    """The server process died after this op was sent and before its answer came: the op may have been
    committed or not (the store reads the row to tell, `SQLiteStore`)."""


class Statement(NamedTuple):
    """A SQL text the server prepares once per connection; `writes`: it needs a write transaction."""

    sid: int
    sql: str
    writes: bool


_STATEMENTS: dict[str, Statement] = {}


def statement(sql: str, writes: bool) -> Statement:
    """The process-wide Statement for `sql` (its id is sent to the server in place of the text)."""
    found = _STATEMENTS.get(sql)
    if found is None:
        found = _STATEMENTS[sql] = Statement(len(_STATEMENTS), sql, writes)
    return found


class Link(asyncio.Protocol):
    """One server process and the ops in flight to it. `start()`, `submit()`, `stop()`."""

    def __init__(
        self, config: Config, map_failure: Callable[[Failure], Exception], *, name: str, answer_timeout: float
    ) -> None:
        self._config, self._map_failure, self._name = config, map_failure, name
        self._answer_timeout = answer_timeout
        self._answered_at = 0.0  # loop time of the last answer, or of the first op sent to an idle server
        self._watch: asyncio.TimerHandle | None = None
        self._long = 0  # ops in flight that may take long (VACUUM): the watch waits for them
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._buf = bytearray()
        self._defined: set[int] = set()
        self._new_defs: list[Statement] = []
        self._ops: list[tuple[int, Any, int]] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()  # sent, in order
        self._control: asyncio.Future[Any] | None = None  # the handshake or the close
        self._accepting = False
        self._closed = False
        self._lost: str | None = None
        self._gone = asyncio.Event()  # the connection to the server has ended

    # -- lifecycle -----------------------------------------------------------------------------

    def _cannot_start(self, exc: OSError) -> StoreUnavailable:
        return StoreUnavailable(f"cannot start the SQLite server process for {self._name}: {exc}")

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        try:
            ours, theirs = socket.socketpair()
        except OSError as exc:  # EMFILE under a low RLIMIT_NOFILE: one line, as a process that cannot start
            raise self._cannot_start(exc) from None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                SERVER,
                str(theirs.fileno()),
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout may carry a protocol (stdio)
                env=store_environment(os.environ),
            )
            self._control = loop.create_future()
            await loop.create_connection(lambda: self, sock=ours)
        except BaseException as exc:
            ours.close()
            await self._reap()
            if isinstance(exc, OSError):
                raise self._cannot_start(exc) from None
            raise
        finally:
            theirs.close()
        self._send(self._config)
        try:
            answer, failure = await self._control
        except BaseException:
            await self._reap()
            raise
        if answer != "ready":
            await self._reap()
            raise self._error(failure)
        self._accepting = True

    @property
    def lost(self) -> str | None:
        """Why the server process is gone, when it stopped unexpectedly."""
        return self._lost

    async def stop(self) -> None:
        """Answer everything queued so far, checkpoint, close the connection, end the process."""
        try:
            if self._accepting:
                self._accepting = False
                self._flush()
                assert self._loop is not None
                self._control = self._loop.create_future()
                self._send(None)
                with anyio.move_on_after(self._answer_timeout) as late:
                    await self._control
                if late.cancelled_caught and self._proc is not None:  # hung: it would hold the stop for ever
                    log.warning("sqlite.server_hung", path=self._name, quiet_s=self._answer_timeout, ops=0)
                    self._proc.kill()
        except StoreUnavailable:
            pass  # the process died: nothing is left to close
        finally:
            await self._reap()

    async def _reap(self) -> None:
        """Close the socket and wait for the process to end (it ends when the socket closes)."""
        if self._transport is not None:
            self._transport.close()
        if self._control is not None and self._control.done() and not self._control.cancelled():
            self._control.exception()  # looked at: a failed handshake nobody awaited is not an error to log
        if self._proc is not None:
            with anyio.CancelScope(shield=True):  # even when the open or close was cancelled: no zombie
                await self._proc.wait()

    # -- ops -----------------------------------------------------------------------------------

    def submit(self, st: Statement, args: Any, mode: int) -> asyncio.Future[Any]:
        """Queue one op: run `st` with `args`; the future gets what `mode` asks for (see the server)."""
        loop = self._loop
        if not self._accepting or loop is None:
            if self._lost is not None:
                raise StoreUnavailable(self._lost)
            raise StoreError(f"the job store at {self._name} is not open (use `await store.open()` first)")
        fut = loop.create_future()
        if mode == VACUUM:
            self._long += 1
            fut.add_done_callback(self._long_done)
        if st.sid not in self._defined:
            self._defined.add(st.sid)
            self._new_defs.append(st)
        ops = self._ops
        ops.append((st.sid, args, mode))
        self._futures.append(fut)
        if len(ops) >= MIN_CHUNK and len(ops) >= len(self._waiting):
            self._flush()
        elif len(ops) == 1:
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        if not self._ops:
            return
        defs = [(st.sid, st.sql, st.writes) for st in self._new_defs]
        ops, futures = self._ops, self._futures
        self._ops, self._futures, self._new_defs = [], [], []
        try:
            data = _dumps((defs, ops))
        except Exception:  # some op holds a value the server cannot take: fail those ops alone
            ops, futures = self._refuse_unsendable(ops, futures)
            data = _dumps((defs, ops))
        if not self._waiting:
            self._idle_ends()
        self._waiting.extend(futures)  # before the write: an answer can only follow it
        self._write(data)

    # -- the watch on a hung server --------------------------------------------------------------

    def _long_done(self, _fut: asyncio.Future[Any]) -> None:
        self._long -= 1
        self._answered_at = self._now()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _idle_ends(self) -> None:
        """Ops go to a server that has nothing in hand: the time it takes to answer counts from now."""
        self._answered_at = self._now()
        if self._watch is None and self._loop is not None:
            self._watch = self._loop.call_later(self._answer_timeout, self._look_at_answers)

    def _look_at_answers(self) -> None:
        self._watch = None
        if not self._waiting or self._transport is None or self._proc is None:
            return  # idle (the next op watches again), or gone
        quiet = self._now() - self._answered_at
        limit = self._answer_timeout * (LONG_OP_TIMES if self._long else 1)
        if quiet < limit:
            assert self._loop is not None
            self._watch = self._loop.call_later(max(0.01, limit - quiet), self._look_at_answers)
            return
        log.warning("sqlite.server_hung", path=self._name, quiet_s=round(quiet, 1), ops=len(self._waiting))
        self._proc.kill()  # its ops fail (AnswerLost); the store starts another process for the next

    def _refuse_unsendable(
        self, ops: list[tuple[int, Any, int]], futures: list[asyncio.Future[Any]]
    ) -> tuple[list[tuple[int, Any, int]], list[asyncio.Future[Any]]]:
        kept: list[tuple[int, Any, int]] = []
        kept_futures: list[asyncio.Future[Any]] = []
        for op, fut in zip(ops, futures, strict=True):
            try:
                _dumps(op)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(StoreError(f"the job store at {self._name} cannot store that: {exc}"))
                continue
            kept.append(op)
            kept_futures.append(fut)
        return kept, kept_futures

    def _send(self, message: Any) -> None:
        self._write(_dumps(message))

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(HEADER.pack(len(data)) + data)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        for message in take_messages(self._buf):  # taken out first: each is handled once, whatever happens
            self._answer(message)

    def _answer(self, message: tuple[Any, Any]) -> None:
        first, second = message
        if isinstance(first, str):  # ("ready" | "error" | "closed", failure)
            self._closed = first == "closed"
            if self._control is not None and not self._control.done():
                self._control.set_result(message)
            return
        values: list[Any] = first
        failures: dict[int, Failure] = second
        waiting = self._waiting
        self._answered_at = self._now()
        for i, value in enumerate(values):
            fut = waiting.popleft()
            if fut.cancelled():
                continue
            if failures and i in failures:
                fut.set_exception(self._error(failures[i]))
            else:
                fut.set_result(value)

    def _error(self, failure: Failure) -> Exception:
        try:
            return self._map_failure(failure)
        except Exception:  # never leave the answers out of step with the futures
            return StoreError(f"the job store at {self._name} failed: {failure[1]}: {failure[2]}")

    async def wait_gone(self) -> None:
        """Until the connection to the server process has ended (stopped, or the process died)."""
        await self._gone.wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._gone.set()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._closed:
            return
        self._accepting = False
        self._lost = f"the SQLite server process for {self._name} stopped unexpectedly"
        for futures, error in ((self._waiting, AnswerLost), (self._futures, StoreUnavailable)):
            for fut in futures:  # sent (committed, or not) and not yet sent (surely not); one error each (its
                if not fut.done():  # traceback is its caller's)
                    fut.set_exception(error(self._lost))
        self._waiting.clear()
        self._ops, self._futures = [], []
        if self._control is not None and not self._control.done():
            self._control.set_exception(error)
