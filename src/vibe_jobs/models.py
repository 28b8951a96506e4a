"""Data models: the internal job record and the wire models (camelCase, epoch milliseconds).

`JobRecord` is what stores keep: a slotted dataclass, cheap to create and small to retain.
Everything a client sees is a pydantic model built from a record (`Job.from_record`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from vibe_jobs.identity import LOCAL_PRINCIPAL
from vibe_jobs.questions import question_view
from vibe_jobs.redact import redact_params
from vibe_jobs.states import JobStatus

__all__ = [
    "Job",
    "JobDetails",
    "JobMetrics",
    "JobQueueConfig",
    "JobRecord",
    "JobStarted",
    "JobStatus",
    "JobStatusMessage",
    "OperationType",
    "PollingRecommendation",
    "Priority",
    "ResourceLimits",
    "ResourceRequirements",
    "ResourceUsage",
    "RetryPolicyConfig",
    "TaskMetadata",
    "TaskSpec",
    "TimeoutPolicyConfig",
]

Percent = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]
# The latest instant a job's times may name: 9999-12-31T23:59:59.999Z, the last a datetime can show. Times and
# durations a caller gives are bounded by it, so that a sum of them stays an integer every store can hold.
MAX_EPOCH_MS = 253_402_300_799_999
MAX_COUNT = 2**31 - 1  # a count at most (concurrency, sizes, quotas): past it, a typo no store column takes
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]  # an instant, epoch milliseconds
DurationMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]  # a span of time in milliseconds
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_EPOCH_MS / 1000)]  # a span of time in seconds


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}
_PRIORITY_BY_RANK = {rank: priority for priority, rank in _PRIORITY_RANK.items()}


def priority_of(rank: int) -> Priority:
    """The priority level of a stored rank (an unknown rank counts as medium)."""
    return _PRIORITY_BY_RANK.get(rank, Priority.MEDIUM)


OperationType = Literal["decomposition", "execution", "validation", "analysis", "codemap", "context_enrichment"]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict a client sees (None fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class ResourceRequirements(WireModel):
    memory_mb: NonNegative = Field(default=256, alias="memoryMB")
    cpu_weight: NonNegative = 1
    disk_space_mb: NonNegative = Field(default=0, alias="diskSpaceMB")


MAX_RETRIES = 100  # a job's own maxRetries at most (a caller may ask for 10**23: a job that never ends)


class TaskMetadata(WireModel):
    model_config = ConfigDict(extra="allow")
    session_id: str | None = None
    user_id: str | None = None
    batch_id: str | None = None
    retry_count: Annotated[int, Field(ge=0)] = 0
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] | None = None


class TaskSpec(WireModel):
    """The task-job fields of the specification, all optional."""

    task_id: str | None = None
    project_id: str | None = None
    operation_type: OperationType | None = None
    priority: Priority = Priority.MEDIUM
    estimated_duration: DurationMs | None = None
    resource_requirements: ResourceRequirements | None = None
    dependencies: list[str] = Field(default_factory=list)
    metadata: TaskMetadata | None = None
    timeout_seconds: PositiveSeconds | None = None
    deadline: EpochMs | None = None  # epoch ms: not started by then -> failed; running past it -> cancelled


class JobDetails(WireModel):
    model_config = ConfigDict(extra="allow")
    current_stage: str | None = None
    diagnostics: list[str] = Field(default_factory=list)
    sub_progress: Percent | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PollingRecommendation(WireModel):
    interval: Annotated[int, Field(ge=0)]
    next_check_time: int


class Job(WireModel):
    """A job as clients see it (the specification's Job plus the task fields)."""

    id: str
    tool_name: str
    params: dict[str, Any]
    status: JobStatus
    created_at: int
    updated_at: int
    progress_message: str | None = None
    progress_percentage: Percent | None = None
    result: dict[str, Any] | None = None
    details: JobDetails | None = None
    last_access_time: int | None = None
    access_count: int = 0
    priority: Priority = Priority.MEDIUM
    operation_type: OperationType | None = None
    dependencies: list[str] = Field(default_factory=list)
    estimated_duration: int | None = None
    resource_requirements: ResourceRequirements | None = None
    metadata: TaskMetadata | None = None
    task_id: str | None = None
    project_id: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    attempt: int = 0
    schedule_id: str | None = None
    tick: int | None = None
    run_at: int | None = None
    deadline: int | None = None
    waiting_for: dict[str, Any] | None = None

    def shown(self, *, result: bool = True) -> dict[str, Any]:
        """The job as lists, the operator CLI and pages show it: the wire dict with secret-named arguments
        and `env` values as `***` (`vibe_jobs.redact`); without the result when `result` is False."""
        wire = self.model_dump(mode="json", exclude_none=True, exclude=None if result else {"result"})
        wire["params"] = redact_params(wire.get("params") or {})
        return wire

    @classmethod
    def from_record(cls, rec: JobRecord) -> Job:
        task = rec.task or TaskSpec()
        meta = task.metadata.model_copy(update={"retry_count": rec.retry_count}) if task.metadata else None
        return cls(
            id=rec.id,
            tool_name=rec.tool_name,
            params=rec.params,
            status=rec.status,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            progress_message=rec.progress_message,
            progress_percentage=rec.progress_percentage,
            result=rec.result,
            details=rec.details(),
            last_access_time=rec.last_access_time,
            access_count=rec.access_count,
            priority=task.priority,
            operation_type=task.operation_type,
            dependencies=task.dependencies,
            estimated_duration=task.estimated_duration,
            resource_requirements=task.resource_requirements,
            metadata=meta,
            task_id=task.task_id,
            project_id=task.project_id,
            started_at=rec.started_at,
            finished_at=rec.finished_at,
            attempt=rec.attempt,
            schedule_id=rec.schedule_id,
            tick=rec.tick,
            run_at=rec.run_at,
            deadline=task.deadline,
            waiting_for=question_view(rec),
        )


class JobStatusMessage(WireModel):
    """What get-job-result answers; it may carry more fields than these."""

    model_config = ConfigDict(extra="allow")
    job_id: str
    tool_name: str
    status: JobStatus
    message: str | None = None
    progress: Percent | None = None
    timestamp: int
    polling_recommendation: PollingRecommendation | None = None
    details: JobDetails | None = None
    result: dict[str, Any] | None = None
    rate_limited: bool = False
    access_count: int = 0
    created_at: int | None = None
    updated_at: int | None = None
    metrics: dict[str, Any] | None = None
    waiting_for: dict[str, Any] | None = None  # the unanswered question of a running job (question_view)
    schedule_id: str | None = None  # a fired job's link back to its schedule (list-jobs shows it too)
    tick: int | None = None
    run_at: int | None = None  # a pending job's runAt (not runnable before then), as list-jobs shows it
    deadline: int | None = None


class ResourceUsage(WireModel):
    peak_memory_mb: NonNegative = Field(default=0, alias="peakMemoryMB")
    average_cpu_usage: NonNegative = 0


class JobMetrics(WireModel):
    job_id: str
    start_time: int
    end_time: int | None = None
    duration: int | None = None
    resource_usage: ResourceUsage = Field(default_factory=ResourceUsage)
    performance_score: Annotated[float, Field(ge=0, le=100)] = 0
    error_count: int = 0
    retry_count: int = 0


class RetryPolicyConfig(WireModel):
    max_retries: Annotated[int, Field(ge=0)] = 3
    backoff_multiplier: Annotated[float, Field(ge=1)] = 2
    initial_delay_ms: Annotated[int, Field(ge=0)] = 1000
    max_delay_ms: Annotated[int, Field(ge=0)] = 60_000
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.1


class TimeoutPolicyConfig(WireModel):
    default_timeout_ms: Annotated[int, Field(gt=0)] = 3_600_000
    operation_timeouts: dict[OperationType, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)


class ResourceLimits(WireModel):
    max_memory_mb: NonNegative = Field(default=2048, alias="maxMemoryMB")
    max_cpu_weight: NonNegative = 8
    max_disk_space_mb: NonNegative = Field(default=1024, alias="maxDiskSpaceMB")


PRIORITY_WEIGHTS = {Priority.LOW: 1.0, Priority.MEDIUM: 2.0, Priority.HIGH: 3.0, Priority.CRITICAL: 4.0}
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class JobQueueConfig(WireModel):
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 5
    # the weights given over the defaults: `critical = 10` alone left high and medium at 1, level with low
    priority_weights: dict[Priority, Weight] = Field(default_factory=lambda: dict(PRIORITY_WEIGHTS))
    retry_policy: RetryPolicyConfig = Field(default_factory=RetryPolicyConfig)
    timeout_policy: TimeoutPolicyConfig = Field(default_factory=TimeoutPolicyConfig)
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)

    @field_validator("priority_weights", mode="after")
    @classmethod
    def _over_the_defaults(cls, given: dict[Priority, float]) -> dict[Priority, float]:
        return {**PRIORITY_WEIGHTS, **given}


