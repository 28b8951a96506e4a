"""The signals that stop a server or a worker, and what one more does while it stops.

SIGINT (Ctrl-C), SIGTERM (Docker, systemd, an MCP client out of patience) and SIGHUP (the terminal of a shell
user closed) each start a stop. A stop takes a while: a worker drains, and every running command gets SIGTERM
and a grace before SIGKILL. A stop signal that comes meanwhile (an MCP client closes stdin, then sends SIGTERM
2 s later; Ctrl-C pressed twice) hurries it: the drain ends, and every command is killed at once with all it
started; the stop then completes (exit 0). Before, that signal met its default action and killed the process
mid-stop, leaving what the commands had started running. One more signal after that ends the process as the
signal does, for a stop that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from vibe_jobs.logs import get_logger
from vibe_jobs.tools.command import hurry_commands

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
log = get_logger("vibe_jobs.server")


class StopSignals:
    """The handlers of the stop signals while a stop runs (`arm`), and the handlers they replaced."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._hurried = False

    def arm(self, *also: Callable[[], None]) -> None:
        """The stop has begun: a stop signal from now on hurries it (`also` runs then too, on the event loop);
        the next ends the process. Only on the main thread of an asyncio loop (where signals are handled)."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: the signals keep their handlers
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self._hurried:
                self.restore()
                signal.raise_signal(signum)
                return
            self._hurried = True
            loop.call_soon_threadsafe(self._hurry, signum, also)

        self._previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}

    def _hurry(self, signum: int, also: tuple[Callable[[], None], ...]) -> None:
        os.write(2, f"vibe-jobs: signal {signum} while stopping: ending the jobs' commands now\n".encode())
        log.warning("server.stop_hurried", signal=signum, why="a stop signal came while stopping")
        hurry_commands()
        for call in also:
            call()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """For a process's whole run: `arm()` it when the stop begins; the handlers it replaced are back at the end."""
    signals = StopSignals()
    try:
        yield signals
    finally:
        signals.restore()
