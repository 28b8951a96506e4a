"""Fixtures that run the real `vibe-jobs serve` as a subprocess and connect the real MCP client."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client

from vibe_jobs.testing.ports import free_port as free_port  # the e2e tests take them from here
from vibe_jobs.testing.ports import stop as stop
from vibe_jobs.testing.ports import wait_for_port as wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
BASE_ENV = {
    "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",  # this checkout's code, also in a worktree
    "VIBE_JOBS_LOG_LEVEL": "warning",
    "VIBE_JOBS_POLL_BASE_MS": "1000",
    "VIBE_JOBS_POLL_MAX_MS": "2000",
    "VIBE_JOBS_MAX_PARAMS_BYTES": "20000",
    "JOB_MANAGER_MAX_CONCURRENT": "50",
    # a deprecation met by the server (ours or a library's: an SDK call we make that is going away) fails the test
    # that meets it, instead of a line on a stderr nobody reads
    "PYTHONWARNINGS": "error::DeprecationWarning,error::PendingDeprecationWarning",
}
MODES = ["legacy", "auto"]
ClientFactory = Callable[[], AbstractAsyncContextManager[Client]]


@dataclass
class HttpServer:
    transport: str
    port: int
    proc: subprocess.Popen[bytes]
    errlog: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'sse' if self.transport == 'sse' else 'mcp'}"


@contextmanager
def start_http(
    transport: str, extra_env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None
) -> Iterator[HttpServer]:
    """A `vibe-jobs serve` on `port` (a free one when not given: a restart passes its predecessor's)."""
    port = port or free_port()
    env = {**os.environ, **BASE_ENV, **(extra_env or {})}
    cmd = [*SERVER, "--transport", transport, "--port", str(port), *(args or [])]
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            wait_for_port(port, proc)
            yield HttpServer(transport, port, proc, errlog)
        finally:
            stop(proc)


def on_a_terminal(
    cmd: list[str], cwd: Path, env: Mapping[str, str], quiet: float = 30, stdout_too: bool = True
) -> tuple[int, bytes]:
    """Run `cmd` with stderr (and with `stdout_too` stdout; else stdout goes nowhere) on a pseudo-terminal until it
    closes it (or draws nothing for `quiet` seconds): its exit code and all it drew there."""
    main, child = pty.openpty()
    stdout = child if stdout_too else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=child)
    os.close(child)
    seen = b""
    while select.select([main], [], [], quiet)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return proc.wait(20), seen


def stdio_params(extra_env: dict[str, str] | None = None) -> StdioServerParameters:
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **(extra_env or {})}
    return StdioServerParameters(command=SERVER[0], args=SERVER[1:], env=env, cwd=str(ROOT))


@asynccontextmanager
async def stdio_client_for(mode: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    with tempfile.TemporaryFile("w+") as errlog:
        transport = stdio_client(stdio_params(extra_env), errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
            yield client


@asynccontextmanager
async def http_client_for(server: HttpServer, mode: str) -> AsyncIterator[Client]:
    target: Any = sse_client(server.url) if server.transport == "sse" else server.url
    async with Client(target, mode=mode, read_timeout_seconds=60) as client:
        yield client


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    with start_http("streamable-http") as server:
        yield server


@pytest.fixture(scope="session")
def sse_server() -> Iterator[HttpServer]:
    with start_http("sse") as server:
        yield server


@pytest.fixture(scope="module")
def everything() -> list[str]:
    """The command of the reference `@modelcontextprotocol/server-everything`, an upstream of the proxy tests."""
    from tests.e2e.proxy_fixtures import upstream_command  # it imports this module

    return upstream_command("everything")


@pytest.fixture(scope="module")
def time_server() -> list[str]:
    """The command of `mcp-server-time`, an upstream of the proxy tests."""
    from tests.e2e.proxy_fixtures import upstream_command

    return upstream_command("time")


@pytest.fixture(
    params=[(t, m) for t in ("stdio", "streamable-http", "sse") for m in MODES], ids=lambda p: f"{p[0]}-{p[1]}"
)
def connect(request: pytest.FixtureRequest) -> ClientFactory:
    """A factory of connected clients, over each transport in each protocol era."""
    transport, mode = request.param
    if transport == "stdio":
        return lambda: stdio_client_for(mode)
    server: HttpServer = request.getfixturevalue("http_server" if transport == "streamable-http" else "sse_server")
    return lambda: http_client_for(server, mode)
