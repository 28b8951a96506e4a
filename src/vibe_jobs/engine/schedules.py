"""Schedules, the operations on them: create (checked whole first), list, pause, resume, delete, and the
schedules job tools declare in code (`@job_tool(schedule=...)`), created or updated at start-up.

A schedule is data in the store (`ScheduleStore`); it changes only by compare-and-set on its version,
so a pause and a firing racing in two processes never undo each other. The ticker (`engine/ticker.py`)
fires them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from vibe_jobs.errors import InvalidSchedule, QuotaExceeded, ScheduleNotFound, StaleWrite, StoreError
from vibe_jobs.identity import LOCAL_PRINCIPAL, Viewer
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.schedules import Schedule, ScheduleRecord, ScheduleSpec
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import ScheduleStore

log = get_logger("vibe_jobs.engine.schedules")

MAX_RACES = 16
Change = Callable[[ScheduleRecord], dict[str, Any] | None]
Wires = list[dict[str, Any]]  # schedules as clients see them (`Schedule.wire`)
Fit = Callable[[Wires], tuple[Wires, int]]  # `Schedules.page`'s cut
OUTCOME_ROOM = max((status.value for status in JobStatus), key=len)  # a `lastOutcome` at its longest


def schedule_store(manager: JobManager) -> ScheduleStore:
    store = manager.store
    if not isinstance(store, ScheduleStore):
        raise StoreError(f"the store {store.url} keeps no schedules")
    return store


def parse_spec(values: Mapping[str, Any]) -> ScheduleSpec:
    """A ScheduleSpec from a client's fields (camelCase), or InvalidSchedule naming every problem."""
    try:
        return ScheduleSpec.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise InvalidSchedule(f"invalid schedule: {problems}") from None


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class Schedules:
    """The schedules of one store, for the job tools of this process (`tools`: checked at creation)."""

    def __init__(self, manager: JobManager, tools: Mapping[str, JobToolSpec]) -> None:
        self.m, self.tools = manager, tools

    @property
    def store(self) -> ScheduleStore:
        return schedule_store(self.m)

    def check(self, spec: ScheduleSpec) -> dict[str, Any]:
        """The arguments as the tool stores them, or InvalidSchedule / InvalidArguments: an unknown tool
        and arguments its schema refuses are caught now, not at the first firing."""
        tool = self.tools.get(spec.tool)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise InvalidSchedule(f"invalid schedule: no job tool named '{spec.tool}'; job tools: {known}")
        params = tool.arguments.check(spec.arguments)  # raises InvalidArguments naming each problem
        params = self.m.check_params(spec.tool, params)  # within the size every job it fires must keep
        if tool.refuse is not None and (reason := tool.refuse(params)) is not None:
            raise InvalidSchedule(f"invalid schedule: {reason}")
        return params

    async def create(self, spec: ScheduleSpec, viewer: Viewer | None = None) -> ScheduleRecord:
        """Check the schedule whole, then store it (`viewer`'s: its jobs are that principal's); nothing is
        stored when any part is refused."""
        params = self.check(spec)
        op = spec.operation_type or self.tools[spec.tool].operation_type
        spec = spec.model_copy(update={"arguments": params, "operation_type": op})
        rec = ScheduleRecord.from_spec(spec, _new_id(spec), self.m.now())
        rec.principal = viewer.principal if viewer is not None else LOCAL_PRINCIPAL
        if rec.next_fire_at is None:
            raise InvalidSchedule("invalid schedule: it would never fire (no tick before endAt or the year 10000)")
        async with self.m.principal_held(rec.principal):  # the count and the insert as one step
            await self._check_quota(rec.principal)
            await self.store.insert_schedule(rec)
        log.info("schedule.created", schedule_id=rec.schedule_id, tool=rec.tool, next_fire_at=rec.next_fire_at)
        return rec

    async def _check_quota(self, principal: str) -> None:
        """Refuse a new schedule of `principal` at `quota_schedules` (VIBE_JOBS_QUOTA_SCHEDULES)."""
        limit = self.m.settings.quota_schedules
        if limit is None:
            return
        held = await self.store.count_schedules(principal)
        if held >= limit:
            setting, nothing = "VIBE_JOBS_QUOTA_SCHEDULES", "no schedule was created"
            raise QuotaExceeded(principal, "schedules", held, limit, setting, nothing)

    async def get(self, schedule_id: str, viewer: Viewer | None = None) -> ScheduleRecord:
        """The schedule; one `viewer` may not see answers as an unknown id (no viewer: sees all)."""
        rec = await self.store.get_schedule(schedule_id)
        if rec is None or (viewer is not None and not viewer.sees(rec.principal)):
            raise ScheduleNotFound(schedule_id)
        return rec

    async def outcomes(self, records: Sequence[ScheduleRecord], principal: str | None = None) -> list[str | None]:
        """The status of the job each of `records` fired last (None: none, or gone): those jobs read at once, as
        views without results or arguments (one store read, not one a schedule), of `principal` only when given."""
        last = {rec.last_job_id for rec in records if rec.last_job_id}
        jobs = await self.m.store.get_many(last, principal, whole=False) if last else {}
        return [_status(jobs.get(rec.last_job_id or "")) for rec in records]

    async def described(self, records: Sequence[ScheduleRecord], principal: str | None = None) -> list[Schedule]:
        """`records` as clients see them, with the status of the job each fired last (`outcomes`)."""
        outcomes = await self.outcomes(records, principal)
        return [Schedule.from_record(rec, outcome) for rec, outcome in zip(records, outcomes, strict=True)]

    async def list(self, viewer: Viewer | None = None) -> list[Schedule]:
        """Every schedule (`viewer` may see) with the status of the job it fired last (`lastOutcome`)."""
        only = _scope(viewer)
        return await self.described(await self.store.list_schedules(only), only)

    async def page(self, viewer: Viewer | None, fit: Fit, *, nulls: bool = False) -> tuple[Wires, int]:
        """Every schedule `viewer` may see as clients see them (`wire`; `nulls`: every field, null ones too, as
        job-stats shows them), cut by `fit` (those one answer carries, from the first, and how many it leaves out),
        with `lastOutcome`: the last jobs of those carried only are read. Each is cut with room for the longest
        status, so that its outcome still fits once read."""
        only = _scope(viewer)
        records = await self.store.list_schedules(only)
        described = (Schedule.from_record(rec, OUTCOME_ROOM if rec.last_job_id else None) for rec in records)
        shown, omitted = fit([s.model_dump(mode="json", by_alias=True) if nulls else s.wire() for s in described])
        for wire, outcome in zip(shown, await self.outcomes(records[: len(shown)], only), strict=True):
            if outcome is None and not nulls:
                wire.pop("lastOutcome", None)
            else:
                wire["lastOutcome"] = outcome
        return shown, omitted

    async def pause(self, schedule_id: str, viewer: Viewer | None = None) -> ScheduleRecord:
        await self.get(schedule_id, viewer)
        return await self.change(schedule_id, lambda r: None if r.paused else {"paused": True})

    async def resume(self, schedule_id: str, viewer: Viewer | None = None) -> ScheduleRecord:
        """Resume from now: ticks that came due while paused are not fired. Never at or before its last tick: after a
        step back of the clock, from the clock it fired again the ticks it had fired (their keys, which refuse a
        second firing, are kept an hour)."""

        def plan(r: ScheduleRecord) -> dict[str, Any] | None:
            since = max(self.m.now(), r.last_tick or 0)
            return {"paused": False, "next_fire_at": r.first_tick(since)} if r.paused else None

        await self.get(schedule_id, viewer)
        return await self.change(schedule_id, plan)

    async def delete(self, schedule_id: str, viewer: Viewer | None = None) -> None:
        await self.get(schedule_id, viewer)
        if not await self.store.delete_schedule(schedule_id):
            raise ScheduleNotFound(schedule_id)
        log.info("schedule.deleted", schedule_id=schedule_id)

    async def change(self, schedule_id: str, plan: Change) -> ScheduleRecord:
        """Apply `plan(record)` as a compare-and-set, re-reading when raced (None: nothing to change)."""
        for _ in range(MAX_RACES):
            rec = await self.get(schedule_id)
            changes = plan(rec)
            if changes is None:
                return rec
            new = await self.store.update_schedule(schedule_id, {**changes, "updated_at": self.m.now()}, rec.version)
            if new is not None:
                return new
        raise StaleWrite(f"schedule '{schedule_id}' kept changing under this writer")

    async def declare(self, spec: ScheduleSpec) -> ScheduleRecord:
        """A schedule declared in code (its id given): created, or updated when its definition changed
        (its firing state then starts afresh); unchanged, it is left as it is. Idempotent."""
        assert spec.schedule_id is not None
        self.check(spec)
        want = ScheduleRecord.from_spec(spec, spec.schedule_id, self.m.now())
        # Its id comes back after a delete: its versions must not (a pass that read the deleted one would pass
        # the firing's version check on the new one). A version starts at the clock's ms, far past any change
        # count of an earlier record of the id.
        want.version = max(1, want.created_at)
        old = await self.store.get_schedule(spec.schedule_id)
        if old is None:
            try:
                await self.store.insert_schedule(want)
                return want
            except StoreError:  # another process declared it first
                old = await self.get(spec.schedule_id)
        if _definition(old) == _definition(want):
            return old
        fresh = {k: v for k, v in _definition(want).items() if k != "paused"}

        def reset(r: ScheduleRecord) -> dict[str, Any]:
            # from the clock, but never at or before its last tick, as `resume` (after a step back of the clock it
            # fired again the ticks it had fired, their keys pruned)
            since = max(want.created_at, r.last_tick or 0)
            return {**fresh, "created_at": want.created_at, "next_fire_at": want.first_tick(since)}

        return await self.change(spec.schedule_id, reset)


_DEFINITION = (
    "tool",
    "arguments",
    "cron",
    "every_seconds",
    "timezone",
    "start_at",
    "end_at",
    "misfire",
    "max_catch_up",
    "overlap",
    "priority",
    "operation_type",
)


def _definition(rec: ScheduleRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in _DEFINITION}


def _scope(viewer: Viewer | None) -> str | None:
    """The principal whose schedules `viewer` lists: its own (an admin's, or none given: None, every one)."""
    return viewer.scope if viewer is not None else None


def _status(job: JobRecord | None) -> str | None:
    return None if job is None else job.status.value


def _new_id(spec: ScheduleSpec) -> str:
    return spec.schedule_id or f"sch_{os.urandom(8).hex()}"


def code_schedule_id(tool: str) -> str:
    """The id of the schedule a job tool declares in code (one per tool)."""
    return f"code:{tool}"
