"""vibe-jobs: turn any tool into a background job, over MCP or as a library."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vibe_jobs.context import JobContext
from vibe_jobs.errors import (
    BadJobTool,
    ConfigError,
    DependencyFailed,
    DuplicateJob,
    InvalidArguments,
    InvalidParams,
    InvalidTask,
    InvalidTransition,
    JobCancelled,
    JobError,
    JobNotFound,
    JobTimeout,
    NonRetryableError,
    ParamsTooLarge,
    ProcessLimit,
    QueueFull,
    ResourceLimitExceeded,
    ResultAlreadySet,
    StaleWrite,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreUnavailable,
    UnknownDependency,
    UnknownTool,
)
from vibe_jobs.events import EventBus, EventType, JobEvent
from vibe_jobs.jobtool import JobToolSpec, job_tool, plain_tool
from vibe_jobs.manager import JobManager, JobPage
from vibe_jobs.models import (
    Job,
    JobDetails,
    JobMetrics,
    JobQueueConfig,
    JobRecord,
    JobStatusMessage,
    PollingRecommendation,
    Priority,
    ResourceRequirements,
    TaskMetadata,
    TaskSpec,
)
from vibe_jobs.polling import PollingPolicy
from vibe_jobs.questions import Elicitation, Sample
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus

if TYPE_CHECKING:  # what `JobServer` is to a type checker; at run time it is imported on first use (below)
    from vibe_jobs.server.jobserver import JobServer

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # JobServer pulls in the MCP SDK; import it only when asked for (the core stays MCP-free).
    if name == "JobServer":
        from vibe_jobs.server.jobserver import JobServer

        return JobServer
    raise AttributeError(name)


__all__ = [
    "BadJobTool",
    "ConfigError",
    "DependencyFailed",
    "DuplicateJob",
    "Elicitation",
    "EventBus",
    "EventType",
    "InvalidArguments",
    "InvalidParams",
    "InvalidTask",
    "InvalidTransition",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobDetails",
    "JobError",
    "JobEvent",
    "JobManager",
    "JobMetrics",
    "JobNotFound",
    "JobPage",
    "JobQueueConfig",
    "JobRecord",
    "JobServer",
    "JobStatus",
    "JobStatusMessage",
    "JobTimeout",
    "JobToolSpec",
    "NonRetryableError",
    "ParamsTooLarge",
    "PollingPolicy",
    "PollingRecommendation",
    "Priority",
    "ProcessLimit",
    "QueueFull",
    "ResourceLimitExceeded",
    "ResourceRequirements",
    "ResultAlreadySet",
    "RetryPolicy",
    "Sample",
    "Settings",
    "StaleWrite",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreUnavailable",
    "TaskMetadata",
    "TaskSpec",
    "UnknownDependency",
    "UnknownTool",
    "__version__",
    "job_tool",
    "plain_tool",
]
