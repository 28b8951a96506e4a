"""TCP proxies between the workers and PostgreSQL, which the nemesis cuts and heals.

One proxy per worker slot, each listening on its own port on 127.0.0.1 and forwarding to the
database (127.0.0.1 only). `cut` resets every connection the proxy carries (an RST, as a broken
network path looks to the worker) and closes its listening socket, so new connections are refused
until `heal` opens it again on the same port. The proxies run on an event loop in a thread of their
own, so the forwarding never waits on the harness's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

HOST = "127.0.0.1"
CHUNK = 65536


class _Proxy:
    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST, self.port, reuse_address=True)

    async def cut(self) -> int:
        """Refuse new connections and reset the open ones; answers how many were reset."""
        if self.server is not None:
            self.server.close()
            self.server = None
        conns, self.conns = self.conns, set()
        for writer in conns:
            writer.transport.abort()
        return len(conns)

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            down_w.transport.abort()  # the database is down: the worker sees a reset, as it would directly
            return
        if self.server is None:  # cut while connecting
            up_w.transport.abort()
            down_w.transport.abort()
            return
        self.conns |= {down_w, up_w}
        try:
            await asyncio.gather(_pump(down_r, up_w), _pump(up_r, down_w))
        finally:
            self.conns -= {down_w, up_w}
            for w in (down_w, up_w):
                w.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, ConnectionError, RuntimeError):
        if not writer.transport.is_closing():
            writer.write_eof()


class Proxies:
    """The proxies and the thread that runs them; `cut(port)` / `heal(port)` from any thread."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._proxies: dict[int, _Proxy] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxies", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def add(self, port: int) -> None:
        proxy = _Proxy(port, self.target_port)
        self._call(proxy.open())
        self._proxies[port] = proxy

    def cut(self, port: int) -> int:
        return int(self._call(self._proxies[port].cut()))

    def heal(self, port: int) -> None:
        proxy = self._proxies[port]
        if proxy.server is None:
            self._call(proxy.open())

    def close(self) -> None:
        for proxy in self._proxies.values():
            with contextlib.suppress(Exception):
                self._call(proxy.cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
