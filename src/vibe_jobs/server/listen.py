"""Serving HTTP: uvicorn, with deadlines on reading a request's headers and its body.

uvicorn (h11) times out idle keep-alive connections only after a response; a client that connects and
sends its headers a byte at a time (slowloris), or nothing at all, holds a connection and its memory
forever, and so does one that sends a body it never finishes. `HeaderDeadline` closes a connection whose
request headers are not complete `header_timeout` seconds after its first byte (or after the connection
opened), and one whose request body is not complete `BODY_TIMEOUT_FACTOR` times that after its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from vibe_jobs.errors import ConfigError
from vibe_jobs.logs import STDERR, get_logger, uvicorn_log_config
from vibe_jobs.server.accepting import Listener, quiet_accept_errors
from vibe_jobs.server.stopping import STOP_SIGNALS

log = get_logger("vibe_jobs.server.listen")


BODY_TIMEOUT_FACTOR = 3  # a body (up to the 4 MiB a request may carry) may take 3x the headers' time: 30 s


class HeaderDeadline(H11Protocol):
    """h11 with a deadline on each request's headers, and on its body once the headers are in."""

    header_timeout = 10.0  # set per server by `serve_http`
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # the headers are in: the request runs
        self._watch_body()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._watch_body(ended=True)
        super().connection_lost(exc)

    def _body_pending(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.response_complete

    def _watch_body(self, ended: bool = False) -> None:
        """A body on its way has a deadline; a complete one (or an answered request) has none."""
        if not ended and self._body_pending():
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.header_timeout * BODY_TIMEOUT_FACTOR, self._body_expired)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        self._body_timer = None
        self._close_if(self._body_pending(), "http.body_timeout", self.header_timeout * BODY_TIMEOUT_FACTOR)

    def _close_if(self, late: bool, event: str, seconds: float) -> None:
        """Close the connection when what it waited for is still `late` after its deadline."""
        if late and not self.transport.is_closing():
            log.warning(event, client=str(self.client), seconds=seconds)
            self.transport.close()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        self._close_if(self._between_requests(), "http.header_timeout", self.header_timeout)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`, or ConfigError naming the address and why (in use, no such address):
    bound before anything starts, so a taken port is one clear line. It listens when it is served
    (`serve_http`), so an open port still means a server about to answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on connections of a socket that says so (an accepted one takes
    # the listener's), and without it a JSON answer's body waited for the ACK of its headers (delayed: ~40 ms a call)
    sock = Listener(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # accepting.py
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from None
    return sock


def listen(sock: socket.socket) -> None:
    """Listen on a socket from `bind`, or ConfigError as `bind`'s. Two servers started together on one port
    can both bind it (SO_REUSEADDR binds a port nobody listens on yet): the one that listens second learns
    here that it lost, before uvicorn would (with a traceback)."""
    try:
        sock.listen(BACKLOG)
    except OSError as exc:
        host, port = sock.getsockname()[:2]
        raise _cannot_listen(host, port, exc) from None


BACKLOG = 2048  # uvicorn's own


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM as it does, without raising the signal again once it has
    shut down: that re-raise met SIGTERM's default action, which killed the process before the job manager
    stopped (exit -15: no lease released, no learned durations saved, no `server.stopped`), and SIGINT's
    KeyboardInterrupt, which cut the manager's stop short (exit 130). The caller's own stop follows instead,
    as over stdio; a second signal during it acts as the signal does (SIGTERM kills)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)  # gaierror: < 0
    return ConfigError(f"cannot listen on {host}:{port}: {why}")


RESERVED_FILES = 256  # open files kept for the store, jobs' pipes and files, logs: never taken by connections


def open_files_limit() -> int:
    """This process's limit on open files, its soft limit raised to the hard one first (each connection takes
    one: with the usual soft 1,024 a few hundred idle clients took the rest, and jobs failed to open files)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return limit if limit != resource.RLIM_INFINITY else 1 << 20


async def serve_http(
    app: ASGIApp, sock: socket.socket, *, log_level: str, header_timeout: float, announce: str | None = None
) -> None:
    """Serve `app` on the bound `sock` until cancelled or SIGINT/SIGTERM (then it returns, and the caller
    stops); `announce` is printed to stderr once it listens."""
    protocol: Any = type("HeaderDeadlineProtocol", (HeaderDeadline,), {"header_timeout": header_timeout})
    connections = max(64, open_files_limit() - RESERVED_FILES)  # past it: 503, not EMFILE in a job
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=uvicorn_log_config(connections),
        http=protocol,
        timeout_keep_alive=5,
        limit_concurrency=connections,
    )
    listen(sock)
    quiet_accept_errors(asyncio.get_running_loop())
    if announce is not None:
        STDERR.write(f"{announce}\n")  # stderr, never stdout; a full log file drops it (logs.py)
        STDERR.flush()
    server = _Server(config)
    try:
        await server.serve(sockets=[sock])
    finally:  # cancelled (a stop): uvicorn leaves its listener on the event loop, and the socket closes next; a
        for listener in server.servers:  # later server's socket of that file number was never accepted from
            listener.close()
