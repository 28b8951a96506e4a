"""Admission rules every job source applies: a job's resource needs and priority level, a queue
that is full, and a job too big for the resource limits ever to run (refused when called; failed when
stored by a process with larger limits and queued here: it would hold the head of the queue for ever)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from vibe_jobs.engine.failures import error_text
from vibe_jobs.errors import InvalidTransition, QueueFull, ResourceLimitExceeded, StaleWrite, UnknownTool
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord, ResourceLimits, ResourceRequirements
from vibe_jobs.store.base import Guard

Needs = tuple[float, float, float]  # (memoryMB, cpuWeight, diskSpaceMB)
NO_NEEDS: Needs = (0.0, 0.0, 0.0)
DEFAULT_REQUIREMENTS = ResourceRequirements()
NEED_NAMES = ("memoryMB", "cpuWeight", "diskSpaceMB")


def needs_of(rec: JobRecord) -> Needs:
    req = (rec.task.resource_requirements if rec.task else None) or DEFAULT_REQUIREMENTS
    return (req.memory_mb, req.cpu_weight, req.disk_space_mb)


def caps_of(limits: ResourceLimits) -> Needs:
    return (limits.max_memory_mb, limits.max_cpu_weight, limits.max_disk_space_mb)


def check_known(tool: str, tools: Mapping[str, Any]) -> None:
    """UnknownTool when this process has no job tool `tool`: a job created for it here (a library's
    `create_job` with a misspelt name) was stored and stayed pending for ever, with no word."""
    if tool not in tools:
        known = ", ".join(sorted(tools)) or "none"
        raise UnknownTool(f"no job tool named '{tool}' here; its job tools: {known}")


def check_room(pending: int, max_pending: int) -> None:
    if pending >= max_pending:
        raise QueueFull(f"the queue holds its maximum of {max_pending} pending jobs")


def misfit(rec: JobRecord, limits: ResourceLimits) -> ResourceLimitExceeded | None:
    """The refusal of a job that could never fit the resource limits, even alone; None when it fits."""
    for name, need, cap in zip(NEED_NAMES, needs_of(rec), caps_of(limits), strict=True):
        if need > cap:
            return ResourceLimitExceeded(f"the job needs {name}={need:g} but the limit is {cap:g}", resource=name)
    return None


def check_fits(rec: JobRecord, limits: ResourceLimits) -> None:
    """Refuse a job that could never fit the resource limits, even alone."""
    if (refusal := misfit(rec, limits)) is not None:
        raise refusal


async def fail_unfit(manager: JobManager, rec: JobRecord, refusal: ResourceLimitExceeded) -> None:
    """Fail a stored pending job that could never fit this process's limits (`misfit`) with the refusal a new
    call of it gets; only as read (claimed, cancelled or changed meanwhile: left alone)."""
    with contextlib.suppress(InvalidTransition, StaleWrite):
        await manager.fail_job(rec.id, error_text(refusal), guard=Guard(version=rec.version))