@dataclass(slots=True)
class JobRecord:
    """A job as stores keep it. `version` increases on every stored change (compare-and-set)."""

    id: str
    tool_name: str
    params: dict[str, Any]
    status: JobStatus
    created_at: int
    updated_at: int
    version: int = 1
    progress_message: str | None = None
    progress_percentage: float | None = None
    result: dict[str, Any] | None = None
    current_stage: str | None = None
    sub_progress: float | None = None
    diagnostics: list[str] | None = None
    detail_metadata: dict[str, Any] | None = None
    last_access_time: int | None = None
    access_count: int = 0
    next_check_time: int | None = None
    task: TaskSpec | None = None
    priority: int = 1
    dedupe_key: str | None = None
    owner: str | None = None
    attempt: int = 0
    retry_count: int = 0
    error_count: int = 0
    run_after: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    cancel_requested: str | None = None
    cpu_seconds: float | None = None
    peak_memory_mb: float | None = None
    trace_context: str | None = None  # W3C traceparent of the tool call that created the job (traces)
    principal: str = LOCAL_PRINCIPAL  # who created the job (vibe_jobs.identity)
    schedule_id: str | None = None  # the schedule that fired this job (i18-schedules)
    tick: int | None = None  # the tick it fired for: (schedule_id, tick) fires once
    waiting_for: dict[str, Any] | None = None  # the question the running job waits on (vibe_jobs.questions)
    stage_history: list[dict[str, Any]] | None = None  # [{stage, at, progress}] each time the stage changed

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def run_at(self) -> int | None:
        """A pending job's runAt as list-jobs and get-job-result show it: not runnable before then."""
        return self.run_after if self.status is JobStatus.PENDING else None

    def changed(self, changes: Mapping[str, Any], *, bump: bool = True) -> JobRecord:
        """A new record: this one with `changes` applied and (with `bump`) the next version; this one is
        left as it was. The values are taken as given, not copied (records and their values are read-only)."""
        key = (tuple(changes), bump)
        build = _BUILDERS.get(key) or _builder(*key)
        return build(self, changes)

    def details(self) -> JobDetails:
        return JobDetails.model_construct(
            current_stage=self.current_stage,
            diagnostics=list(self.diagnostics or ()),
            sub_progress=self.sub_progress,
            metadata=dict(self.detail_metadata or {}),
        )


