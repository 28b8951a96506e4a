"""Job tools for the crash and multi-server tests (loaded with `--tools tests.e2e.crash_tools`).

Each execution appends one line `"<jobId> <attempt> <pid>\\n"` to the file named by the environment
variable `VIBE_JOBS_TEST_EXEC_LOG` as the work starts, so a test can count how often each job ran
and in which server process. The line is one `write` on an O_APPEND descriptor: whole even when the
process is killed right after it.
"""

from __future__ import annotations

import os

import anyio

from tests.e2e.exec_log import append_line
from vibe_jobs import JobContext, job_tool

EXEC_LOG_ENV = "VIBE_JOBS_TEST_EXEC_LOG"
SAFE_RETRIES = 3


def append_exec_log(line: str) -> None:
    """One line to the execution log named by VIBE_JOBS_TEST_EXEC_LOG (one write: safe across processes)."""
    append_line(EXEC_LOG_ENV, line)


def log_execution(job: JobContext) -> None:
    append_exec_log(f"{job.job_id} {job.attempt} {os.getpid()}")


def _result(tool: str, tag: str, seconds: float, job: JobContext) -> dict[str, object]:
    # Unicode, a float that does not round-trip through short decimals, nesting, nulls and an
    # empty string: a result that only survives a restart intact if it is stored byte for byte.
    return {
        "tool": tool,
        "tag": tag,
        "seconds": seconds,
        "attempt": job.attempt,
        "third": 1 / 3,
        "text": "naïve café — ✓ 日本語 \U0001f680",
        "nested": {"list": [1, 2.5, None, True, "", {"deep": ["x" * 40]}], "empty": {}},
    }


async def _work(tool: str, tag: str, seconds: float, retry_seconds: float | None, job: JobContext) -> dict[str, object]:
    log_execution(job)
    took = seconds if job.attempt <= 1 or retry_seconds is None else retry_seconds
    await anyio.sleep(took)
    return _result(tool, tag, took, job)


@job_tool(
    description="Sleep (retry_seconds on later attempts); safe to re-run", retry_safe=True, max_retries=SAFE_RETRIES
)
async def slow_safe(
    seconds: float, job: JobContext, tag: str = "", retry_seconds: float | None = None
) -> dict[str, object]:
    return await _work("slow_safe", tag, seconds, retry_seconds, job)


@job_tool(description="Sleep; NOT safe to re-run (an interrupted run fails)")
async def slow_unsafe(seconds: float, job: JobContext, tag: str = "") -> dict[str, object]:
    return await _work("slow_unsafe", tag, seconds, None, job)
