"""A stdio upstream's process: started so that it dies with the proxy, and its process group.

The proxy stops its upstreams as the MCP specification asks (stdin closed, a grace period, SIGTERM, SIGKILL),
but only while it lives. The client that started the proxy follows the same steps with the proxy, in its own
time: closing the proxy's stdin, it kills the proxy after the same grace, before the proxy is done with an
upstream that ignores its stdin closing. The upstream runs in a process group of its own (so that it can be
stopped as a whole), so the kill of the proxy's group missed it, and it ran on for good, owned by nobody.

Two answers, on Linux:
- the upstream starts through `launcher.py`, which asks the kernel to SIGKILL it when the proxy dies
  (`PR_SET_PDEATHSIG`), then becomes the upstream's command: a kill -9 or an out-of-memory kill of the proxy
  takes the upstream with it. Only the process the proxy starts: a server behind a wrapper that does not `exec`
  it (a shell script, `npx`, `uvx`) is the wrapper's child, and the kernel does not pass the request on;
- once the proxy is stopping, a SIGTERM (the client's next step) kills every upstream's whole group at once,
  wrappers' children included, before the proxy ends (`kill_groups_on_sigterm`).
Elsewhere the upstream starts as `mcp.stdio_client` starts it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

import anyio
from anyio.abc import Process
from mcp import StdioServerParameters

from vibe_jobs.logs import get_logger
from vibe_jobs.server import sdk

log = get_logger("vibe_jobs.server.proxy")

LAUNCHER = Path(__file__).with_name("launcher.py")
TETHERED = sys.platform.startswith("linux")
_groups: set[int] = set()  # the process groups of the upstreams running now (a group's id is its leader's pid)


async def spawn(params: StdioServerParameters, errlog: TextIO) -> Process:
    """Start the stdio server of `params` in a process group of its own, tied to this process (on Linux).

    A command that cannot run raises what starting it directly would (FileNotFoundError, PermissionError,
    OSError: exec format error), so the proxy says "cannot start" with the reason."""
    if not TETHERED or not sys.executable:  # (an embedded interpreter may not know its own executable)
        process = await sdk.spawn_stdio_server(params, errlog)
    else:
        process = await _launch(params, errlog)
    _groups.add(process.pid)
    return process


async def _launch(params: StdioServerParameters, errlog: TextIO) -> Process:
    read_fd, write_fd = os.pipe()
    try:
        argv = [sys.executable, "-I", "-S", str(LAUNCHER), str(os.getpid()), str(write_fd), params.command]
        process = await anyio.open_process(
            [*argv, *params.args],
            env=sdk.stdio_environment(params),
            stderr=errlog,
            cwd=params.cwd,
            start_new_session=True,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    try:
        failed = await anyio.to_thread.run_sync(_read_to_end, read_fd)  # the end comes with the exec
    finally:
        os.close(read_fd)
    if failed:
        await sdk.stop_stdio_server(process)  # it has exited (127): reaped and its pipes closed
        code = int(failed)
        raise OSError(code, os.strerror(code), params.command)  # FileNotFoundError for ENOENT, and so on
    return process


def _read_to_end(fd: int) -> bytes:
    said = b""
    while chunk := os.read(fd, 64):
        said += chunk
    return said


def release(process: Process) -> None:
    """The upstream is stopped: its group is no longer one of ours."""
    _groups.discard(process.pid)


def group_alive(process: Process) -> bool:
    """Whether anything is left in the process group `process` led (its children, even after it ended)."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member we may not signal is a member still
    return True


def kill_group(process: Process) -> None:
    """SIGKILL what is left of the process group `process` led; nothing when the group is gone."""
    _kill(process.pid)


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_groups_on_sigterm() -> None:
    """From now on (the proxy is stopping) a SIGTERM kills every upstream's group at once, then ends this process
    as a SIGTERM would have. Nothing outside the main thread (Python's signal handlers live there)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        for pgid in list(_groups):
            _kill(pgid)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)
