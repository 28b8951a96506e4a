"""What reaches the operator's terminal from the store (`vibe-jobs jobs list|show`, `schedules list`) when an
upstream of `vibe-jobs proxy` is hostile (tests/e2e/hostile_upstream.py --terminal): its tool's name and its
words are shown, escaped, and never drive the terminal or pass for a line of ours."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT
from tests.e2e.proxy_fixtures import proxy_args, started, until

pytestmark = [pytest.mark.timeout(120)]

HOSTILE = [sys.executable, str(ROOT / "tests" / "e2e" / "hostile_upstream.py"), "--terminal"]
TERMINAL = "ok\x1b]52;c;cHduZWQ=\x07\x1b[1A\x1b[2K"  # its tool's name: set the clipboard, up a line, erase it


def cli(url: str, *argv: str) -> str:
    command = [sys.executable, "-m", "vibe_jobs", *argv, "--store", url]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **BASE_ENV}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_an_upstream_s_tool_name_and_error_reach_the_operator_s_terminal_escaped(tmp_path: Path) -> None:
    """An upstream's tool name is its jobs' tool and its schedules': `jobs list` and `schedules list` printed it
    raw (the clipboard written, the line above erased), and the second line of a failed job's error stood in
    `jobs show` as a line of its own, `status:    completed` under the job's `status:    failed` (review
    helper-95)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(
        command=sys.executable, args=proxy_args(HOSTILE, None, "--store", url), env=env, cwd=str(ROOT)
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            job_id = started(await client.call_tool(TERMINAL, {}))
            assert (await until(client, job_id, ("completed", "failed")))["status"] == "failed"
            scheduled = await client.call_tool("schedule-job", {"tool": TERMINAL, "cron": "@daily"})
            assert not scheduled.is_error, scheduled.content
    for argv in (["jobs", "list"], ["jobs", "show", job_id], ["schedules", "list"]):
        out = cli(url, *argv)
        assert "\x1b" not in out and "\x07" not in out, (argv, out)
        assert "ok\\x1b]52;c;cHduZWQ=\\x07" in out, (argv, out)  # shown, escaped
    show = cli(url, "jobs", "show", job_id).splitlines()
    assert [line for line in show if line.startswith("status:")] == ["status:    failed"], show
    assert "message:   Job failed: boom\\nstatus:    completed" in show, show
