"""The real `vibe-jobs serve` as the init of its processes: `docker run IMAGE vibe-jobs serve` without `--init`
makes the server PID 1 of the container, and every process a command leaves behind (`cmd &` in a script, a build
tool's helpers) becomes the server's child when its parent ends; a child subreaper (a supervisor's child) is in
the same place. Nothing waits for those: each stayed a zombie for the life of the container, and a container's
pid limit is finite.

The test makes the server a child subreaper (PR_SET_CHILD_SUBREAPER, then exec): the same adoption as PID 1,
without a PID namespace."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT
from tests.e2e.test_builtin_tools import finish
from tests.e2e.test_jobs_e2e import read, start, texts

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

AS_SUBREAPER = (
    "import ctypes, os, sys; ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0); "  # PR_SET_CHILD_SUBREAPER
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
# leaves a process behind that ends (with the run) after the command: an orphan, adopted by the server
LEAVES_ONE = 'sleep 0.2 & echo "server=$PPID"'
SERVER_PID = re.compile(r"server=(\d+)")


def zombie_children(pid: int) -> list[int]:
    """The zombies whose parent is `pid`."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


@asynccontextmanager
async def adopting_server(tmp_path: Path) -> AsyncIterator[Client]:
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, "VIBE_JOBS_ALLOWED_COMMANDS": "sh"}
    env["VIBE_JOBS_ROOTS"] = str(tmp_path)
    args = ["-c", AS_SUBREAPER, "-m", "vibe_jobs", "serve", "--store", "memory://"]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="auto", read_timeout_seconds=30) as client:
            yield client


async def no_zombies_of(server: int, seconds: float = 5.0) -> list[int]:
    """The zombie children of `server` left after `seconds` at most (none: at once)."""
    with anyio.move_on_after(seconds):
        while zombie_children(server):  # noqa: ASYNC110 - another process's children: nothing to wait on
            await anyio.sleep(0.05)
    return zombie_children(server)


async def test_a_server_that_adopts_orphans_reaps_those_its_commands_leave(tmp_path: Path) -> None:
    async with adopting_server(tmp_path) as client:
        outputs = []
        for _ in range(5):
            job_id = await start(client, "run-command", {"command": ["sh", "-c", LEAVES_ONE]})
            result, body = await finish(client, job_id)
            assert body["status"] == "completed", texts(result)
            outputs.append(body["result"]["structuredContent"]["stdoutTail"])
        server = int(SERVER_PID.search(outputs[0])[1])  # type: ignore[index]
        zombies = await no_zombies_of(server)
    assert zombies == [], f"{len(zombies)} zombies left with the server as their parent: {zombies}"


async def test_orphans_a_running_command_leaves_are_reaped_while_it_runs(tmp_path: Path) -> None:
    """A long command whose script leaves short processes behind (`(cmd &)`) piled zombies up until it ended."""
    script = '(sleep 0.05 &); (sleep 0.05 &); (sleep 0.05 &); echo "server=$PPID"; sleep 30'
    async with adopting_server(tmp_path) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        said = None
        with anyio.fail_after(15):
            while said is None:  # the progress message is the command's last line
                _, body = await read(client, job_id, waitSeconds=0.5)
                said = SERVER_PID.search(body.get("message") or "")
        server = int(said[1])
        zombies = await no_zombies_of(server)
        await client.call_tool("cancel-job", {"jobId": job_id})
    assert zombies == [], f"{len(zombies)} zombies left with the server as their parent: {zombies}"
