"""Admission rules every job source applies: a job's resource needs and priority level, a queue
that is full, and a job too big for the resource limits ever to run."""

from __future__ import annotations

from vibe_jobs.errors import QueueFull, ResourceLimitExceeded
from vibe_jobs.models import JobRecord, Priority, ResourceLimits, ResourceRequirements

Needs = tuple[float, float, float]  # (memoryMB, cpuWeight, diskSpaceMB)
NO_NEEDS: Needs = (0.0, 0.0, 0.0)
DEFAULT_REQUIREMENTS = ResourceRequirements()
NEED_NAMES = ("memoryMB", "cpuWeight", "diskSpaceMB")
_BY_RANK = {p.rank: p for p in Priority}


def needs_of(rec: JobRecord) -> Needs:
    req = (rec.task.resource_requirements if rec.task else None) or DEFAULT_REQUIREMENTS
    return (req.memory_mb, req.cpu_weight, req.disk_space_mb)


def caps_of(limits: ResourceLimits) -> Needs:
    return (limits.max_memory_mb, limits.max_cpu_weight, limits.max_disk_space_mb)


def priority_of(rank: int) -> Priority:
    """The priority level of a stored rank (an unknown rank counts as medium)."""
    return _BY_RANK.get(rank, Priority.MEDIUM)


def check_room(pending: int, max_pending: int) -> None:
    if pending >= max_pending:
        raise QueueFull(f"the queue holds its maximum of {max_pending} pending jobs")


def check_fits(rec: JobRecord, limits: ResourceLimits) -> None:
    """Refuse a job that could never fit the resource limits, even alone."""
    for name, need, cap in zip(NEED_NAMES, needs_of(rec), caps_of(limits), strict=True):
        if need > cap:
            raise ResourceLimitExceeded(f"the job needs {name}={need:g} but the limit is {cap:g}", resource=name)
