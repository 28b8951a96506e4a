"""How a stdio upstream is started (the proxy's death taking it along is tested end to end in
tests/e2e/test_proxy_features_e2e.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import StdioServerParameters

from vibe_jobs.server import sdk
from vibe_jobs.server.proxy import tether

pytestmark = pytest.mark.skipif(not tether.TETHERED, reason="PR_SET_PDEATHSIG is Linux's")


async def output_of(command: str, *args: str, cwd: str | None = None) -> str:
    process = await tether.spawn(StdioServerParameters(command=command, args=list(args), cwd=cwd), sys.stderr)
    try:
        assert process.stdout is not None
        return b"".join([chunk async for chunk in process.stdout]).decode()
    finally:
        await sdk.stop_stdio_server(process)
        tether.release(process)


async def test_a_command_that_cannot_run_is_refused_with_the_reason_a_direct_start_gives(tmp_path: Path) -> None:
    for command in ("no-such-upstream-command", "/no/such/server", "./server"):
        with pytest.raises(FileNotFoundError) as missing:
            await output_of(command, cwd=str(tmp_path))
        assert missing.value.filename == command
    script = tmp_path / "server"
    script.write_text("echo no interpreter line\n")
    with pytest.raises(PermissionError):  # not executable
        await output_of("./server", cwd=str(tmp_path))
    script.chmod(0o755)
    with pytest.raises(OSError) as refused:  # executable, but not a program
        await output_of("./server", cwd=str(tmp_path))
    assert refused.value.errno == errno.ENOEXEC and refused.value.filename == "./server"
    script.write_text('#!/bin/sh\necho "$@" from "$(pwd)"\n')
    assert await output_of("./server", "a b", cwd=str(tmp_path)) == f"a b from {tmp_path}\n"


async def test_the_command_runs_with_the_signal_dispositions_of_a_direct_start_and_is_tied_to_the_proxy() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec: a shell pipeline in
    the upstream wrote `Broken pipe` errors instead of ending quietly."""
    show = "grep -E '^SigIgn' /proc/self/status"
    direct = (await anyio.run_process(["sh", "-c", show])).stdout.decode()
    assert await output_of("sh", "-c", show) == direct
    death = "import ctypes; s = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(s)); print(s.value)"
    assert (await output_of(sys.executable, "-c", death)).strip() == "9"  # PR_GET_PDEATHSIG: SIGKILL


def test_a_group_is_alive_while_a_member_lives_and_killed_as_a_whole() -> None:
    leader = subprocess.Popen(["sh", "-c", "sleep 600 & wait"], start_new_session=True)
    try:
        process = _Pid(leader.pid)
        assert tether.group_alive(process)  # type: ignore[arg-type]
        tether.kill_group(process)  # type: ignore[arg-type]
        assert leader.wait(timeout=10) == -9
    finally:
        leader.kill()
    done = subprocess.Popen(["true"], start_new_session=True)
    done.wait(timeout=10)
    assert not tether.group_alive(_Pid(done.pid))  # type: ignore[arg-type]


class _Pid:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def test_the_launcher_imports_nothing_of_vibe_jobs() -> None:
    """It runs isolated (-I -S), outside the package."""
    text = tether.LAUNCHER.read_text()
    assert "vibe_jobs" not in text.replace('"""', "").split("from __future__")[1]
    assert os.path.isfile(tether.LAUNCHER)
