"""The job state machine: one transition table and the one function that checks a move."""

from __future__ import annotations

from enum import StrEnum

from vibe_jobs.errors import InvalidTransition


class JobStatus(StrEnum):
    """Where a job is in its life."""  # the values are the wire's; the docstring is the schemas' description

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINAL


# The members as plain names, for per-job code: on Python 3.11 `JobStatus.RUNNING` goes through
# EnumType.__getattr__, a slow Python-level hook (gone in 3.12); see bench/MEASUREMENTS.md.
PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)

FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running -> pending is a retry or a requeue after a lost worker
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(job_id: str, current: JobStatus, target: JobStatus) -> JobStatus:
    """Return `target` when the move is allowed; raise `InvalidTransition` otherwise."""
    if target not in TRANSITIONS[current]:
        reason = "the job is finished" if current in FINAL else None
        raise InvalidTransition(job_id, current.value, target.value, reason)
    return target
