"""Recovery: take over the jobs of processes whose lease expired (a crash, a kill, a lost machine).

Pending jobs are queued again here. Running jobs are requeued when their tool is `retry_safe` and
retries remain (the attempt counts), otherwise they fail with "interrupted: ...". Jobs whose tool
is not registered here fail with a message naming the tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vibe_jobs.errors import InvalidTransition, StaleWrite
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.results import text_result
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import Guard

log = get_logger("vibe_jobs.engine.recovery")

INTERRUPTED = "interrupted: the server stopped while the job was running"


def plan_recovery(
    manager: JobManager, rec: JobRecord, tools: Mapping[str, JobToolSpec], default_max_retries: int
) -> dict[str, Any]:
    """The changes that adopt one orphaned job for this process."""
    now = manager.now()
    base: dict[str, Any] = {"owner": manager.owner, "updated_at": now}
    spec = tools.get(rec.tool_name)
    if spec is None:
        return {**base, **_failed(rec, now, f"the tool '{rec.tool_name}' is not registered on this server")}
    if rec.cancel_requested is not None:  # cancelled while its dead owner ran it: honour that
        text = f"Job cancelled: {rec.cancel_requested}"
        return {**base, "status": JobStatus.CANCELLED, "finished_at": now, "progress_message": text,
                "result": text_result(text, is_error=True)}  # fmt: skip
    if rec.status is JobStatus.PENDING:
        return base
    limit = _limit(rec, spec, default_max_retries)
    if spec.retry_safe and rec.retry_count < limit:
        note = f"requeued after an interruption (retry {rec.retry_count + 1}/{limit})"
        diags = [*(rec.diagnostics or ()), note][-100:]
        return {**base, "status": JobStatus.PENDING, "retry_count": rec.retry_count + 1,
                "progress_message": note, "diagnostics": diags}  # fmt: skip
    return {**base, **_failed(rec, now, INTERRUPTED)}


def _limit(rec: JobRecord, spec: JobToolSpec, default: int) -> int:
    meta = rec.task.metadata if rec.task else None
    if meta is not None and meta.max_retries is not None:
        return meta.max_retries
    return spec.max_retries if spec.max_retries is not None else default


def _failed(rec: JobRecord, now: int, message: str) -> dict[str, Any]:
    return {
        "status": JobStatus.FAILED, "finished_at": now, "progress_message": f"Job failed: {message}",
        "result": text_result(message, is_error=True),
        "diagnostics": [*(rec.diagnostics or ()), message][-100:],
    }  # fmt: skip


def _const(changes: dict[str, Any]) -> Callable[[JobRecord], dict[str, Any]]:
    return lambda _rec: changes


async def recover_orphans(
    manager: JobManager, tools: Mapping[str, JobToolSpec], default_max_retries: int, *, shared: bool = False
) -> list[JobRecord]:
    """Adopt every active job without a live owner; return the adopted records that are pending.

    `shared` (a cluster of workers on one database): jobs of tools this process does not have are
    left for a process that has them, instead of failing them.
    """
    adopted: list[JobRecord] = []
    for rec in await manager.store.orphans(manager.now()):
        if rec.owner == manager.owner:
            continue  # our own lease lapsed (a late heartbeat): these jobs are alive in this process
        if shared and rec.tool_name not in tools:
            continue
        changes = plan_recovery(manager, rec, tools, default_max_retries)
        try:
            new = await manager.mutate(rec.id, _const(changes), Guard(version=rec.version))
        except (InvalidTransition, StaleWrite):
            continue  # someone else adopted it first
        log.info("job.recovered", job_id=rec.id, was=rec.status.value, now=new.status.value)
        if new.status is JobStatus.PENDING:
            adopted.append(new)
    return adopted
