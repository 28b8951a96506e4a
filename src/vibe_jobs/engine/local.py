"""The local job source: the jobs of this process's store, queued in memory and fed to the executor.

Admission: priority with aging, dependencies, concurrency (overall and per tool), resource limits
with backfill inside a reservation window, and delayed retries.

Ordering: a job's key is `created_at - weight(priority) * aging_ms`; the smallest key runs first.
Waiting raises a job's effective priority by one weight unit per `aging_ms`, and because that
shift is the same for every job, the order never needs recomputing: one heap, O(log n) a decision.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import anyio

from vibe_jobs.engine.admission import (
    Needs,
    caps_of,
    check_fits,
    check_known,
    check_room,
    fail_unfit,
    misfit,
    needs_of,
)
from vibe_jobs.engine.executor import Executor
from vibe_jobs.engine.failures import fail_dependent
from vibe_jobs.engine.recovery import recover_orphans
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import ClusterFigures, QueueView
from vibe_jobs.models import JobRecord, Priority, priority_of
from vibe_jobs.outages import StoreRetry
from vibe_jobs.states import FINAL, JobStatus
from vibe_jobs.store.base import waits_since

CANCEL_CHECK_SECONDS = 0.5  # how often running jobs are checked for cancels and takeovers written elsewhere
SCAN_LIMIT = 256  # ready jobs one decision looks at past a blocked head or a full tool
DEPENDENCY_CHECKS = 256  # dependencies run elsewhere read per check (at every timer round: CANCEL_CHECK_SECONDS)


@dataclass(slots=True)
class QueuedJob:
    job_id: str
    tool: str
    priority: Priority
    created_at: int
    needs: Needs
    run_after: int | None = None
    due: float | None = None  # a retry's run_after by the manager's ticks (`requeued`): its backoff is a delay


class LocalSource:
    """Feeds the executor the jobs of registered tools from an in-memory queue (the manager's `Runner`)."""

    shared: ClassVar[bool] = False  # the queue is this process's own

    def __init__(
        self,
        manager: JobManager,
        tools: Mapping[str, JobToolSpec],
        *,
        concurrency: int | None = None,
        grace_seconds: float = 5.0,
        reservation_ms: int = 5_000,
    ) -> None:
        self.m, self.tools = manager, tools
        self.cfg = manager.settings.queue
        self.max_concurrent = concurrency or manager.settings.max_concurrent
        self.aging_ms = manager.settings.aging_ms
        self.reservation_ms = reservation_ms
        self.executor = Executor(manager, tools, self, concurrency=self.max_concurrent, grace_seconds=grace_seconds)
        self.queued: dict[str, QueuedJob] = {}
        self._ready: list[tuple[float, int, str]] = []
        self._delayed: list[tuple[int, int, str]] = []  # by run_after: runAt, a time of day (the clock's)
        self._backoffs: list[tuple[float, int, str]] = []  # by `QueuedJob.due`: retries' backoffs (never stepped)
        self._parked: dict[str, list[tuple[float, int, str]]] = {}  # ready jobs of a tool at its limit
        self._waiting: dict[str, set[str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._usage = [0.0, 0.0, 0.0]
        self._caps = caps_of(self.cfg.resource_limits)
        self._per_tool: Counter[str] = Counter()
        self._left: dict[str, int] = {}  # orphans of tools this process lacks, by tool (the last recovery's)
        self._seq = itertools.count()
        self._head_blocked_since: int | None = None
        self._wake = anyio.Event()
        self._checks = StoreRetry("scheduler.check_failed", on_failure=manager.store_failed)  # outages.py
        manager.runner = self

    # -- admission -------------------------------------------------------------------------

    async def admit(self, rec: JobRecord) -> None:
        """Refuse a job that the queue cannot take or that could never fit the resource limits."""
        check_known(rec.tool_name, self.tools)
        check_room(len(self.queued), self.m.settings.max_pending)
        check_fits(rec, self.cfg.resource_limits)

    async def enqueue(self, rec: JobRecord, due: float | None = None) -> None:
        """Queue a stored pending job; it waits for its dependencies first (`due`: see `requeued`)."""
        if rec.tool_name not in self.tools or rec.status is not JobStatus.PENDING:
            return
        if (refusal := misfit(rec, self.cfg.resource_limits)) is not None:  # stored under larger limits
            self._fail_soon("job.unfit_not_failed", lambda: fail_unfit(self.m, rec, refusal), rec.id)
            return  # never queued: at the head it would hold every other job back for ever
        entry = QueuedJob(
            rec.id, rec.tool_name, priority_of(rec.priority), rec.created_at, needs_of(rec), rec.run_after, due
        )
        self.queued[rec.id] = entry
        self.executor.watch_deadline(rec)
        deps = rec.task.dependencies if rec.task else None
        if deps:
            # It becomes ready (honouring run_after) when its last dependency completes.
            await self._wait_for(rec.id, set(deps))
        else:
            self._make_ready(entry, rec.run_after)
        self.pump()

    async def _wait_for(self, job_id: str, deps: set[str]) -> None:
        self._waiting[job_id] = set(deps)
        for dep in deps:
            self._dependents.setdefault(dep, set()).add(job_id)
        found = await self.m.store.get_many(deps, whole=False)  # at once: up to 1,000, a round trip each
        for dep in deps:
            dep_rec = found.get(dep)
            if dep_rec is None:
                self._dependency_finished(dep, None)  # removed by clean-up: its outcome is unknown
            elif dep_rec.status in FINAL:
                self._dependency_finished(dep, dep_rec.status)

    def _make_ready(self, entry: QueuedJob, run_after: int | None) -> None:
        if run_after is not None:
            if entry.due is not None:  # a retry's backoff: a delay, kept through a step of the clock
                if entry.due > self.m.ticks():
                    heapq.heappush(self._backoffs, (entry.due, next(self._seq), entry.job_id))
                    self._wake.set()
                    return
            elif run_after > self.m.now():
                heapq.heappush(self._delayed, (run_after, next(self._seq), entry.job_id))
                self._wake.set()
                return
        weight = self.cfg.priority_weights[entry.priority]
        heapq.heappush(self._ready, (entry.created_at - weight * self.aging_ms, next(self._seq), entry.job_id))

    def on_finished(self, rec: JobRecord) -> None:
        """A job reached a final state: forget it if queued, and settle its dependents."""
        self.queued.pop(rec.id, None)
        self._waiting.pop(rec.id, None)
        self._dependency_finished(rec.id, rec.status)

    def _dependency_finished(self, dep: str, status: JobStatus | None) -> None:
        dependents = self._dependents.pop(dep, None)
        if dependents is None:
            return  # nobody waits on it: nothing became ready
        for job_id in dependents:
            waiting = self._waiting.get(job_id)
            if waiting is None:
                continue
            if status is JobStatus.COMPLETED:
                waiting.discard(dep)
                if not waiting:
                    del self._waiting[job_id]
                    if (entry := self.queued.get(job_id)) is not None:
                        self._make_ready(entry, entry.run_after)
            else:
                self._waiting.pop(job_id, None)
                self.queued.pop(job_id, None)  # it must never start; the failure follows
                fail = functools.partial(fail_dependent, self.m, job_id, dep, status)
                self._fail_soon("job.dependent_not_failed", fail, job_id)
        self.pump()

    def _fail_soon(self, event: str, fail: Callable[[], Awaitable[None]], job_id: str) -> None:
        """Fail a job that is not queued, however long the store fails meanwhile: nothing else would."""
        retry = StoreRetry(event, on_failure=self.m.store_failed)
        self.executor.runs.spawn(self.m.task_group, functools.partial(retry.until_done, fail, job_id=job_id))

    # -- picking ---------------------------------------------------------------------------

    def pump(self) -> None:
        """Start as many ready jobs as the limits allow (none once the manager is stopping)."""
        if self.m.closing:
            return  # a run ending in the shutdown must not claim the next queued job
        if self._delayed or self._backoffs:
            self._release_delayed(self.m.now())
        running, executor = self.executor.running, self.executor
        while self._ready and len(running) + executor.starting < self.max_concurrent:
            entry = self._pick()
            if entry is None:
                return
            self._start(entry)

    def _release_delayed(self, now: int) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            self._release(heapq.heappop(self._delayed)[2])
        if self._backoffs:
            ticks = self.m.ticks()
            while self._backoffs and self._backoffs[0][0] <= ticks:
                self._release(heapq.heappop(self._backoffs)[2])

    def _release(self, job_id: str) -> None:
        if (entry := self.queued.get(job_id)) is not None and job_id not in self._waiting:
            self._make_ready(entry, None)

    def _pick(self) -> QueuedJob | None:
        """The first ready job that fits; smaller jobs backfill past a blocked head only for a while."""
        skipped: list[tuple[float, int, str]] = []
        chosen: QueuedJob | None = None
        head_blocked = False
        while self._ready and len(skipped) < SCAN_LIMIT:
            item = heapq.heappop(self._ready)
            entry = self.queued.get(item[2])
            if entry is None or item[2] in self._waiting:
                continue  # cancelled, finished or stale
            if self._tool_full(entry.tool):
                heapq.heappush(self._parked.setdefault(entry.tool, []), item)  # back when a slot frees
                continue
            if self._fits(entry.needs):
                chosen = entry
                break
            skipped.append(item)
            if not head_blocked:
                head_blocked = True
                if not self._may_backfill(round(self.m.ticks() * 1000)):  # (never stepped: an hour's step back of
                    # the clock stretched the window by the hour, small jobs passing the head meanwhile)
                    break
        if chosen is not None and not head_blocked:
            self._head_blocked_since = None
        for item in skipped:
            heapq.heappush(self._ready, item)
        return chosen

    def _may_backfill(self, now: int) -> bool:
        """Whether small jobs may still pass the blocked head (`now`: the manager's ticks, in ms)."""
        if self._head_blocked_since is None:
            self._head_blocked_since = now
        return now - self._head_blocked_since < self.reservation_ms

    def _tool_full(self, tool: str) -> bool:
        limit = self.tools[tool].max_concurrent
        return limit is not None and self._per_tool[tool] >= limit

    def _fits(self, needs: Needs) -> bool:
        used, caps = self._usage, self._caps  # three resources (Needs), written out: this runs for every pick
        return used[0] + needs[0] <= caps[0] and used[1] + needs[1] <= caps[1] and used[2] + needs[2] <= caps[2]

    def _start(self, entry: QueuedJob) -> None:
        del self.queued[entry.job_id]
        self._take(entry.tool, entry.needs, +1)
        self.executor.launch(entry.job_id, entry.tool, entry.needs)

    def _take(self, tool: str, needs: Needs, sign: int) -> None:
        used = self._usage
        used[0] += sign * needs[0]
        used[1] += sign * needs[1]
        used[2] += sign * needs[2]
        self._per_tool[tool] += sign
        if sign < 0:
            self._unpark(tool)

    def _unpark(self, tool: str) -> None:
        """A slot of `tool` freed: its best parked job competes again."""
        parked = self._parked.get(tool)
        while parked:
            item = heapq.heappop(parked)
            if item[2] in self.queued:
                heapq.heappush(self._ready, item)
                break
        if not parked:
            self._parked.pop(tool, None)

    # -- what the executor tells this source -----------------------------------------------

    def released(self, tool: str, needs: Needs) -> None:
        self._take(tool, needs, -1)
        self.pump()

    async def requeued(self, rec: JobRecord) -> None:
        """A job this process queues again: a retry (due after its backoff: a delay, so kept by the manager's ticks,
        which are never stepped; an hour's step back of the clock held a 1 s retry for the hour), or a claim given
        back. (A runAt, a time of day, follows the clock.)"""
        run_after, now = rec.run_after, self.m.now()
        due = self.m.ticks() + (run_after - now) / 1000 if run_after is not None and run_after > now else None
        await self.enqueue(rec, due)

    # -- the manager's Runner --------------------------------------------------------------

    def cancel_running(self, job_id: str, reason: str) -> bool:
        return self.executor.cancel_running(job_id, reason)

    async def drained(self) -> None:
        await self.executor.drained()

    async def run_timers(self) -> None:
        """Release delayed (retry) jobs when due, honour cancellations requested by other processes, and
        settle jobs whose dependencies ended in another process."""
        while True:
            self.pump()
            await self._checks.attempt(self.executor.check_running)  # the store fails: tried again after a backoff
            if self._dependents:
                await self._checks.attempt(self._check_foreign_dependencies)
            delay = (self._delayed[0][0] - self.m.now()) / 1000 if self._delayed else 3600.0
            if self._backoffs:
                delay = min(delay, self._backoffs[0][0] - self.m.ticks())
            with anyio.move_on_after(max(0.001, min(delay, CANCEL_CHECK_SECONDS))):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _check_foreign_dependencies(self) -> None:
        """Settle jobs waiting on dependencies this process does not run: another server on the same store
        runs them, and this process hears only of its own jobs' ends (`on_finished`). A few at a time."""
        running = self.executor.running
        foreign = [dep for dep in self._dependents if dep not in self.queued and dep not in running]
        if len(foreign) > DEPENDENCY_CHECKS:
            foreign = random.sample(foreign, DEPENDENCY_CHECKS)
        found = await self.m.store.get_many(foreign, whole=False) if foreign else {}  # at once: up to 256 of them
        for dep in foreign:
            rec = found.get(dep)
            if rec is None or rec.status in FINAL:
                self._dependency_finished(dep, None if rec is None else rec.status)

    async def recover(self) -> int:
        """Adopt orphaned jobs (owners gone) and queue the pending ones."""
        recovered = await recover_orphans(self.m, self.tools, self.executor.retry)
        self._left = recovered.left
        for rec in recovered.adopted:
            await self.enqueue(rec)
        return len(recovered.adopted)

    async def hand_back(self) -> None:
        """Nothing: the jobs a stop interrupts stay running for the next start's recovery, whose words ("the
        server stopped while the job was running") tell the story on this process's own store."""

    async def cluster_figures(self) -> ClusterFigures | None:
        """None: this process's own figures are the whole picture."""
        return None

    async def queue_view(self) -> QueueView:
        depth: Counter[str] = Counter(e.priority.value for e in self.queued.values())
        return QueueView(dict(depth), waiting_since(self.queued.values(), self.m.now()), left_tools=self._left)


def waiting_since(queued: Iterable[QueuedJob], now: int) -> int | None:
    """Since when the longest-waiting queued job has waited (`store.base.waits_since`)."""
    since = [s for e in queued if (s := waits_since(e.created_at, e.run_after, now)) is not None]
    return min(since, default=None)
