"""Schedules across a step of the server's clock (the time shim of test_clock_steps_e2e: each SIGUSR1 steps the
server's `time.time` by VJ_TEST_CLOCK_STEP seconds), as after a server was down: the real `vibe-jobs serve` and
the real MCP client, no sleeps (the test waits on the schedule's state)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import BASE_ENV, MODES, http_client_for, start_http
from tests.e2e.test_clock_steps_e2e import STEPPED_CLOCK
from tests.e2e.test_jobs_e2e import structured, texts

pytestmark = pytest.mark.timeout(90)


async def fired(client: Client, schedule_id: str) -> list[dict[str, Any]]:
    jobs = structured(await client.call_tool("list-jobs", {"toolName": "wait_forever", "limit": 500}))["jobs"]
    return [j for j in jobs if j.get("scheduleId") == schedule_id]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("misfire", ["run_once", "catch_up"])
async def test_overlap_skip_fires_one_job_for_the_ticks_missed_not_one_each_at_once(
    tmp_path: Path, mode: str, misfire: str
) -> None:
    """`overlap: skip` drops a tick while the job of the previous firing is pending or running. After downtime
    (here: the server's clock stepped an hour on, past the schedule's startAt), a one-second schedule fired the
    ticks its misfire rule picks (run_once: the latest late one and the one due now; catch_up: the latest
    maxCatchUp and that one) in one pass, all at once: 2 or 6 of its jobs ran side by side, what the overlap skip is
    there to prevent. The first fires; the rest, each due while that job is pending, are dropped (skipped)."""
    (tmp_path / "sitecustomize.py").write_text(STEPPED_CLOCK)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{BASE_ENV['PYTHONPATH']}", "VJ_TEST_CLOCK_STEP": "3600"}
    with start_http("streamable-http", env) as server:
        async with http_client_for(server, mode) as client:
            start = int(time.time() * 1000) + 600_000  # nothing fires before the step
            made = await client.call_tool("schedule-job", {
                "tool": "wait_forever", "arguments": {}, "everySeconds": 1, "startAt": start, "overlap": "skip",
                "misfire": misfire, "maxCatchUp": 5,
            })  # fmt: skip
            assert not made.is_error, texts(made)
            sid, first = structured(made)["scheduleId"], structured(made)["nextFireAt"]
            assert first == start
            os.kill(server.proc.pid, signal.SIGUSR1)
            with anyio.fail_after(30):
                while True:  # until the pass after the step moved the schedule on (its ticks fired by then)
                    shown = structured(await client.call_tool("list-schedules", {}))["schedules"][0]
                    if shown["nextFireAt"] > first + 3_000_000:
                        break
                    await anyio.sleep(0.05)  # bounded polling: the firing is the server's, at its next pass
            jobs = await fired(client, sid)
            for job in jobs:
                await client.call_tool("cancel-job", {"jobId": job["id"]})
    assert len(jobs) == 1, [j["tick"] for j in jobs]
    assert shown["skipped"] >= 1, shown  # the others: dropped for the one running (and passed over)
