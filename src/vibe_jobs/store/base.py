"""The JobStore protocol: stores persist, the manager owns state logic.

Every change goes through `update`, a compare-and-set: it applies only when the guards hold
(the job's `version`, the running `attempt`, the current status) and bumps `version`, so a stale
writer (a timed-out attempt, a dead worker) loses. Leases (`heartbeat`, `orphans`) let several
processes share one store and recover each other's jobs.

Records, one rule for every store: a record a store returns (from `get`, `update`, `query`,
`find_active`, `active`, `orphans`, or any method of its own) is the caller's to keep and never
changes under it, whatever later happens to the job; a change makes a new record. Callers never
change a record, nor the values in it, either: a store may hand the same record to other callers and
build the job's next version from it. A record passed to `insert` is the store's from then on.

Failures raise `StoreError`, of the subclass that names the condition (`vibe_jobs.errors`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus

# Fields an `update` may change (the store rejects anything else).
UPDATABLE = frozenset(
    {
        "status", "updated_at", "progress_message", "progress_percentage", "result", "current_stage",
        "sub_progress", "diagnostics", "detail_metadata", "owner", "attempt", "retry_count",
        "error_count", "run_after", "started_at", "finished_at", "cancel_requested", "cpu_seconds",
        "peak_memory_mb", "priority",
    }
)  # fmt: skip


class Guard:
    """Conditions an update needs; None means "any". (A plain slotted class: built on every write.)"""

    __slots__ = ("attempt", "statuses", "version")

    def __init__(
        self,
        version: int | None = None,
        attempt: int | None = None,
        statuses: Collection[JobStatus] | None = None,
    ) -> None:
        self.version, self.attempt, self.statuses = version, attempt, statuses

    def holds(self, rec: JobRecord) -> bool:
        return (
            (self.version is None or rec.version == self.version)
            and (self.attempt is None or rec.attempt == self.attempt)
            and (self.statuses is None or rec.status in self.statuses)
        )


NO_GUARD = Guard()


@dataclass(frozen=True, slots=True)
class JobQuery:
    status: JobStatus | None = None
    tool_name: str | None = None
    limit: int = 50
    before: tuple[int, str] | None = None  # (created_at, id) of the last job of the previous page


@runtime_checkable
class JobStore(Protocol):
    """Persistence for job records; records follow the rule in the module docstring."""

    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(self, job: JobRecord) -> None:
        """Store a new job; it is durable when this returns."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        """Apply `changes` and bump the version when `guard` holds; None when it does not (or no job)."""

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        """Record a counted read (does not bump the version)."""

    async def query(self, query: JobQuery) -> list[JobRecord]:
        """Jobs newest first (created_at, then id, descending)."""

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        """A pending or running job with this dedupe key."""

    async def active(self, owner: str | None = None) -> list[JobRecord]:
        """Pending and running jobs (of one owner when given), oldest first."""

    async def counts(self) -> dict[JobStatus, int]: ...

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        """Delete up to `limit` jobs that finished before `before`; return their ids."""

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        """Create or renew the lease of a process."""

    async def release(self, owner: str) -> None:
        """Drop a process's lease (clean shutdown)."""

    async def orphans(self, now: int) -> list[JobRecord]:
        """Active jobs whose owner holds no live lease at `now`."""
