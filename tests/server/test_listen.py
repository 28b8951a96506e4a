"""The HTTP listener's own limits (the deadlines are tested against the real server in tests/e2e)."""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import sys

import pytest
from starlette.applications import Starlette

from vibe_jobs.errors import ConfigError
from vibe_jobs.server.listen import RESERVED_FILES, bind, open_files_limit, serve_http


def test_the_open_files_limit_is_raised_to_the_hard_one_and_connections_leave_files_for_jobs() -> None:
    """With the usual soft limit of 1,024, a few hundred idle connections took every file descriptor and a
    running job failed with "Too many open files"."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = 256 if hard == resource.RLIM_INFINITY else min(256, hard)

    def lowered() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    code = "from vibe_jobs.server.listen import open_files_limit; print(open_files_limit())"
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=lowered, capture_output=True, text=True, check=True, timeout=60
    )
    expected = hard if hard != resource.RLIM_INFINITY else low
    assert int(done.stdout) == expected
    assert open_files_limit() > RESERVED_FILES


async def test_a_server_that_lost_the_port_to_one_started_with_it_says_so_in_one_line() -> None:
    """Two servers started together on one port can both bind it (SO_REUSEADDR binds a port nobody listens on
    yet); the one that listens second used to end in uvicorn's traceback, exit status 1."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    rival = socket.socket()
    try:
        rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rival.bind(("127.0.0.1", port))  # the other server: bound as well, and listening first
        rival.listen()
        app = Starlette()
        with pytest.raises(ConfigError) as refused:
            await serve_http(app, sock, log_level="warning", header_timeout=5.0)
        assert str(refused.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    finally:
        rival.close()
        sock.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_the_listener_s_connections_send_small_writes_at_once(host: str) -> None:
    """uvicorn serves the socket `bind` made through asyncio, which turns Nagle's algorithm off (TCP_NODELAY) only
    on connections of a socket that names its protocol. `bind` named none, so a JSON answer's body (uvicorn writes
    the headers, then the body) waited for the client's delayed ACK of the headers: about 45 ms a call in the
    2026-07-28 era over streamable HTTP, against 2 ms (bench/MEASUREMENTS.md)."""
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    sock = bind(host, 0)
    sock.listen()
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Accepted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nodelay.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Accepted, sock=sock)
    try:
        _, writer = await asyncio.open_connection(host, sock.getsockname()[1])
        assert await asyncio.wait_for(nodelay, 10) != 0
        writer.close()
    finally:
        server.close()
