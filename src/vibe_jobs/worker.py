"""Claiming work from a shared store (PostgreSQL): many servers and workers, one job table.

`ClaimScheduler` keeps the single-process scheduler's execution (time-outs, retries, cancellation,
metrics) but takes work by claiming it in the database (`FOR UPDATE SKIP LOCKED`, priority with
aging, dependencies and cluster-wide limits enforced in SQL) instead of from a local heap. Wake-ups
come over LISTEN/NOTIFY; a short poll covers notifications lost while reconnecting. State changes
seen over NOTIFY are republished on the local event bus, so a long-poll on one replica sees a job
that runs on another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import anyio

from vibe_jobs.context import JobContext
from vibe_jobs.errors import InvalidTransition, StaleWrite, StoreError
from vibe_jobs.events import STATUS_EVENTS, EventType, JobEvent
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord, Priority
from vibe_jobs.recovery import recover_orphans
from vibe_jobs.scheduler import RANK_PRIORITY, Scheduler, _needs, _Queued, _Run
from vibe_jobs.states import JobStatus

log = get_logger("vibe_jobs.worker")

POLL_SECONDS = 1.0  # claim again at least this often (notifications are wake-ups, not a log)


class ClaimStore(Protocol):
    """What a shared store offers on top of the JobStore protocol."""

    async def claim(
        self, owner: str, lease_ms: int, limits: Any, tools: Any, *, now: int | None = None
    ) -> JobRecord | None: ...

    async def renew(self, owner: str, job_ids: Any, expires_at: int) -> set[str]: ...

    async def listen(self, callback: Any, on_lost: Any = None) -> Any: ...

    def sweeper_lock(self) -> Any: ...

    async def dependency_blocked(self, limit: int = 1000) -> list[tuple[JobRecord, str, JobStatus | None]]: ...


def is_shared(store: object) -> bool:
    return all(hasattr(store, name) for name in ("claim", "renew", "listen", "dependency_blocked"))


class ClaimScheduler(Scheduler):
    """Runs jobs claimed from the shared store; `run_jobs=False` serves without running any."""

    def __init__(
        self,
        manager: JobManager,
        tools: Mapping[str, JobToolSpec],
        *,
        concurrency: int | None = None,
        run_jobs: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(manager, tools, **options)
        from vibe_jobs.store.postgres_sql import ClaimLimits

        self.shared: ClaimStore = manager.store  # type: ignore[assignment]
        self.concurrency = concurrency or manager.settings.max_concurrent
        self.run_jobs = run_jobs
        per_tool = {name: spec.max_concurrent for name, spec in tools.items()}
        self.limits = ClaimLimits.from_settings(manager.settings, per_tool)
        self.lease_ms = int(manager.settings.lease_seconds * 1000)
        self._claimed: dict[str, JobRecord] = {}
        self._next_renew = 0.0

    # -- the local queue is the database ---------------------------------------------------

    async def enqueue(self, rec: JobRecord) -> None:
        self._wake.set()

    def pump(self) -> None:
        self._wake.set()

    def on_finished(self, rec: JobRecord) -> None:
        self._wake.set()

    async def recover(self) -> int:
        adopted = await recover_orphans(self.m, self.tools, self.retry.max_retries, shared=True)
        if adopted:
            self._wake.set()
        return len(adopted)

    # -- claiming --------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Claim, renew leases, honour remote cancels and sweep, until the manager stops."""
        listener = await self._listen()
        try:
            while True:
                await self._round()
                with anyio.move_on_after(POLL_SECONDS):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await listener.close()

    async def _round(self) -> None:
        try:
            if self.run_jobs:
                await self._claim_available()
            await self._renew()
            await self._cancel_requested_elsewhere()
            await self._sweep()
        except StoreError as exc:  # the database restarts: try again on the next round
            log.warning("worker.round_failed", error=str(exc))

    async def _claim_available(self) -> None:
        names = list(self.tools)
        while len(self.running) + self.starting < self.concurrency:
            rec = await self.shared.claim(self.m.owner, self.lease_ms, self.limits, names, now=self.m.now())
            if rec is None:
                return
            self._launch(rec)

    def _launch(self, rec: JobRecord) -> None:
        entry = _Queued(
            rec.id, rec.tool_name, RANK_PRIORITY.get(rec.priority, Priority.MEDIUM), rec.created_at, _needs(rec)
        )
        self._claimed[rec.id] = rec
        self._take(entry.tool, entry.needs, +1)
        self.starting += 1
        self.m.task_group.start_soon(self._run, entry)

    async def _claim(self, entry: _Queued) -> _Run | None:
        rec = self._claimed.pop(entry.job_id)
        run = _Run(JobContext(self.m, rec.id, rec.attempt, rec.tool_name), entry.needs)
        run.ctx.cancel_scope = run.scope
        self.starting -= 1
        self.running[rec.id] = run
        self.max_running_seen = max(self.max_running_seen, len(self.running))
        log.debug("job.claimed", job_id=rec.id, tool=rec.tool_name, attempt=rec.attempt)
        return run

    async def _renew(self) -> None:
        now = anyio.current_time()
        if now < self._next_renew:
            return
        self._next_renew = now + self.m.settings.lease_seconds / 3
        await self.shared.renew(self.m.owner, list(self.running), self.m.now() + self.lease_ms)

    async def _sweep(self) -> None:
        """Fail pending jobs whose dependency failed, was cancelled or is gone (one sweeper at a time)."""
        async with self.shared.sweeper_lock() as held:
            if not held:
                return
            for rec, dep, status in await self.shared.dependency_blocked():
                why = status.value if status is not None else "no longer exists"
                with contextlib.suppress(InvalidTransition, StaleWrite):
                    await self.m.fail_job(rec.id, f"DependencyFailed: dependency '{dep}' {why}; this job did not run")

    # -- notifications ---------------------------------------------------------------------

    async def _listen(self) -> Any:
        return await self.shared.listen(self._changed, self._lost)

    def _lost(self) -> None:
        log.warning("worker.listener_lost")
        self._wake.set()

    def _changed(self, change: Any) -> None:
        self._wake.set()
        kind = STATUS_EVENTS.get(change.status, EventType.PROGRESS) if change.op == "update" else EventType.CREATED
        if self.m.bus.wants(change.job_id):
            event = JobEvent(kind, change.job_id, change.tool_name, change.status, 0, self.m.now())
            self.m.bus.publish(event)
