"""Work that misbehaves, against the real `vibe-jobs serve` (tools: tests/e2e/hostile_work_tools.py): a tool
raising SystemExit or KeyboardInterrupt fails its job and the server lives (a real SIGINT still stops it);
cancel-job of work that ignores cancellation ends it after the grace period and frees its slot; a sync tool
past its time-out is not run again beside its thread; blocking sync jobs leave the server's threads free."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import http_client_for, start_http, stdio_params
from tests.e2e.test_jobs_e2e import read, start, structured, texts

pytestmark = pytest.mark.timeout(120)

TOOLS = ["--tools", "tests.e2e.hostile_work_tools"]
RAISED = {
    "custom": "CustomBase: custom base exception",
    "systemexit": "SystemExit: 3",
    "keyboard": "KeyboardInterrupt",
    "generatorexit": "GeneratorExit",
    "cancelled": "CancelledError",
}


@asynccontextmanager
async def serving(extra_env: dict[str, str] | None = None, store: str = "memory://") -> AsyncIterator[Client]:
    """The real server over stdio with the hostile tools (beside the sample ones); blocked tools let go at the end."""
    params = stdio_params(extra_env)
    args = [*params.args, *TOOLS]
    args[args.index("--store") + 1] = store
    params = StdioServerParameters(command=params.command, args=args, env=params.env, cwd=params.cwd)
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            try:
                yield client
            finally:
                with anyio.move_on_after(5, shield=True):
                    await client.call_tool("open-gate", {})


async def finished(client: Client, job_id: str, seconds: float = 20) -> tuple[str, dict[str, Any]]:
    """The job's status once it finished (or as it is after `seconds`), and the text of its answer."""
    result, body = await read(client, job_id, waitSeconds=seconds)
    return texts(result), body


async def running(client: Client, job_id: str) -> None:
    """Until the job runs: a read, then long-polls while it is pending (one on a running job would hold 1 s)."""
    with anyio.fail_after(20):
        status = (await read(client, job_id))[1]["status"]
        while status == "pending":
            status = (await read(client, job_id, waitSeconds=1))[1]["status"]


async def test_a_tool_raising_systemexit_or_keyboardinterrupt_fails_its_job_and_the_server_lives() -> None:
    async with serving() as client:
        other = await start(client, "wait_forever", {})  # an unrelated job, running all along
        await running(client, other)
        for tool in ("raise_base", "raise_base_sync"):
            for kind, text in RAISED.items():
                said, body = await finished(client, await start(client, tool, {"kind": kind}))
                assert body["status"] == "failed", (tool, kind, body["status"])
                assert text in said, (tool, kind, said)
        assert (await read(client, other))[1]["status"] == "running"
        cancelled = await client.call_tool("cancel-job", {"jobId": other})
    assert structured(cancelled)["status"] == "cancelled"


async def test_a_real_sigint_still_stops_a_server_whose_tool_raised_keyboardinterrupt() -> None:
    with start_http("streamable-http", args=TOOLS) as server:
        async with http_client_for(server, "legacy") as client:
            said, body = await finished(client, await start(client, "raise_base", {"kind": "keyboard"}))
            assert body["status"] == "failed" and "KeyboardInterrupt" in said
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGINT did not stop the server")


async def test_cancel_job_abandons_work_that_ignores_it_after_the_grace_and_frees_its_slot() -> None:
    async with serving({"JOB_MANAGER_MAX_CONCURRENT": "1"}) as client:
        job_id = await start(client, "swallow", {})
        await running(client, job_id)
        await client.call_tool("cancel-job", {"jobId": job_id, "reason": "user asked"})
        said, body = await finished(client, job_id)  # the grace is 5 s
        assert body["status"] == "cancelled", body["status"]
        quick = await start(client, "quick", {})  # the only slot is free, though the work goes on
        assert (await finished(client, quick))[1]["status"] == "completed"
    assert "user asked" in said
    assert "the work ignored cancellation for 5 s: abandoned" in body["details"]["diagnostics"]


async def test_a_sync_tool_past_its_time_out_is_not_retried_while_its_thread_still_runs() -> None:
    async with serving({"JOB_MANAGER_MAX_CONCURRENT": "1"}) as client:
        job_id = await start(client, "block_sync", {})  # retry_safe, time-out 1 s, blocks until the gate opens
        said, body = await finished(client, job_id)
        assert body["status"] == "failed", body["status"]
        quick = await start(client, "quick", {})
        assert (await read(client, quick, waitSeconds=1))[1]["status"] == "pending"  # the thread holds the slot
        await client.call_tool("open-gate", {})
        assert (await finished(client, quick))[1]["status"] == "completed"
        copies = structured(await client.call_tool("copies", {}))
    assert "the tool's thread cannot be stopped: it goes on until it returns" in said
    assert copies["most"] == 1  # never run again beside its own thread


async def test_blocking_sync_jobs_do_not_starve_the_servers_health_check(tmp_path: Path) -> None:
    """41 sync jobs blocking their threads (more than anyio's default pool of 40) within the concurrency limit:
    the SQLite store's file check, which needs a thread of the server's own, still answers."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resourceLimits": {"maxMemoryMB": 1e6, "maxCpuWeight": 1e6}}))
    env = {"JOB_MANAGER_MAX_CONCURRENT": "60", "VIBE_JOBS_CONFIG": str(config)}
    async with serving(env, f"sqlite:///{tmp_path / 'jobs.db'}") as client:
        ids = [await start(client, "block_sync_long", {}) for _ in range(41)]
        for job_id in ids:
            await running(client, job_id)
        health = structured(await client.call_tool("job-stats", {}))["health"]
        await client.call_tool("open-gate", {})
        done = [(await finished(client, job_id))[1]["status"] for job_id in ids]
    assert not [reason for reason in health["reasons"] if "did not answer" in reason], health
    assert done == ["completed"] * 41
