"""How the real server logs the outcomes of jobs that a user expects (a time-out), against a bug in a tool."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.raw_stdio import raw_stdio
from tests.e2e.test_hostile_input import until_status

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]


async def test_a_time_out_is_logged_in_one_line_naming_the_job_without_a_traceback(tmp_path: Path) -> None:
    """run-command's own time-out (`timeoutSeconds`) logged the run's whole traceback at warning (`job.raised`), as
    a bug in a tool is logged; a time-out is an outcome its caller set: one line naming the job and the time-out,
    no traceback, as for the job's own time-out (submit-job's `timeoutSeconds`), which was not logged at all."""
    env = {"VIBE_JOBS_ALLOWED_COMMANDS": "sleep", "VIBE_JOBS_ROOTS": str(tmp_path), "VIBE_JOBS_LOG_LEVEL": "info"}
    command = {"command": ["sleep", "30"]}
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(env=env, stderr=errlog) as server:
            own = await server.call("run-command", {**command, "timeoutSeconds": 0.5})
            jobs = await server.call("submit-job", {"tool": "run-command", "arguments": command, "timeoutSeconds": 1})
            ids = [answer["result"]["structuredContent"]["jobId"] for answer in (own, jobs)]
            for job_id in ids:
                await until_status(server, job_id, "failed")
        errlog.seek(0)
        log = errlog.read().decode()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    timed_out = {event["job_id"]: event for event in events if event["event"] == "job.timed_out"}
    assert sorted(timed_out) == sorted(ids), log[-3000:]
    assert "0.5 s time-out" in timed_out[ids[0]]["error"] and "1 s time-out" in timed_out[ids[1]]["error"], timed_out
    assert not [event for event in events if event["event"] == "job.raised"], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
