"""The signals that stop a server or a worker, and what one more does while it stops.

SIGINT (Ctrl-C), SIGTERM (Docker, systemd, an MCP client out of patience) and SIGHUP (the terminal of a shell
user closed) each start a stop. A stop takes a while: a worker drains, and every running command gets SIGTERM
and a grace before SIGKILL. A stop signal that comes meanwhile (an MCP client closes stdin, then sends SIGTERM
2 s later; Ctrl-C pressed twice) hurries it: the drain ends, and every command is killed at once with all it
started; the stop then completes (exit 0). Before, that signal met its default action and killed the process
mid-stop, leaving what the commands had started running. One more signal after that ends the process by the
signal's default action, for a stop that hangs. (A job that swallows its cancellation holds a stop for the
executor's grace period only: `engine/taskset.py`; a process that leaves such work behind ends with `exit_now`,
its exit handlers run first.)

One handler serves the whole run, from the first signal to the end of the stop: a signal between two phases
(the serving ended, the manager not stopping yet) is never left to its default action.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

import anyio

from vibe_jobs.logs import get_logger
from vibe_jobs.tools.command import hurry_commands

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
log = get_logger("vibe_jobs.server")


class StopSignals:
    """The stop signals' handler for one run: the first stops the serving (`until_signal`), one while stopping
    (after `arm`) hurries the stop, the next ends the process."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: anyio.CancelScope | None = None
        self._also: tuple[Callable[[], None], ...] = ()
        self.received: int | None = None  # the signal that started the stop
        self._stopping = self._hurried = False

    async def until_signal(self, run: Callable[[], Awaitable[Any]]) -> None:
        """Run `run()` until it returns or a stop signal comes."""
        with anyio.CancelScope() as self._serving:
            self._install()
            await run()

    def arm(self, *also: Callable[[], None]) -> None:
        """The stop has begun (the serving ended, or a client closed stdin, after which it sends SIGTERM when the
        server is not gone within 2 s): a stop signal from now on hurries it (`also` runs then too, on the loop)."""
        self._stopping, self._also = True, also

    def _install(self) -> None:
        """Only on the main thread of an asyncio loop (where Python handles signals)."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        with contextlib.suppress(RuntimeError):  # not asyncio: the signals keep their handlers
            self._loop = asyncio.get_running_loop()
            self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """In the main thread, between two bytecodes: what it does runs on the loop (`call_soon_threadsafe`)."""
        assert self._loop is not None
        if self._hurried:  # the default action: a KeyboardInterrupt might be caught by a job, or waited out
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            os._exit(128 + signum)  # still here: PID 1 (a container's), whom the kernel spares default actions
        elif self._stopping:
            self._hurried = True
            self._loop.call_soon_threadsafe(self._hurry, signum)
        else:
            self._stopping, self.received = True, signum
            self._loop.call_soon_threadsafe(self._stop, signum)

    def _stop(self, signum: int) -> None:
        print(f"vibe-jobs: stopping on signal {signum}", file=sys.stderr, flush=True)
        if self._serving is not None:
            self._serving.cancel()

    def _hurry(self, signum: int) -> None:
        print(f"vibe-jobs: signal {signum} while stopping: ending the jobs' commands now", file=sys.stderr, flush=True)
        log.warning("server.stop_hurried", signal=signum, why="a stop signal came while stopping")
        if self._serving is not None:  # stdin closed, the answers owed still awaited: awaited no more
            self._serving.cancel()
        hurry_commands()
        for call in self._also:
            call()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """For a process's run: serve with `until_signal`, `arm()` once the stop begins; the handlers replaced are
    back at the end."""
    signals = StopSignals()
    try:
        yield signals
    finally:
        signals.restore()


def exit_now(code: int, within: float) -> NoReturn:
    """End the process with `code` without waiting for its threads and tasks, once the interpreter's exit handlers
    have run (`atexit`: logging's shutdown, an OpenTelemetry tracer provider's, which exports the spans it batched,
    the program's own), as they would at a normal exit; `os._exit` alone skipped them. A handler that hangs (an
    exporter whose collector does not answer, one that waits for the work left behind) is cut short: the process
    ends `within` seconds on whatever the handlers did. Called from inside the event loop, the handlers run as
    after it (no loop running): one that runs a loop of its own (`asyncio.run`: an async client's last flush) met
    this one and failed ("cannot be called from a running event loop")."""
    _flush_std_streams()
    watchdog = threading.Timer(within, os._exit, (code,))
    watchdog.daemon = True
    watchdog.start()
    try:
        asyncio.events._set_running_loop(None)  # (the process ends below: the loop never runs again)
        atexit._run_exitfuncs()  # each run once, in the order a normal exit runs them; what one raises is printed
    finally:
        _flush_std_streams()
        os._exit(code)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
