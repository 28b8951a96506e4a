"""Accepting connections when the process is out of open files (RLIMIT_NOFILE) or memory for sockets.

asyncio's accept loop (`_accept_connection`, CPython 3.11-3.13) meets EMFILE by logging it with a traceback,
pausing the listener for a second and retrying: but it does not stop its batch, so it tries again up to the
backlog (2,048) times, logging each and queueing 2,048 retries, which do the same a second later. Measured
under `RLIMIT_NOFILE` 64 with 300 idle clients: 65,000 log lines in 17 s, the loop at 44 % CPU, health
checks timing out; and the retries left queued fired after the listener closed (7,000 tracebacks at exit).

`Listener.accept` ends the batch after the first such error (the next call says "nothing to accept"), so
asyncio pauses the listener once and retries a second later, while the clients wait in the backlog; the
loop's exception handler (`quiet_accept_errors`) keeps asyncio's own report of it out of the log, which
names the limit once when it is reached (`http.out_of_files`) and once when connections are accepted again.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import time
from typing import Any

from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.server.accepting")

SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
REPEAT_AFTER = 60.0  # seconds: the limit is named again at most this often
_ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message for SHORT_OF on accept


class Listener(socket.socket):
    """A listening socket whose accept ends asyncio's accept batch after running short of files or memory."""

    _batch_ended = False
    short_since: float | None = None  # when accepting began to fail (monotonic), None while it works
    _warned_at = -REPEAT_AFTER  # when the log last named the limit (monotonic)
    _short_last = -2 * REPEAT_AFTER  # when accepting last failed for want of files (monotonic)
    _told = False  # the log named the limit and has not said that accepting works again

    def accept(self) -> tuple[socket.socket, Any]:
        if self._batch_ended:
            self._batch_ended = False
            raise BlockingIOError(errno.EAGAIN, "the accept batch ended: out of files")
        try:
            accepted = super().accept()
        except OSError as exc:
            if exc.errno in SHORT_OF:
                self._batch_ended = True
                self._short(exc)
            raise
        if self.short_since is not None:
            if self._told:  # once after each warning, however often accepting comes and goes meanwhile
                log.info("http.accepting_again", after_seconds=round(time.monotonic() - self.short_since, 1))
                self._told = False
            self.short_since = None
        return accepted

    def limit_reached(self) -> str | None:
        """Health's words while accepting fails for want of files, and for a minute after (`REPEAT_AFTER`)."""
        if time.monotonic() - self._short_last > REPEAT_AFTER:
            return None
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return f"new HTTP connections waited: the server reached its limit of open files (RLIMIT_NOFILE {limit})"

    def _short(self, exc: OSError) -> None:
        now = self._short_last = time.monotonic()
        if self.short_since is None:
            self.short_since = now
        if now - self._warned_at >= REPEAT_AFTER:  # a listener that comes and goes at the limit: once a minute
            self._warned_at, self._told = now, True
            log.warning(
                "http.out_of_files",
                error=exc.strerror,
                open_files_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                effect="new connections wait in the backlog; accepting again every second",
            )


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Keep asyncio's report of a `Listener`'s accept errors (logged by the listener, once) and of its retry
    after it closed out of the log; everything else goes to the handler the loop had."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _reported(context):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _reported(context: dict[str, Any]) -> bool:
    sock = context.get("socket")
    if context.get("message") == _ACCEPT_ERROR and sock is not None:
        return True  # asyncio's TransportSocket of a listener: the Listener logged it
    callback = getattr(context.get("handle"), "_callback", None)  # a retry queued before the listener closed
    return getattr(callback, "__name__", "") == "_start_serving" and isinstance(context.get("exception"), ValueError)
