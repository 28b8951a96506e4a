"""What reaches the operator's terminal from the store (`vibe-jobs jobs list|show`, `schedules list`): what a job
or a tool wrote is shown escaped, and never drives the terminal or passes for a line of ours. The words come from
a hostile upstream of `vibe-jobs proxy` (tests/e2e/hostile_upstream.py --terminal); a tool's name from the store as
an older version let a library user write it (the proxy serves no upstream tool whose name holds a control
character, and a tool is now refused such a name where it is declared: tests/test_jobtool.py)."""

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
from vibe_jobs.arguments import ToolArguments
from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager
from vibe_jobs.states import JobStatus
from vibe_jobs.store import open_store

pytestmark = [pytest.mark.timeout(120)]

HOSTILE = [sys.executable, str(ROOT / "tests" / "e2e" / "hostile_upstream.py"), "--terminal"]
TERMINAL = "ok\x1b]52;c;cHduZWQ=\x07\x1b[1A\x1b[2K"  # its tool's name: set the clipboard, up a line, erase it


def cli(url: str, *argv: str) -> str:
    command = [sys.executable, "-m", "vibe_jobs", *argv, "--store", url]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **BASE_ENV}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def echo(text: str) -> str:
    return text


async def library_job_and_schedule(url: str) -> str:
    """A failed job and a schedule of a tool a library user named with escape sequences; the job's id."""
    store = open_store(url)
    await store.open()
    try:
        manager = JobManager(store)
        job_id = await manager.create_job(TERMINAL, {"text": "x"})
        await manager.update_job_status(job_id, JobStatus.RUNNING)
        await manager.fail_job(job_id, "no")
        spec = JobToolSpec(TERMINAL, echo, "echo", argument_rule=ToolArguments(TERMINAL, echo))  # the name unchecked
        schedules = Schedules(manager, {TERMINAL: spec})
        await schedules.create(parse_spec({"tool": TERMINAL, "arguments": {"text": "x"}, "cron": "@daily"}))
    finally:
        await store.close()
    return job_id


async def test_a_tool_s_name_and_a_job_s_error_reach_the_operator_s_terminal_escaped(tmp_path: Path) -> None:
    """A tool's name is its jobs' tool and its schedules': `jobs list` and `schedules list` printed it raw (the
    clipboard written, the line above erased), and the second line of a failed job's error stood in `jobs show` as
    a line of its own, `status:    completed` under the job's `status:    failed` (review helper-95)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    named = await library_job_and_schedule(url)
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(
        command=sys.executable, args=proxy_args(HOSTILE, None, "--store", url), env=env, cwd=str(ROOT)
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            job_id = started(await client.call_tool("forge", {}))
            assert (await until(client, job_id, ("completed", "failed")))["status"] == "failed"
    for argv in (["jobs", "list"], ["jobs", "show", job_id], ["jobs", "show", named], ["schedules", "list"]):
        out = cli(url, *argv)
        assert "\x1b" not in out and "\x07" not in out, (argv, out)
        assert "ok\\x1b]52;c;cHduZWQ=\\x07" in out, (argv, out)  # shown, escaped
    show = cli(url, "jobs", "show", job_id).splitlines()
    assert [line for line in show if line.startswith("status:")] == ["status:    failed"], show
    assert any(line.endswith("\\x1b[2K\\nstatus:    completed") for line in show), show
