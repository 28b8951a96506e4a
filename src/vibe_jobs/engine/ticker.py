"""The ticker: fires the schedules that are due, in every process that runs one (servers and workers).

Each pass reads the schedules, and for each one due asks `firing.plan` what to fire now (misfire and
overlap policies included), fires those ticks, then moves the schedule on by compare-and-set. Every
firing goes through `JobManager.fire_job`, which the store writes with the (schedule, tick) key in one
transaction: however many processes tick together, and across restarts, a tick fires once. A process
that loses the race to move a schedule on just reads it again on its next pass.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import anyio

from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.errors import JobError, StoreError
from vibe_jobs.firing import DEFAULT_GRACE_MS, Misfire, Overlap, Plan, plan
from vibe_jobs.logs import get_logger
from vibe_jobs.models import OperationType, Priority, TaskSpec
from vibe_jobs.outages import StoreRetry
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.states import ACTIVE
from vibe_jobs.store.base import ScheduleStore

log = get_logger("vibe_jobs.engine.ticker")

POLL_SECONDS = 1.0  # schedules created, paused or moved on by other processes are seen this soon
PRUNE_EVERY_MS = 600_000  # how often tick keys no firing can come back to are deleted ...
KEEP_TICKS_MS = 3_600_000  # ... once they are this old (a process that read the schedule before is long done)
UNFIRED_GRACE_MS = 60_000  # a due schedule of a tool this process lacks is named by health once this overdue
RECORD_LAST_TRIES = 5  # compare-and-set attempts to record a firing on a schedule other processes move on


class Ticker:
    def __init__(self, schedules: Schedules, *, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        self.schedules, self.m, self.grace_ms = schedules, schedules.m, grace_ms
        self.fired = 0  # jobs this process fired
        self._next_prune = 0.0  # by the clock that never steps (`JobManager.ticks`), in seconds
        self._upcoming: int | None = None  # the earliest tick still to come, as of the last pass

    async def run(self) -> None:
        """Tick until cancelled: wake at the next due tick, or after POLL_SECONDS at most (a store that
        keeps no schedules: return at once)."""
        if not isinstance(self.m.store, ScheduleStore):
            return
        passes = StoreRetry("ticker.failed", on_failure=self.m.store_failed)  # outages.py
        while True:
            self._upcoming = None
            if await passes.attempt(self._pass):  # a store that fails must not stop the schedules (or the server)
                wait = POLL_SECONDS if self._upcoming is None else (self._upcoming - self.m.now()) / 1000
                await anyio.sleep(min(POLL_SECONDS, max(0.0, wait)))

    async def _pass(self) -> None:
        self._upcoming = await self.tick()
        await self.prune()

    async def tick(self) -> int | None:
        """One pass at the manager's clock: fire what is due; answer the earliest tick still to come. A schedule
        whose tool this process has no job tool for is left to a process that has (a worker, another server):
        fired here, its jobs would wait for ever; overdue past UNFIRED_GRACE_MS, health names it."""
        store, start = self.schedules.store, self.m.now()
        unfired: dict[str, int] = {}
        due = await store.due_schedules(start)
        held = await self._held_by_last_job(due)
        for rec in due:
            if rec.tool not in self.schedules.tools:  # a process that has the tool fires it (or health says none)
                if self._unfired(rec, held):
                    unfired[rec.tool] = unfired.get(rec.tool, 0) + 1
                continue
            try:
                await self._fire_due(rec, held)
            except (JobError, ValueError) as exc:  # one schedule's trouble must not stop the others
                log.warning("schedule.tick_failed", schedule_id=rec.schedule_id, error=str(exc))
        self.m.stats.unfired_schedules = unfired
        return await store.next_fire_after(start)  # one that came due during the pass: at once

    def _unfired(self, rec: ScheduleRecord, held: Collection[str]) -> bool:
        """Whether a due schedule of a tool this process lacks is overdue past the grace with nobody firing it
        (one that holds its tick for a running previous job, overlap queue, is not overdue)."""
        overdue = rec.next_fire_at is not None and rec.next_fire_at <= self.m.now() - UNFIRED_GRACE_MS
        return overdue and not (rec.overlap == Overlap.QUEUE and rec.schedule_id in held)

    async def prune(self) -> int:
        """Now and then, delete the tick keys no firing can come back to (the table stays small). How often is
        measured by the clock that never steps: by the wall clock, a step back put the next pruning off for the
        step (a day's: a day of keys kept)."""
        passed = self.m.ticks()
        if passed < self._next_prune:
            return 0
        self._next_prune = passed + PRUNE_EVERY_MS / 1000
        return await self.schedules.store.prune_ticks(self.m.now() - KEEP_TICKS_MS)

    async def _held_by_last_job(self, due: Sequence[ScheduleRecord]) -> set[str]:
        """The ids of the `due` schedules whose last job is pending or running, of those its overlap rule asks about
        (skip, queue), as of the pass's start: their last jobs read at once, as views, not one store read a schedule
        (1,000 every-minute schedules were 1,000 reads a tick, those of overlap allow, the default, for nothing)."""
        asked = {rec.schedule_id: rec.last_job_id for rec in due if rec.overlap != Overlap.ALLOW and rec.last_job_id}
        jobs = await self.m.store.get_many(set(asked.values()), whole=False) if asked else {}
        return {sid for sid, job_id in asked.items() if job_id in jobs and jobs[job_id].status in ACTIVE}

    async def _fire_due(self, rec: ScheduleRecord, held: Collection[str] = ()) -> ScheduleRecord:
        p = self._plan(rec, rec.schedule_id in held)
        if p.held:
            return rec
        last, refused = await self._fire_ticks(rec, p)
        return await self._move_on(rec, p, last, refused)

    def _plan(self, rec: ScheduleRecord, previous_active: bool = False) -> Plan:
        return plan(
            rec.timing(),
            rec.next_fire_at,
            self.m.now(),
            misfire=Misfire(rec.misfire),
            max_catch_up=rec.max_catch_up,
            overlap=Overlap(rec.overlap),
            previous_active=previous_active,
            grace_ms=self.grace_ms,
        )

    async def _fire_ticks(self, rec: ScheduleRecord, p: Plan) -> tuple[dict[str, Any], int]:
        """Fire the planned ticks: the last firing ({last_job_id, last_tick, last_fired_at}; a tick another process
        fired counts, as it may have died before recording it), empty when none fired, and how many admission
        refused (lost: counted as skipped)."""
        last: dict[str, Any] = {}
        refused = 0
        for tick in p.ticks:
            try:
                job_id = await self._fire(rec, tick)
            except JobError as exc:  # refused by admission (queue full, resources, quota): this tick is lost
                if isinstance(exc, StoreError):
                    raise  # not a refusal: the pass fails and the tick is fired at a later one
                log.warning("schedule.fire_refused", schedule_id=rec.schedule_id, tick=tick, error=str(exc))
                refused += 1
                continue
            if job_id is None:  # fired already: by a process that may have died before moving the schedule on
                job_id = await self.schedules.store.fired_job(rec.schedule_id, tick)
            if job_id is not None:
                last = {"last_job_id": job_id, "last_tick": tick, "last_fired_at": self.m.now()}
        return last, refused

    async def _move_on(self, rec: ScheduleRecord, p: Plan, last: dict[str, Any], refused: int = 0) -> ScheduleRecord:
        """Move the schedule to its next tick (compare-and-set) with the firing this process made; ticks dropped
        by its misfire or overlap rule or refused by admission count as skipped."""
        skipped = rec.skipped + p.dropped + refused
        changes = {"next_fire_at": p.next_fire_at, "skipped": skipped, "updated_at": self.m.now()}
        new = await self.schedules.store.update_schedule(rec.schedule_id, changes | last, rec.version)
        if p.dropped:
            log.info("schedule.ticks_skipped", schedule_id=rec.schedule_id, count=p.dropped)
        if new is None and last:
            # Another process moved it on first: one that lost this tick's firing to us, so it knows no
            # job of it. The last firing is ours to record, or nobody records it.
            new = await self._record_last(rec.schedule_id, last)
        return new or rec  # None: another process moved it on first (it fired those ticks, or will)

    async def _record_last(self, schedule_id: str, last: dict[str, Any]) -> ScheduleRecord | None:
        """Set the last firing on the schedule as it is now, unless a later tick was recorded already."""
        store = self.schedules.store
        for _ in range(RECORD_LAST_TRIES):
            current = await store.get_schedule(schedule_id)
            if current is None or (current.last_tick is not None and current.last_tick >= last["last_tick"]):
                return current
            new = await store.update_schedule(schedule_id, last, current.version)
            if new is not None:
                return new
        return None

    async def _fire(self, rec: ScheduleRecord, tick: int) -> str | None:
        """The job fired for `tick`, or None when another process fired it or the schedule changed since `rec`
        was read (paused, edited, deleted: the next pass reads it again); JobError when it is refused."""
        task = TaskSpec(priority=Priority(rec.priority), operation_type=_op(rec.operation_type))
        job_id = await self.m.fire_job(
            rec.tool, rec.arguments, task, rec.schedule_id, tick, rec.principal, version=rec.version
        )
        if job_id is not None:
            self.fired += 1
            log.info("schedule.fired", schedule_id=rec.schedule_id, tick=tick, job_id=job_id)
        return job_id


def _op(value: str | None) -> OperationType | None:
    return value  # type: ignore[return-value]  # stored from a validated OperationType
