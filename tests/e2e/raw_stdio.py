"""A raw JSON-RPC driver of the real `vibe-jobs serve` over stdio: sends any bytes (what the MCP client
never would) and reads each answer line with a deadline."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.e2e.conftest import BASE_ENV, ROOT

PROTOCOL = "2025-11-25"
INIT = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}


class RawStdio:
    def __init__(self, proc: Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.out = proc, BufferedByteReceiveStream(proc.stdout)
        self.ids = itertools.count(1000)

    async def send(self, frame: bytes | dict[str, Any]) -> None:
        data = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
        assert self.proc.stdin is not None
        await self.proc.stdin.send(data + b"\n")

    async def answer(self, seconds: float = 10.0) -> dict[str, Any]:
        """The next line the server writes (failing after `seconds`): every line must be JSON-RPC."""
        with anyio.fail_after(seconds):
            line = await self.out.receive_until(b"\n", 64 * 1024 * 1024)
        message: dict[str, Any] = json.loads(line)
        assert message.get("jsonrpc") == "2.0", message
        return message

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its answer (skipping notifications)."""
        request_id = next(self.ids)
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        while True:
            message = await self.answer()
            if message.get("id") == request_id:
                return message

    async def stop(self, how: str) -> None:
        """Ask the server to stop: by "SIGTERM", or by "EOF" (stdin closed)."""
        if how == "SIGTERM":
            self.proc.send_signal(signal.SIGTERM)
        else:
            assert how == "EOF" and self.proc.stdin is not None
            await self.proc.stdin.aclose()

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.request("tools/call", {"name": tool, "arguments": arguments})

    async def call_later(self, tool: str, arguments: dict[str, Any]) -> int:
        """Send a tools/call without reading its answer (a long-poll, during which the test answers the server's
        requests itself); its request id."""
        request_id = next(self.ids)
        params = {"name": tool, "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        return request_id


def server_command(store: str, tools: str) -> list[str]:
    return [sys.executable, "-m", "vibe_jobs", "serve", "--store", store, "--tools", tools]


@asynccontextmanager
async def raw_stdio(
    store: str = "memory://",
    tools: str = "tests.e2e.sample_tools",
    env: dict[str, str] | None = None,
    stderr: Any = None,
    capabilities: dict[str, Any] | None = None,
    args: tuple[str, ...] = (),
    launcher: tuple[str, ...] = (),
    protocol: str = PROTOCOL,
) -> AsyncIterator[RawStdio]:
    """The real server over stdio (`args` added to its command line), initialized (legacy handshake at
    `protocol`, declaring `capabilities`), driven frame by frame. `launcher`: a command that starts the server (its
    words then the server's command line), passing it its stdin and stdout: `proc` is the launcher's process then."""
    full_env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **(env or {})}
    command = [*launcher, *server_command(store, tools), *args]
    proc = await anyio.open_process(command, env=full_env, cwd=ROOT, stderr=stderr)
    try:
        client = RawStdio(proc)
        init = await client.request(
            "initialize", {**INIT, "protocolVersion": protocol, "capabilities": capabilities or {}}
        )
        assert init.get("result", {}).get("protocolVersion") == protocol, init
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield client
    finally:
        if proc.returncode is None:
            proc.kill()
        with anyio.move_on_after(10):
            await proc.aclose()  # its pipes too: one with unread answers left open warns when collected
