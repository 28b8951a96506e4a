"""Job tools of the fault run (loaded with `--tools tests.faults.fault_tools`).

Every attempt draws a random token and appends two lines to the execution log named by
VIBE_JOBS_FAULTS_EXEC_LOG (one `write` each on an O_APPEND descriptor, so lines of many processes
never interleave and a line is whole even when the process is killed right after it):

    start <jobId> <attempt> <pid> <ns> <token>
    end <jobId> <attempt> <pid> <ns> <token> <how>      how: ok | error | cancelled

(wall-clock nanoseconds, comparable across the processes of one machine). The token also goes into
the attempt's one progress message and into its outcome (the result's structuredContent, or the
error text of a failure), always as `tok:<token>`, so the checker can tell which attempt wrote what the store holds.

`fj_safe` is retry_safe (requeued after an interruption, retried after a failure); `fj_unsafe` is
not (an interrupted run fails, and must never run twice).
"""

from __future__ import annotations

import os
import time

import anyio

from tests.e2e.exec_log import append_line
from vibe_jobs import JobContext, job_tool
from vibe_jobs.retry import RetryPolicy

EXEC_LOG_ENV = "VIBE_JOBS_FAULTS_EXEC_LOG"
SAFE_RETRIES = 3
# Retries soon: a run's retries fit within it (the default policy waits 1, 2, 4 ... s).
QUICK_RETRY = RetryPolicy(max_retries=SAFE_RETRIES, initial_delay_ms=100, max_delay_ms=1000)


class InjectedFailure(Exception):
    """The failure a job asked for (`fail`)."""


def _append(line: str) -> None:
    append_line(EXEC_LOG_ENV, line)


def _fails(fail: str, attempt: int) -> bool:
    return fail == "always" or (fail == "first" and attempt == 1)


async def _attempt(job: JobContext, seconds: float, fail: str, tag: str) -> dict[str, object]:
    token = os.urandom(8).hex()
    head = f"{job.job_id} {job.attempt} {os.getpid()}"
    _append(f"start {head} {time.time_ns()} {token}")
    how = "cancelled"  # what an exit through cancellation (cancel-job, a takeover, shutdown) leaves
    try:
        await job.progress(1, f"tok:{token}")
        await anyio.sleep(seconds)
        if _fails(fail, job.attempt):
            raise InjectedFailure(f"injected failure tok:{token}")
        how = "ok"
        return {"token": f"tok:{token}", "attempt": job.attempt, "pid": os.getpid(), "tag": tag}
    except Exception:
        how = "error"
        raise
    finally:
        _append(f"end {head} {time.time_ns()} {token} {how}")


@job_tool(description="Fault-run work, safe to re-run", retry_safe=True, max_retries=SAFE_RETRIES, retry=QUICK_RETRY)
async def fj_safe(seconds: float, job: JobContext, fail: str = "no", tag: str = "") -> dict[str, object]:
    return await _attempt(job, seconds, fail, tag)


@job_tool(description="Fault-run work, NOT safe to re-run")
async def fj_unsafe(seconds: float, job: JobContext, fail: str = "no", tag: str = "") -> dict[str, object]:
    return await _attempt(job, seconds, fail, tag)
