"""What a failure does to a job, one rule each, for every mode (local heap, claims, recovery):
how an error reads on the job, how often a job runs again, and the dependency-failed message.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable

from vibe_jobs.errors import DependencyFailed, InvalidTransition, JobError, StaleWrite
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.results import described
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.states import JobStatus

MAX_ERROR_CHARS = 1000
Hide = Callable[[str], str]  # what hides a job's secrets in a text (`redact.secret_hider`); `str`: nothing


def error_text(exc: BaseException, hide: Hide = str) -> str:
    """`ErrorType: message` (the type alone when the message is empty) on one line of at most
    MAX_ERROR_CHARS, as a failed job shows it (a multi-line message is joined; tracebacks go to the log). An
    exception whose `__str__` raises reads `Type: <Type: str() failed>`. `hide` (the job's
    `redact.secret_hider`) is applied to the message as raised, before it is joined and cut."""
    message = cut(" ".join(hide(described(exc, str)).split()))
    return f"{type(exc).__name__}: {message}" if message or isinstance(exc, JobError) else type(exc).__name__


def logged_traceback(exc: BaseException, hide: Hide = str) -> str:
    """`exc`'s traceback as the log shows it: each part (a frame, an exception's message) cut as `error_text`
    cuts a message, so a huge message costs the log no more than it costs the job; `hide` as for `error_text`."""
    parts = traceback.TracebackException.from_exception(exc).format()
    return "\n".join(cut(hide(part).rstrip("\n")) for part in parts)


def cut(text: str) -> str:
    """`text`, or its first MAX_ERROR_CHARS characters marked ` [cut]`."""
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " [cut]"


def retry_policy(spec: JobToolSpec, default: RetryPolicy) -> RetryPolicy:
    """The tool's own policy, else the server's."""
    return spec.retry or default


def retry_limit(rec: JobRecord, spec: JobToolSpec, default: RetryPolicy) -> int:
    """How many times a job may run again after it failed or was interrupted (the one limit).

    The job's own `maxRetries` wins, then the tool's `max_retries`, then its retry policy's. A tool
    that did not opt in to being run again (`retry_safe`, or a policy of its own) and named no limit
    gets none: re-running work that may have side effects is the tool author's call, not ours.
    """
    meta = rec.task.metadata if rec.task else None
    if meta is not None and meta.max_retries is not None:
        return meta.max_retries
    if spec.max_retries is not None:
        return spec.max_retries
    return retry_policy(spec, default).max_retries if spec.retry_safe or spec.retry is not None else 0


def dependency_failed(job_id: str, dep: str, status: JobStatus | None) -> DependencyFailed:
    """The error of a job that will never run because its dependency `dep` did not complete."""
    what = status.value if status is not None else "no longer exists"
    return DependencyFailed(f"dependency '{dep}' {what}; this job did not run", job_id=job_id)


async def fail_dependent(manager: JobManager, job_id: str, dep: str, status: JobStatus | None) -> None:
    """Fail a pending job whose dependency `dep` ended `status` (None: deleted); it never ran."""
    text = error_text(dependency_failed(job_id, dep, status))
    with contextlib.suppress(InvalidTransition, StaleWrite):  # cancelled or finished meanwhile
        await manager.fail_job(job_id, text, extra={"current_stage": "dependency_failed"})
