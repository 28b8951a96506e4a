"""Job tools for the cluster tests (loaded with `--tools tests.e2e.cluster_tools`).

`timed` appends `"start <jobId> <attempt> <ns> <pid>"` when it starts and `"end <jobId> <attempt> <ns> <pid>"`
when it ends (wall-clock nanoseconds, comparable across processes on one machine) to the file named by
VIBE_JOBS_TEST_EXEC_LOG, each line one `write` on an O_APPEND descriptor. From those lines a test proves
that every job ran exactly once, how many ran at once cluster-wide, and that dependencies ended first.
"""

from __future__ import annotations

import os
import time

import anyio

from tests.e2e.crash_tools import append_exec_log
from vibe_jobs import JobContext, job_tool


def _record(kind: str, job: JobContext) -> None:
    append_exec_log(f"{kind} {job.job_id} {job.attempt} {time.time_ns()} {os.getpid()}")


@job_tool(description="Sleep `seconds`, recording start and end times", retry_safe=True, max_retries=3)
async def timed(seconds: float, job: JobContext, tag: str = "") -> dict[str, object]:
    _record("start", job)
    await anyio.sleep(seconds)
    _record("end", job)
    return {"tag": tag, "attempt": job.attempt, "pid": os.getpid()}


@job_tool(description="Report progress `steps` times, `step_seconds` apart; NOT safe to re-run")
async def stepping(steps: int, step_seconds: float, job: JobContext) -> dict[str, object]:
    _record("start", job)
    for i in range(steps):
        await anyio.sleep(step_seconds)
        await job.progress(100 * (i + 1) / steps, f"step {i + 1} of {steps}")
    _record("end", job)
    return {"attempt": job.attempt, "pid": os.getpid()}