_FIELDS = tuple(f.name for f in fields(JobRecord))
RecordBuilder = Callable[[JobRecord, Mapping[str, Any]], JobRecord]
# `JobRecord.changed` by the fields a change sets (a handful of shapes): a function that allocates the
# record and sets each field, from the change or from the old record. It skips the dataclass __init__
# (which only sets the fields) and the setattr per changed field that a copy-then-change would need.
_BUILDERS: dict[tuple[tuple[str, ...], bool], RecordBuilder] = {}


def record_builder(keys: tuple[str, ...], bump: bool = True) -> RecordBuilder:
    """`JobRecord.changed` for changes of exactly these fields, in this order: `build(record, changes)`
    (for a caller that keeps it per shape, skipping the lookup)."""
    return _BUILDERS.get((keys, bump)) or _builder(keys, bump)


def _builder(keys: tuple[str, ...], bump: bool) -> RecordBuilder:
    unknown = [key for key in keys if key not in _FIELDS]
    if unknown:  # checked before any name goes into the code below
        raise AttributeError(f"a job record has no field {unknown[0]!r}")
    values = {name: f"r.{name}" for name in _FIELDS}
    values["version"] = "r.version + 1" if bump else "r.version"
    values.update({key: f"c[{key!r}]" for key in keys})
    if "status" in keys:
        # a status given as its text becomes the member (the test inline: this runs on every change)
        values["status"] = "s if type(s := c['status']) is JobStatus else JobStatus(s)"
    body = "".join(f"    new.{name} = {value}\n" for name, value in values.items())
    namespace: dict[str, Any] = {"JobRecord": JobRecord, "_new": object.__new__, "JobStatus": JobStatus}
    exec(f"def build(r, c):\n    new = _new(JobRecord)\n{body}    return new\n", namespace)
    build: RecordBuilder = namespace["build"]
    _BUILDERS[keys, bump] = build
    return build


class JobStarted(WireModel):
    """A job tool's immediate answer: the job exists and runs in the background."""

    job_id: str
    status: JobStatus
    tool_name: str
    message: str
    polling_recommendation: PollingRecommendation
