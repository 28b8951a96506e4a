"""Models: camelCase on the wire, snake_case in Python, and validation errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from vibe_jobs.models import (
    Job,
    JobDetails,
    JobQueueConfig,
    JobRecord,
    JobStatusMessage,
    PollingRecommendation,
    Priority,
    ResourceRequirements,
    TaskMetadata,
    TaskSpec,
)
from vibe_jobs.states import JobStatus

TASK_WIRE: dict[str, Any] = {
    "taskId": "t-1",
    "projectId": "p-1",
    "operationType": "analysis",
    "priority": "high",
    "estimatedDuration": 5000,
    "resourceRequirements": {"memoryMB": 512, "cpuWeight": 2, "diskSpaceMB": 10},
    "dependencies": ["a", "b"],
    "metadata": {"sessionId": "s", "userId": "u", "batchId": "b", "retryCount": 1, "maxRetries": 3},
    "timeoutSeconds": 30,
}


def test_task_spec_reads_camel_case_and_exposes_snake_case() -> None:
    spec = TaskSpec.model_validate(TASK_WIRE)
    assert spec.task_id == "t-1" and spec.project_id == "p-1"
    assert spec.operation_type == "analysis"
    assert spec.priority is Priority.HIGH
    assert spec.estimated_duration == 5000
    assert spec.resource_requirements == ResourceRequirements(memory_mb=512, cpu_weight=2, disk_space_mb=10)
    assert spec.metadata is not None
    assert (spec.metadata.session_id, spec.metadata.user_id, spec.metadata.batch_id) == ("s", "u", "b")
    assert (spec.metadata.retry_count, spec.metadata.max_retries) == (1, 3)
    assert spec.timeout_seconds == 30


def test_task_spec_round_trips_on_the_wire() -> None:
    spec = TaskSpec.model_validate(TASK_WIRE)
    assert spec.wire() == TASK_WIRE
    assert TaskSpec.model_validate(spec.wire()) == spec


def test_snake_case_names_are_accepted_in_python() -> None:
    spec = TaskSpec(operation_type="codemap", estimated_duration=10, priority=Priority.LOW)
    assert spec.wire() == {"operationType": "codemap", "estimatedDuration": 10, "priority": "low", "dependencies": []}


def test_wire_leaves_out_none_fields() -> None:
    wire = JobDetails().wire()
    assert wire == {"diagnostics": [], "metadata": {}}


def _record(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": "a" * 32,
        "tool_name": "echo",
        "params": {"some_param": 1},
        "status": JobStatus.RUNNING,
        "created_at": 1000,
        "updated_at": 2000,
    }
    return JobRecord(**(values | changes))


def test_job_from_record_is_camel_case_on_the_wire() -> None:
    rec = _record(
        progress_message="half",
        progress_percentage=50.0,
        current_stage="parse",
        sub_progress=10.0,
        diagnostics=["d1"],
        detail_metadata={"k": "v"},
        last_access_time=1500,
        access_count=2,
        task=TaskSpec.model_validate(TASK_WIRE),
        retry_count=2,
        started_at=1200,
        attempt=1,
    )
    wire = Job.from_record(rec).wire()
    assert wire == {
        "id": "a" * 32,
        "toolName": "echo",
        "params": {"some_param": 1},  # params are the tool's own: kept as given
        "status": "running",
        "createdAt": 1000,
        "updatedAt": 2000,
        "progressMessage": "half",
        "progressPercentage": 50.0,
        "details": {"currentStage": "parse", "diagnostics": ["d1"], "subProgress": 10.0, "metadata": {"k": "v"}},
        "lastAccessTime": 1500,
        "accessCount": 2,
        "priority": "high",
        "operationType": "analysis",
        "dependencies": ["a", "b"],
        "estimatedDuration": 5000,
        "resourceRequirements": {"memoryMB": 512.0, "cpuWeight": 2.0, "diskSpaceMB": 10.0},
        # the record's retry count wins over the one submitted
        "metadata": {"sessionId": "s", "userId": "u", "batchId": "b", "retryCount": 2, "maxRetries": 3},
        "taskId": "t-1",
        "projectId": "p-1",
        "startedAt": 1200,
        "attempt": 1,
    }


def test_plain_job_defaults() -> None:
    job = Job.from_record(_record(status=JobStatus.PENDING))
    assert job.priority is Priority.MEDIUM
    assert job.dependencies == [] and job.metadata is None and job.resource_requirements is None
    assert job.details == JobDetails()


def test_status_message_wire_names() -> None:
    msg = JobStatusMessage(
        job_id="j",
        tool_name="echo",
        status=JobStatus.PENDING,
        timestamp=5,
        polling_recommendation=PollingRecommendation(interval=1000, next_check_time=1005),
        rate_limited=True,
    )
    assert msg.wire() == {
        "jobId": "j",
        "toolName": "echo",
        "status": "pending",
        "timestamp": 5,
        "pollingRecommendation": {"interval": 1000, "nextCheckTime": 1005},
        "rateLimited": True,
        "accessCount": 0,
    }


def test_status_message_allows_extra_fields_but_job_does_not() -> None:
    msg = JobStatusMessage.model_validate(
        {"jobId": "j", "toolName": "t", "status": "running", "timestamp": 1, "somethingNew": 1}
    )
    assert msg.wire()["somethingNew"] == 1
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"operationType": "analysis", "bogus": 1})
    assert _locs(info.value) == [("bogus",)]


def test_task_metadata_keeps_extra_keys() -> None:
    meta = TaskMetadata.model_validate({"sessionId": "s", "traceId": "x"})
    assert meta.wire() == {"sessionId": "s", "traceId": "x", "retryCount": 0}


def _locs(exc: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(err["loc"]) for err in exc.errors()]


@pytest.mark.parametrize(
    ("model", "data", "loc", "words"),
    [
        (JobStatusMessage, {"progress": 101}, ("progress",), "less than or equal to 100"),
        (JobStatusMessage, {"progress": -1}, ("progress",), "greater than or equal to 0"),
        (JobDetails, {"subProgress": 100.5}, ("subProgress",), "less than or equal to 100"),
        (TaskSpec, {"priority": "urgent"}, ("priority",), "'low', 'medium', 'high' or 'critical'"),
        (TaskSpec, {"operationType": "deploy"}, ("operationType",), "'decomposition'"),
        (TaskSpec, {"estimatedDuration": -5}, ("estimatedDuration",), "greater than or equal to 0"),
        (TaskSpec, {"timeoutSeconds": 0}, ("timeoutSeconds",), "greater than 0"),
        (ResourceRequirements, {"memoryMB": -1}, ("memoryMB",), "greater than or equal to 0"),
        (ResourceRequirements, {"cpuWeight": -0.5}, ("cpuWeight",), "greater than or equal to 0"),
        (TaskSpec, {"resourceRequirements": {"memoryMB": -1}}, ("resourceRequirements", "memoryMB"), ">= 0"),
        (TaskSpec, {"metadata": {"retryCount": -1}}, ("metadata", "retryCount"), "greater than or equal to 0"),
        (JobQueueConfig, {"maxConcurrentJobs": 0}, ("maxConcurrentJobs",), "greater than or equal to 1"),
        (JobQueueConfig, {"retryPolicy": {"jitter": 2}}, ("retryPolicy", "jitter"), "less than or equal to 1"),
    ],
)
def test_validation_errors_name_the_field(
    model: type[BaseModel], data: dict[str, Any], loc: tuple[str, ...], words: str
) -> None:
    if model is JobStatusMessage:
        data = {"jobId": "j", "toolName": "t", "status": "running", "timestamp": 1, **data}
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert _locs(info.value) == [loc]
    text = str(info.value)
    assert ".".join(loc) in text
    if words == ">= 0":
        words = "greater than or equal to 0"
    assert words in info.value.errors()[0]["msg"]


def test_validation_by_python_name_names_the_python_field() -> None:
    with pytest.raises(ValidationError) as info:
        Job(
            id="j",
            tool_name="t",
            params={},
            status=JobStatus.RUNNING,
            created_at=1,
            updated_at=1,
            progress_percentage=150,
        )
    assert _locs(info.value) == [("progress_percentage",)]  # the name the caller used


def test_priority_rank_orders_priorities() -> None:
    assert sorted(Priority, key=lambda p: p.rank) == [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL]
    assert [p.value for p in Priority] == ["low", "medium", "high", "critical"]


def test_status_values_are_the_wire_values() -> None:
    assert [s.value for s in JobStatus] == ["pending", "running", "completed", "failed", "cancelled"]
    assert JobStatus("running") is JobStatus.RUNNING


def test_record_details_copy_the_record() -> None:
    rec = _record(diagnostics=["x"], detail_metadata={"a": 1})
    details = rec.details()
    details.diagnostics.append("y")
    details.metadata["b"] = 2
    assert rec.diagnostics == ["x"] and rec.detail_metadata == {"a": 1}
