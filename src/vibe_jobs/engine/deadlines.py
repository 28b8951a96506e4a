"""Deadlines (`submit-job` `deadline`): a job not started by then fails as "deadline passed"; one still
running then is cancelled. The executor checks at the start of a run and cancels at the deadline; the
source that queued a pending job arms `watch` so that one nobody starts fails on time."""

from __future__ import annotations

from typing import Any

from vibe_jobs.errors import InvalidTransition, StaleWrite
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.results import text_result
from vibe_jobs.states import FAILED, PENDING

MESSAGE = "deadline passed"


def deadline_of(rec: JobRecord) -> int | None:
    return rec.task.deadline if rec.task is not None else None


async def expire_pending(m: JobManager, job_id: str) -> None:
    """Fail the job as "deadline passed" if it is still pending (started or finished: left alone)."""

    def plan(rec: JobRecord) -> dict[str, Any] | None:
        if rec.status is not PENDING:
            return None
        now = m.now()
        return {
            "status": FAILED,
            "updated_at": now,
            "finished_at": now,
            "progress_message": f"Job failed: {MESSAGE}",
            "result": text_result(f"Job failed: {MESSAGE} before it started", is_error=True),
        }

    try:
        await m.mutate(job_id, plan)
    except (InvalidTransition, StaleWrite):
        pass
