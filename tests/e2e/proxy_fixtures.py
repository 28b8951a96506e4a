"""The real upstream servers (installed by scripts/upstreams.sh into .tools/upstreams) and the real
`vibe-jobs proxy` in front of them, driven by the real MCP client."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import INVALID_REQUEST, CallToolResult, ElicitResult, ErrorData, ListRootsResult

from tests.e2e.conftest import BASE_ENV, ROOT

TAP = [sys.executable, str(ROOT / "tests" / "e2e" / "upstream_tap.py")]
FAKE = [sys.executable, str(ROOT / "tests" / "e2e" / "proxy_upstream.py")]
FINAL = ("completed", "failed", "cancelled")


def upstream_command(which: str) -> list[str]:
    """The command of an installed upstream (installing it first); skipped, or failed when
    VIBE_JOBS_REQUIRE_UPSTREAMS=1 (.ci/run), if it cannot be installed here."""
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "upstreams.sh"), which], capture_output=True, text=True, timeout=600
    )
    if run.returncode != 0 or not run.stdout.strip():
        reason = f"scripts/upstreams.sh {which} failed: {run.stderr[-2000:]}"
        if os.environ.get("VIBE_JOBS_REQUIRE_UPSTREAMS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return shlex.split(run.stdout.strip())


@dataclass
class Tap:
    """What reached the upstream (through tests/e2e/upstream_tap.py), and its pids (one per start)."""

    path: Path

    def lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []

    def pids(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines() if line.startswith("pid ")]

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(line[2:]) for line in self.lines() if line.startswith("> ")]

    def kill_upstream(self) -> int:
        pid = self.pids()[-1]
        os.kill(pid, signal.SIGKILL)
        return pid


def proxy_args(upstream: list[str], tap: Tap | None, *options: str) -> list[str]:
    wrapped = [*TAP, str(tap.path), "--", *upstream] if tap is not None else upstream
    return ["-m", "vibe_jobs", "proxy", "--store", "memory://", *options, "--", *wrapped]


@asynccontextmanager
async def proxy_client(
    mode: str, args: list[str], extra_env: dict[str, str] | None = None, **callbacks: Any
) -> AsyncIterator[Client]:
    """The real MCP client on `python -m vibe_jobs <args>` over stdio (with the client `callbacks` given)."""
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **(extra_env or {})}
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=60, **callbacks
        ) as client:
            yield client


@asynccontextmanager
async def direct_client(upstream: list[str]) -> AsyncIterator[Client]:
    """The real MCP client on the upstream itself (what the proxy's answers are compared with), declaring what
    the proxy declares upstream (sampling, elicitation, roots: some servers list tools by them)."""
    params = StdioServerParameters(command=upstream[0], args=upstream[1:])
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog),
            mode="legacy",
            read_timeout_seconds=60,
            sampling_callback=_refuse,
            elicitation_callback=_decline,
            list_roots_callback=_no_roots,
        ) as client:
            yield client


async def _refuse(context: Any, params: Any) -> ErrorData:
    return ErrorData(code=INVALID_REQUEST, message="no sampling here")


async def _decline(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="decline")


async def _no_roots(context: Any) -> ListRootsResult:
    return ListRootsResult(roots=[])


async def own_tools() -> set[str]:
    """The tools vibe-jobs serves itself (control tools and the like): the proxy lists them beside the upstream's."""
    from vibe_jobs.server.jobserver import JobServer
    from vibe_jobs.settings import Settings

    mcp = JobServer(settings=Settings(store_url="memory://")).build()
    async with Client(mcp, mode="legacy") as client:
        return {tool.name for tool in (await client.list_tools()).tools}


def started(result: CallToolResult) -> str:
    assert not result.is_error, result.content
    assert result.structured_content is not None and result.structured_content["status"] == "pending"
    return str(result.structured_content["jobId"])


async def status(client: Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    read = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": wait})
    assert read.structured_content is not None, read.content
    return dict(read.structured_content)


async def until(client: Client, job_id: str, wanted: tuple[str, ...], seconds: float = 40) -> dict[str, Any]:
    """Poll the job (long-polls, so never rate-limited) until its status is one of `wanted`."""
    with anyio.fail_after(seconds):
        while True:
            msg = await status(client, job_id, wait=0.5 if "running" not in wanted else 0)
            if msg["status"] in wanted:
                return msg
            if "running" in wanted:
                await anyio.sleep(0.05)  # polling a condition under a deadline: the job's state in the proxy


def texts(result: dict[str, Any] | CallToolResult) -> list[str]:
    """The text of each content item (of a CallToolResult, or of its wire dict in a job's result)."""
    if isinstance(result, CallToolResult):
        return [str(getattr(c, "text", "")) for c in result.content]
    return [str(c.get("text", "")) for c in result["content"]]


@contextmanager
def temp_tap() -> Iterator[Tap]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Tap(Path(tmp) / "tap.log")


def wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)  # polling a file another process writes: there is no event to wait on
