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
import math
from collections.abc import Mapping
from typing import Any, Protocol

import anyio

from vibe_jobs.engine.recovery import recover_orphans
from vibe_jobs.engine.scheduler import RANK_PRIORITY, Scheduler, _needs, _Queued, _Run
from vibe_jobs.errors import InvalidTransition, StaleWrite, StoreError
from vibe_jobs.events import STATUS_EVENTS, EventType, JobEvent
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import ClusterFigures, QueueView
from vibe_jobs.models import JobRecord, Priority
from vibe_jobs.states import JobStatus

log = get_logger("vibe_jobs.engine.claims")

POLL_SECONDS = 1.0  # claim again at least this often (notifications are wake-ups, not a log)
SWEEP_SECONDS = 1.0  # look for dependency-blocked jobs at least this often (and when a job fails)
# With a backlog (the last claim filled every free slot), a worker claims once a quarter of its slots is
# free or the first freed slot has waited CLAIM_LINGER_SECONDS: one claim per batch of finishes, not one
# per finish (limited claims queue on one cluster-wide lock). Without a backlog it claims at once.
CLAIM_BATCH_FRACTION = 4
CLAIM_LINGER_SECONDS = 0.005
PENDING_COUNT_SECONDS = 1.0  # count the shared queue at least this often when admitting jobs


class ClaimStore(Protocol):
    """What a shared store offers on top of the JobStore protocol."""

    async def claim_many(
        self, owner: str, lease_ms: int, limits: Any, tools: Any, k: int, *, now: int | None = None
    ) -> list[JobRecord]: ...

    async def renew_state(self, owner: str, job_ids: Any, expires_at: int) -> dict[str, str | None]: ...

    async def listen(self, callback: Any, on_lost: Any = None) -> Any: ...

    def sweeper_lock(self) -> Any: ...

    async def pending_by_priority(self) -> list[tuple[int, int, int]]: ...

    async def offer_tools(self, owner: str, tools: Any) -> None: ...

    async def head_fits(self, tools: Any, limits: Any, *, now: int | None = None) -> bool | None: ...

    async def unserved_tools(self, now: int) -> dict[str, int]: ...

    async def finished_figures(self, now: int) -> ClusterFigures: ...

    async def dependency_blocked(self, limit: int = 1000) -> list[tuple[JobRecord, str, JobStatus | None]]: ...


