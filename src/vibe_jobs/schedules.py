"""A schedule: a job tool call that fires on a timing (`firing.py`), kept by the store like a job.

`ScheduleRecord` is what stores keep; `Schedule` is what clients see (camelCase, epoch milliseconds);
`ScheduleSpec` is what a client asks for, checked whole before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from vibe_jobs.firing import MAX_CRON_CHARS, Misfire, Overlap, Timing, check_cron, check_zone, next_tick
from vibe_jobs.identity import LOCAL_PRINCIPAL
from vibe_jobs.models import MAX_EPOCH_MS, EpochMs, OperationType, Priority, WireModel
from vibe_jobs.redact import redact_params

__all__ = ["SCHEDULE_FIELDS", "Misfire", "Overlap", "Schedule", "ScheduleRecord", "ScheduleSpec"]


MAX_TOOL_CHARS = 256
MAX_ZONE_CHARS = 64  # the longest IANA name has 32
MAX_CATCH_UP = 1000


def _no_bool(value: Any) -> Any:
    """A number given as JSON true or false is refused: taken as 1, `everySeconds: true` fired every second."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


_NUMBER = BeforeValidator(_no_bool)  # after a Field's bounds: before them, they were left out of the JSON schema

# a schedule's bounded fields: the one rule for ScheduleSpec and for the schedule-job tool's input schema
ToolName = Annotated[str, Field(max_length=MAX_TOOL_CHARS)]
CronText = Annotated[str, Field(max_length=MAX_CRON_CHARS)]
EverySeconds = Annotated[float, Field(ge=1, le=MAX_EPOCH_MS / 1000), _NUMBER]
ZoneName = Annotated[str, Field(max_length=MAX_ZONE_CHARS)]
CatchUp = Annotated[int, Field(ge=1, le=MAX_CATCH_UP), _NUMBER]
At = Annotated[EpochMs, _NUMBER]


class ScheduleSpec(WireModel):
    """A schedule as a client asks for it (the tool's arguments are checked by the tool, not here)."""

    # lengths capped before anything is parsed: a refusal that names a value stays short
    tool: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)
    cron: CronText | None = None
    every_seconds: EverySeconds | None = None
    timezone: ZoneName = "UTC"
    start_at: At | None = None
    end_at: At | None = None
    paused: bool = False
    misfire: Misfire = Misfire.RUN_ONCE
    max_catch_up: CatchUp = 10
    overlap: Overlap = Overlap.ALLOW
    priority: Priority = Priority.MEDIUM
    operation_type: OperationType | None = None
    schedule_id: str | None = None

    @model_validator(mode="after")
    def _timing(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give exactly one of cron and everySeconds")
        if self.cron is not None:
            self.cron = check_cron(self.cron)
        check_zone(self.timezone)
        if self.start_at is not None and self.end_at is not None and self.end_at < self.start_at:
            raise ValueError("endAt is before startAt")
        return self


@dataclass(slots=True)
class ScheduleRecord:
    """A schedule as stores keep it. `version` increases on every stored change (compare-and-set)."""

    schedule_id: str
    tool: str
    arguments: dict[str, Any]
    cron: str | None
    every_seconds: float | None
    timezone: str
    start_at: int | None
    end_at: int | None
    paused: bool
    misfire: str
    max_catch_up: int
    overlap: str
    priority: str
    operation_type: str | None
    last_fired_at: int | None
    next_fire_at: int | None
    created_at: int
    updated_at: int
    version: int = 1
    last_job_id: str | None = None
    last_tick: int | None = None
    skipped: int = 0  # due ticks passed over (misfires, overlaps) since the schedule was created
    principal: str = LOCAL_PRINCIPAL  # who created it: its jobs are that principal's (vibe_jobs.identity)

    @classmethod
    def from_spec(cls, spec: ScheduleSpec, schedule_id: str, now: int) -> ScheduleRecord:
        rec = cls(
            schedule_id,
            spec.tool,
            dict(spec.arguments),
            spec.cron,
            spec.every_seconds,
            spec.timezone,
            spec.start_at,
            spec.end_at,
            spec.paused,
            spec.misfire.value,
            spec.max_catch_up,
            spec.overlap.value,
            spec.priority.value,
            spec.operation_type,
            None,
            None,
            now,
            now,
        )
        rec.next_fire_at = rec.first_tick(now)
        return rec

    def timing(self) -> Timing:
        every = None if self.every_seconds is None else round(self.every_seconds * 1000)
        return Timing(self.cron, every, self.timezone, self.start_at, self.end_at, self.created_at)

    def first_tick(self, now: int) -> int | None:
        """The first tick after `now` (creation, resumption)."""
        return next_tick(self.timing(), now)

    def changed(self, changes: Mapping[str, Any]) -> ScheduleRecord:
        return replace(self, **changes, version=self.version + 1)


SCHEDULE_FIELDS = tuple(f.name for f in fields(ScheduleRecord))


class Schedule(WireModel):
    """A schedule: secret-named arguments and env values are shown as ***; lastOutcome is the status of the job
    it fired last."""

    # this docstring is its schema's description, read by agents; clients and the operator
    # CLI see it so (`redact_params`)

    schedule_id: str
    tool: str
    arguments: dict[str, Any]
    cron: str | None = None
    every_seconds: float | None = None
    timezone: str
    start_at: int | None = None
    end_at: int | None = None
    paused: bool
    misfire: Misfire
    max_catch_up: int
    overlap: Overlap
    priority: Priority
    operation_type: OperationType | None = None
    last_fired_at: int | None = None
    next_fire_at: int | None = None
    created_at: int
    last_job_id: str | None = None
    last_tick: int | None = None
    last_outcome: str | None = None
    skipped: int = 0

    def timing_text(self) -> str:
        """Its timing as tables show it: the cron with the zone it is read in (unless UTC), or its period."""
        if self.cron is None:
            return f"every {self.every_seconds:g} s"
        return self.cron if self.timezone == "UTC" else f"{self.cron} ({self.timezone})"

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict: None fields left out, but for `lastFiredAt` and `nextFireAt`, always there
        (null before the first firing, and once past endAt), as job-stats shows them."""
        wire = super().wire()
        wire.setdefault("lastFiredAt", None)
        wire.setdefault("nextFireAt", None)
        return wire

    @classmethod
    def from_record(cls, rec: ScheduleRecord, last_outcome: str | None = None) -> Schedule:
        values = {f: getattr(rec, f) for f in SCHEDULE_FIELDS if f not in ("updated_at", "version", "principal")}
        values["arguments"] = redact_params(rec.arguments)
        return cls.model_validate({**values, "last_outcome": last_outcome})
