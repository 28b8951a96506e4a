"""A step of the server's clock (NTP, a VM resumed) against the real `vibe-jobs serve` and the real MCP client. The
server's `time.time` is shifted by a sitecustomize module on its PYTHONPATH (the time shim): each SIGUSR1 steps it
by VJ_TEST_CLOCK_STEP seconds; its monotonic clock is left alone, as a step leaves it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import BASE_ENV, http_client_for, start_http
from tests.e2e.test_jobs_e2e import read, start

pytestmark = pytest.mark.timeout(90)

STEPPED_CLOCK = """
import os, signal, time

_wall, _shift = time.time, [0.0]


def _step(signum, frame):
    _shift[0] += float(os.environ["VJ_TEST_CLOCK_STEP"])


signal.signal(signal.SIGUSR1, _step)
time.time = lambda: _wall() + _shift[0]
"""


async def test_reads_after_the_server_s_clock_went_back_an_hour_are_not_rate_limited(tmp_path: Path) -> None:
    """The next check set before the step lay an hour ahead of the server's clock after it: every read of the job
    was refused (`rateLimited`) and told to come back in an hour, for the hour."""
    (tmp_path / "sitecustomize.py").write_text(STEPPED_CLOCK)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{BASE_ENV['PYTHONPATH']}", "VJ_TEST_CLOCK_STEP": "-3600"}
    with start_http("streamable-http", env) as server:
        async with http_client_for(server, "legacy") as client:
            job_id = await start(client, "wait_forever", {})
            _, first = await read(client, job_id)
            assert not first["rateLimited"]
            os.kill(server.proc.pid, signal.SIGUSR1)
            with anyio.fail_after(30):
                while True:  # until the server's answers carry its stepped time (the signal is handled)
                    _, body = await read(client, job_id)
                    if body["timestamp"] < first["timestamp"] - 1_800_000:
                        break
            assert not body["rateLimited"], body
            wait = body["pollingRecommendation"]["nextCheckTime"] - body["timestamp"]
            assert 0 < wait <= 2000, body  # VIBE_JOBS_POLL_MAX_MS (BASE_ENV)
            await client.call_tool("cancel-job", {"jobId": job_id})