def is_shared(store: object) -> bool:
    return all(hasattr(store, name) for name in ("claim_many", "renew_state", "listen", "dependency_blocked"))


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
        from vibe_jobs.store.postgres.sql import ClaimLimits

        self.shared: ClaimStore = manager.store  # type: ignore[assignment]
        self.concurrency = concurrency or manager.settings.max_concurrent
        self.run_jobs = run_jobs
        per_tool = {name: spec.max_concurrent for name, spec in tools.items()}
        self.limits = ClaimLimits.from_settings(manager.settings, per_tool)
        self.lease_ms = manager.settings.lease_ms
        self._claimed: dict[str, JobRecord] = {}
        self._next_renew = 0.0
        self._next_sweep = 0.0
        self._listener: Any = None
        self._batch = max(1, self.concurrency // CLAIM_BATCH_FRACTION)
        self._backlog = False  # the last claim filled every slot it asked for
        self._linger_until: float | None = None
        self._pending_counted, self._submitted_since_count, self._counted_at = 0, 0, -math.inf
        self._look_at_head = True
        self._claiming = anyio.Lock()

    # -- the local queue is the database ---------------------------------------------------

    async def admit(self, rec: JobRecord) -> None:
        """`max_pending` bounds the shared queue (every server's pending jobs): counted in the database
        whenever the last count is over a second old or the queue is within 10 % of the limit, and
        estimated from that count plus this process's submissions in between otherwise."""
        self._check_fits(rec)
        self._check_room(await self._pending_estimate())
        self._submitted_since_count += 1

    async def _pending_estimate(self) -> int:
        now, limit = anyio.current_time(), self.m.settings.max_pending
        estimate = self._pending_counted + self._submitted_since_count
        if now - self._counted_at > PENDING_COUNT_SECONDS or estimate >= 0.9 * limit:
            rows = await self.shared.pending_by_priority()
            self._pending_counted, self._counted_at = sum(count for _, count, _ in rows), now
            self._submitted_since_count = 0
            estimate = self._pending_counted
        return estimate

    async def cluster_figures(self) -> ClusterFigures | None:
        """Per-tool outcomes and durations, throughput and error rate over every process's jobs."""
        return await self.shared.finished_figures(self.m.now())

    async def queue_view(self) -> QueueView:
        """The shared queue by priority, its oldest job and the tools no live process runs, as the database
        holds them now."""
        rows = await self.shared.pending_by_priority()
        depth = {RANK_PRIORITY.get(rank, Priority.MEDIUM).value: count for rank, count, _ in rows}
        unserved = await self.shared.unserved_tools(self.m.now()) if rows else {}
        if self.run_jobs:  # this process is alive whatever its lease says: its own tools are served
            unserved = {tool: n for tool, n in unserved.items() if tool not in self.tools}
        return QueueView(depth, min((oldest for _, _, oldest in rows), default=None), unserved)

    async def enqueue(self, rec: JobRecord) -> None:
        self._wake.set()

    def pump(self) -> None:
        self._wake.set()

    def on_finished(self, rec: JobRecord) -> None:
        self._wake.set()

    async def recover(self) -> int:
        # after each heartbeat (the manager calls this right after it): the lease names the tools run here
        await self.shared.offer_tools(self.m.owner, list(self.tools) if self.run_jobs else [])
        adopted = await recover_orphans(self.m, self.tools, self.retry.max_retries, shared=True)
        if adopted:
            self._wake.set()
        return len(adopted)

    # -- claiming --------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Claim, renew leases, honour remote cancels and sweep, until the manager stops."""
        try:
            while True:
                await self._round()
                # wake for the next renewal too: a job lease (VIBE_JOBS_LEASE_SECONDS) may be shorter than the poll
                now = anyio.current_time()
                wait = min(POLL_SECONDS, max(0.01, self._next_renew - now))
                if self._linger_until is not None:
                    wait = min(wait, max(0.0, self._linger_until - now))
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                if self._listener is not None:
                    await self._listener.close()

    async def _round(self) -> None:
        try:
            await self._keep_listening()
            if self.run_jobs:
                await self._claim_available()
            await self._renew()
            await self._sweep()
        except StoreError as exc:  # the database restarts: try again on the next round
            log.warning("worker.round_failed", error=str(exc))

    async def _keep_listening(self) -> None:
        """(Re)open the LISTEN session: at start, and after it was lost (a restart, a terminated session).
        Notifications sent meanwhile are lost, so the round that follows claims, renews and sweeps."""
        if self._listener is not None and self._listener.alive:
            return
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        self._listener = await self.shared.listen(self._changed, self._lost)
        self._next_renew = self._next_sweep = 0.0

    async def _claim_available(self) -> None:
        async with self._claiming:  # one claim round at a time: free slots are counted before the claim
            await self._claim_rounds()

    async def _claim_rounds(self) -> None:
        names = list(self.tools)
        if await self._reserving(names):
            return
        while (free := self.concurrency - len(self.running) - self.starting) > 0:
            if self._backlog and free < self._batch:
                now = anyio.current_time()
                if self._linger_until is None:
                    self._linger_until = now + CLAIM_LINGER_SECONDS
                if now < self._linger_until:
                    return  # `run_timers` wakes at `_linger_until`
            self._linger_until = None
            found = await self.shared.claim_many(
                self.m.owner, self.lease_ms, self.limits, names, free, now=self.m.now()
            )  # fmt: skip
            for rec in found:
                self._launch(rec)
            self._backlog = len(found) == free
            if not self._backlog:
                self._look_at_head = True  # a short claim: something may not have fitted
                return

    async def _reserving(self, names: list[str]) -> bool:
        """The reservation window across the cluster: once the head of the queue (the job a claim takes
        first) has not fitted the resource limits for `reservation_ms`, claim nothing behind it until
        running jobs have freed enough for it (small jobs backfill only within the window).
        Looked at only after a short claim or while the head is blocked (one query then)."""
        lim = self.limits
        caps = (lim.max_memory_mb, lim.max_cpu_weight, lim.max_disk_space_mb)
        if all(cap is None for cap in caps) or not (self._look_at_head or self._head_blocked_since is not None):
            return False
        self._look_at_head = False
        now = self.m.now()
        if await self.shared.head_fits(names, lim, now=now) is not False:
            self._head_blocked_since = None
            return False
        if self._head_blocked_since is None:
            self._head_blocked_since = now
        return now - self._head_blocked_since >= self.reservation_ms

    def _launch(self, rec: JobRecord) -> None:
        entry = _Queued(
            rec.id, rec.tool_name, RANK_PRIORITY.get(rec.priority, Priority.MEDIUM), rec.created_at, _needs(rec)
        )
        self._claimed[rec.id] = rec
        self._take(entry.tool, entry.needs, +1)
        self.starting += 1
        self.runs.spawn(self.m.task_group, self._run, entry)

    async def _claim(self, entry: _Queued) -> _Run | None:
        rec = self._claimed.pop(entry.job_id)
        return self._begin(rec, entry.needs)

    async def _renew(self) -> None:
        """Renew this process's lease and its jobs' leases (every lease/3, or at once when asked).

        A job no longer held (adopted by another process while this one was paused, or a claim the
        database lost in a crash) is stopped and its outcome discarded; a cancel request written
        elsewhere stops its work. One round trip for all running jobs."""
        now = anyio.current_time()
        if now < self._next_renew:
            return
        self._next_renew = now + self.lease_ms / 3000  # a third of the lease, in seconds
        sent = dict(self.running)
        held = await self.shared.renew_state(self.m.owner, list(sent), self.m.now() + self.lease_ms)
        for job_id, run in sent.items():
            if self.running.get(job_id) is not run or run.done:
                continue  # finished (or re-claimed) meanwhile
            if job_id not in held:
                run.lost = True
                run.scope.cancel()
            elif (reason := held[job_id]) is not None:
                self.cancel_running(job_id, reason)

    async def _cancel_requested_elsewhere(self) -> None:
        """Folded into `_renew` (one query for all running jobs instead of one read per job)."""
        self._next_renew = 0.0

    async def _sweep(self) -> None:
        """Fail pending jobs whose dependency failed, was cancelled or is gone (one sweeper at a time)."""
        now = anyio.current_time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        async with self.shared.sweeper_lock() as held:
            if not held:
                return
            for rec, dep, status in await self.shared.dependency_blocked():
                why = status.value if status is not None else "no longer exists"
                with contextlib.suppress(InvalidTransition, StaleWrite):
                    await self.m.fail_job(
                        rec.id, f"DependencyFailed: dependency '{dep}' {why}; this job did not run",
                        extra={"current_stage": "dependency_failed"},
                    )  # fmt: skip

    # -- notifications ---------------------------------------------------------------------

    def _lost(self) -> None:
        log.warning("worker.listener_lost")
        self._wake.set()  # the next round re-opens the listener

    def _changed(self, change: Any) -> None:
        if change.op != "update" or change.status is not JobStatus.RUNNING or change.cancel_requested:
            self._wake.set()  # a claim elsewhere (-> running) never makes work for this process
        if change.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            self._next_sweep = 0.0  # its dependents may be blocked now
        if change.cancel_requested and change.job_id in self.running:
            self._next_renew = 0.0  # the renewal reads the cancel request
        if self.m.bus.wants(change.job_id):
            kind = STATUS_EVENTS.get(change.status, EventType.PROGRESS) if change.op == "update" else EventType.CREATED
            event = JobEvent(kind, change.job_id, change.tool_name, change.status, 0, self.m.now())
            self.m.bus.publish(event)
