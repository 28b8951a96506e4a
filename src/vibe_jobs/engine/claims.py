"""The claim source: work claimed from a shared store (PostgreSQL): many servers and workers, one job table.

Jobs are taken by claiming them in the database (`FOR UPDATE SKIP LOCKED`, priority with aging,
dependencies and cluster-wide limits enforced in SQL) and run by the same executor as local jobs
(time-outs, retries, cancellation, metrics). Wake-ups come over LISTEN/NOTIFY; a short poll covers
notifications lost while reconnecting. State changes seen over NOTIFY are republished on the local
event bus, so a long-poll on one replica sees a job that runs on another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import anyio

from vibe_jobs.engine.admission import NO_NEEDS, Needs, check_fits, check_known, check_room, fail_unfit, misfit
from vibe_jobs.engine.executor import Executor
from vibe_jobs.engine.failures import fail_dependent
from vibe_jobs.engine.recovery import hand_back, recover_orphans
from vibe_jobs.events import STATUS_EVENTS, EventType, JobEvent
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager, shared_queue_view
from vibe_jobs.metrics import ClusterFigures, QueueView
from vibe_jobs.models import JobRecord
from vibe_jobs.outages import StoreRetry
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import ClaimLimits, JobChange, Listening, SharedJobStore

log = get_logger("vibe_jobs.engine.claims")

POLL_SECONDS = 1.0  # claim again at least this often (notifications are wake-ups, not a log)
SWEEP_SECONDS = 1.0  # look for dependency-blocked jobs at least this often (and when a job fails)
# With a backlog (the last claim filled every free slot), a worker claims once a quarter of its slots is
# free or the first freed slot has waited CLAIM_LINGER_SECONDS: one claim per batch of finishes, not one
# per finish (limited claims queue on one cluster-wide lock). Without a backlog it claims at once.
CLAIM_BATCH_FRACTION = 4
CLAIM_LINGER_SECONDS = 0.005
# A claimed job starts only while a quarter of its lease is left at least: its work never begins so close to
# the lease's end that another process's recovery could adopt it first (the start is not written: the claim
# was). A claim answered that late (a stall, a slow answer) is given back to the queue, fenced by its attempt.
START_MARGIN_FRACTION = 4
PENDING_COUNT_SECONDS = 1.0  # count the shared queue at least this often when admitting jobs


class ClaimSource:
    """Feeds the executor jobs claimed from a shared store (the manager's `Runner`);
    `run_jobs=False` serves without running any (an MCP replica beside workers)."""

    shared: ClassVar[bool] = True  # the queue is the database, shared by every process on it

    def __init__(
        self,
        manager: JobManager,
        tools: Mapping[str, JobToolSpec],
        *,
        concurrency: int | None = None,
        run_jobs: bool = True,
        grace_seconds: float = 5.0,
        reservation_ms: int = 5_000,
    ) -> None:
        store = manager.store
        if not isinstance(store, SharedJobStore):
            raise TypeError(f"claims need a shared store (postgresql://...), not {store.url}")
        self.m, self.tools, self.store = manager, tools, store
        self.concurrency = concurrency or manager.settings.max_concurrent
        self.executor = Executor(manager, tools, self, grace_seconds=grace_seconds, concurrency=self.concurrency)
        self.run_jobs = run_jobs
        self.reservation_ms = reservation_ms
        self.limits = self._claim_limits()
        self.lease_ms = manager.settings.lease_ms
        self._next_renew = 0.0
        self._next_sweep = 0.0
        self._listener: Listening | None = None
        self._batch = max(1, self.concurrency // CLAIM_BATCH_FRACTION)
        self._backlog = False  # the last claim filled every slot it asked for
        self._linger_until: float | None = None
        self._head_blocked_since: int | None = None
        self._pending_counted, self._submitted_since_count, self._counted_at = 0, 0, -math.inf
        self._look_at_head = True
        self._claiming = anyio.Lock()
        self._wake = anyio.Event()
        self._rounds = StoreRetry("worker.round_failed", on_failure=manager.store_failed)  # outages.py: back off
        self._renewing = StoreRetry("worker.renewal_failed", on_failure=manager.store_failed)
        self._renew_wake = anyio.Event()
        manager.runner = self

    # -- the local queue is the database ---------------------------------------------------

    async def admit(self, rec: JobRecord) -> None:
        """`max_pending` bounds the shared queue (every server's pending jobs): counted in the database
        whenever the last count is over a second old or the queue is within 10 % of the limit, and
        estimated from that count plus this process's submissions in between otherwise."""
        check_known(rec.tool_name, self.tools)
        check_fits(rec, self.m.settings.queue.resource_limits)
        check_room(await self._pending_estimate(), self.m.settings.max_pending)
        self._submitted_since_count += 1

    async def _pending_estimate(self) -> int:
        now, limit = anyio.current_time(), self.m.settings.max_pending
        estimate = self._pending_counted + self._submitted_since_count
        if now - self._counted_at > PENDING_COUNT_SECONDS or estimate >= 0.9 * limit:
            rows = await self.store.pending_by_priority(self.m.now())
            self._pending_counted, self._counted_at = sum(count for _, count, _ in rows), now
            self._submitted_since_count = 0
            estimate = self._pending_counted
        return estimate

    async def cluster_figures(self) -> ClusterFigures | None:
        """Per-tool outcomes and durations, throughput and error rate over every process's jobs."""
        return await self.store.finished_figures(self.m.now())

    async def queue_view(self) -> QueueView:
        """The shared queue by priority, its oldest job and the tools no live process runs, as the database
        holds them now."""
        view = await shared_queue_view(self.store, self.m.now())
        if self.run_jobs:  # this process is alive whatever its lease says: its own tools are served
            unserved = {tool: n for tool, n in view.unserved_tools.items() if tool not in self.tools}
            view = dataclasses.replace(view, unserved_tools=unserved)
        return view

    async def enqueue(self, rec: JobRecord) -> None:
        self.executor.watch_deadline(rec)
        self._wake.set()

    def pump(self) -> None:
        """Take a decision now: wake the claim loop."""
        self._wake.set()

    def on_finished(self, rec: JobRecord) -> None:
        self._wake.set()

    def cancel_running(self, job_id: str, reason: str) -> bool:
        return self.executor.cancel_running(job_id, reason)

    def stop_claiming(self) -> None:
        """Claim no more jobs (a worker draining before it stops); running ones go on."""
        self.run_jobs = False

    async def drained(self) -> None:
        await self.executor.drained()

    def _claim_limits(self) -> ClaimLimits:
        per_tool = {name: spec.max_concurrent for name, spec in self.tools.items()}
        return ClaimLimits.from_settings(self.m.settings, per_tool)

    # -- what the executor tells this source -----------------------------------------------

    def released(self, tool: str, needs: Needs) -> None:
        self._wake.set()  # a free slot: claim again

    async def requeued(self, rec: JobRecord) -> None:
        self._wake.set()  # pending again, claimable by any process once due

    async def recover(self) -> int:
        # after each heartbeat (the manager calls this right after it): the lease names the tools run here
        await self.store.offer_tools(self.m.owner, list(self.tools) if self.run_jobs else [])
        # orphans left for a process with their tool are not counted: nothing here reports them (health names
        # the pending jobs of tools no live lease offers, `queue_view`)
        found = await recover_orphans(self.m, self.tools, self.executor.retry, shared=True, count_left=False)
        for rec in found.adopted:  # pending: claimable by any process; its deadline is watched here now (only its
            await self.enqueue(rec)  # creator watched it, and a job outlived its deadline once that one was gone)
        return len(found.adopted)

    async def hand_back(self) -> None:
        """As the process stops: the jobs it still holds (its stop ended them: the drain over) are settled here, in
        words of the stop, not left to read "worker lost" when another process recovers them (`recovery.hand_back`)."""
        await hand_back(self.m, self.store, self.tools, self.executor.retry)

    # -- claiming --------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Claim, honour remote cancels and sweep, until the manager stops; renew the leases beside that."""
        self.limits = self._claim_limits()  # of the tools registered by now (a server adds them after building this)
        # the first renewal a third of the lease on (the manager renewed this process's lease as it started, and a
        # claim writes its jobs' leases): not at once beside the first claim, a second connection as the pool grows
        self._next_renew = anyio.current_time() + self.lease_ms / 3000
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renewals)
                await self._rounds_loop()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                if self._listener is not None:
                    await self._listener.close()

    async def _rounds_loop(self) -> None:
        while True:
            if not await self._rounds.attempt(self._round):
                continue  # the store failed (a restart): tried again after the backoff, whatever wakes this loop
            wait = POLL_SECONDS
            if self._linger_until is not None:
                wait = min(wait, max(0.0, self._linger_until - anyio.current_time()))
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _renewals(self) -> None:
        """Renew the leases every lease/3, or at once when asked, in a loop of their own: a claim waiting on
        the cluster-wide claim lock (other workers' claims, a slow database), a slow sweep or a listener
        reconnecting never delays them, so a job running here is not taken for an orphan meanwhile
        (failed as "worker lost", or run twice) while this process is alive."""
        while True:
            with anyio.move_on_after(max(0.01, self._next_renew - anyio.current_time())):
                await self._renew_wake.wait()
            self._renew_wake = anyio.Event()
            while not await self._renewing.attempt(self._renew):
                pass  # backed off; renewed again at once

    def _renew_soon(self) -> None:
        """Renew now (a cancel request to read, notifications that may have been lost)."""
        self._renew_wake.set()

    async def _round(self) -> None:
        """Listen, claim and sweep."""
        await self._keep_listening()
        if self.run_jobs:
            await self._claim_available()
        await self._sweep()

    async def _keep_listening(self) -> None:
        """(Re)open the LISTEN session: at start, and after it was lost (a restart, a terminated session).
        Notifications sent meanwhile are lost, so the round that follows claims and sweeps, and the leases
        are renewed at once (a cancel request may have been missed)."""
        if self._listener is not None and self._listener.alive:
            return
        reopened = self._listener is not None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        self._listener = await self.store.listen(self._changed, self._lost)
        self._next_sweep = 0.0
        if reopened:
            self._renew_soon()

    async def _claim_available(self) -> None:
        async with self._claiming:  # one claim round at a time: free slots are counted before the claim
            await self._claim_rounds()

    async def _claim_rounds(self) -> None:
        names = list(self.tools)
        if await self._reserving(names):
            return
        while (free := self.concurrency - self.executor.busy) > 0:
            if self._backlog and free < self._batch:
                now = anyio.current_time()
                if self._linger_until is None:
                    self._linger_until = now + CLAIM_LINGER_SECONDS
                if now < self._linger_until:
                    return  # `run_timers` wakes at `_linger_until`
            self._linger_until = None
            found, valid_until = await self._claim(names, free)
            for rec in found:
                self._launch(rec, valid_until)
            if found:
                self._renew_if_late(valid_until)
            self._backlog = len(found) == free
            if not self._backlog:
                self._look_at_head = True  # a short claim: something may not have fitted
                return

    async def _reserving(self, names: list[str]) -> bool:
        """The reservation window across the cluster: once the head of the queue (the job a claim takes
        first) has not fitted the resource limits for `reservation_ms`, claim nothing behind it until
        running jobs have freed enough for it (small jobs backfill only within the window).
        Looked at only after a short claim or while the head is blocked (one query then). A head that could
        never fit, even alone, is failed instead (`_failed_unfit`): nothing would ever free enough for it."""
        lim = self.limits
        watching = self._look_at_head or self._head_blocked_since is not None
        if all(cap is None for cap in lim.resource_caps) or not watching:
            return False
        self._look_at_head = False
        head = await self.store.head_fits(names, lim, now=self.m.now())
        if head is None or head[1] or await self._failed_unfit(head[0]):
            self._head_blocked_since = None
            return False
        now = round(self.m.ticks() * 1000)  # the window by the ticks: a step back of the clock stretched it
        if self._head_blocked_since is None:
            self._head_blocked_since = now
        return now - self._head_blocked_since >= self.reservation_ms

    async def _failed_unfit(self, job_id: str) -> bool:
        """Fail the head of the queue if it could never fit this process's limits (`admission.misfit`: stored by
        a process with larger ones); True when it could not. The claims skip it: only the reservation waits."""
        rec = await self.store.get(job_id)
        if rec is None or (refusal := misfit(rec, self.m.settings.queue.resource_limits)) is None:
            return False
        await fail_unfit(self.m, rec, refusal)
        self._look_at_head = True  # the next head is looked at in the next round
        return True

    async def _claim(self, names: list[str], k: int) -> tuple[list[JobRecord], int]:
        """Claim up to `k` jobs; answer them and by when their work must start (epoch ms): a margin before
        the earlier of the job leases the claim wrote and this process's lease (renewed first when a stall
        let it lag: a job whose owner's lease lapsed is an orphan however fresh its own lease)."""
        await self.m.renew_if_late()
        now = self.m.now()
        found = await self.store.claim_many(self.m.owner, self.lease_ms, self.limits, names, k, now=now)
        return found, min(now + self.lease_ms, self.m.lease_until) - self.lease_ms // START_MARGIN_FRACTION

    def _renew_if_late(self, start_by: int) -> None:
        """A claim answered late (it waited on the claim lock, a slow database) leaves its jobs less lease than
        the wait for the next renewal plus a margin: renew now (the launched runs are counted by then), not up
        to a third of the lease later, when the lease may have lapsed under a running job."""
        lease_end = start_by + self.lease_ms // START_MARGIN_FRACTION
        next_renewal = self.m.now() + max(0.0, self._next_renew - anyio.current_time()) * 1000
        if lease_end - next_renewal < self.lease_ms / 3:
            self._renew_soon()

    def _launch(self, rec: JobRecord, start_by: int) -> None:
        # the claim enforced the limits in the database: nothing to account here; the run starts only
        # while the claim is surely still held (a claim whose lease is about to lapse is given back)
        self.executor.launch(rec.id, rec.tool_name, NO_NEEDS, rec, start_by)

    async def _renew(self) -> None:
        """Renew this process's lease and its jobs' leases (`_renewals` calls it every lease/3).

        A job no longer held (adopted by another process while this one was paused, or a claim the
        database lost in a crash) is stopped and its outcome discarded; a cancel request written
        elsewhere stops its work. One round trip for all running jobs."""
        self._next_renew = anyio.current_time() + self.lease_ms / 3000  # a third of the lease, in seconds
        running = self.executor.running
        sent = dict(running)
        expires_at = self.m.now() + self.lease_ms
        held = await self.store.renew_state(self.m.owner, list(sent), expires_at)
        self.m.lease_renewed(expires_at)
        for job_id, run in sent.items():
            if running.get(job_id) is not run or run.done:
                continue  # finished (or re-claimed) meanwhile
            self.executor.held_elsewhere(run, job_id in held, held.get(job_id))

    async def _sweep(self) -> None:
        """Release pending jobs an insert left held back although their dependencies completed, and fail those
        whose dependency failed, was cancelled or is gone (one sweeper at a time)."""
        now = anyio.current_time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        async with self.store.sweeper_lock() as held:
            if not held:
                return
            await self.store.release_ready()
            for rec, dep, status in await self.store.dependency_blocked():
                await fail_dependent(self.m, rec.id, dep, status)

    # -- notifications ---------------------------------------------------------------------

    def _lost(self) -> None:
        log.warning("worker.listener_lost")
        self._wake.set()  # the next round re-opens the listener

    def _changed(self, change: JobChange) -> None:
        if change.op != "update" or change.status is not JobStatus.RUNNING or change.cancel_requested:
            self._wake.set()  # a claim elsewhere (-> running) never makes work for this process
        if change.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            self._next_sweep = 0.0  # its dependents may be blocked now
        if change.cancel_requested and change.job_id in self.executor.running:
            self._renew_soon()  # the renewal reads the cancel request
        if self.m.bus.wants(change.job_id):
            kind = STATUS_EVENTS.get(change.status, EventType.PROGRESS) if change.op == "update" else EventType.CREATED
            event = JobEvent(kind, change.job_id, change.tool_name, change.status, 0, self.m.now())
            self.m.bus.publish(event)
