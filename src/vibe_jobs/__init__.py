"""vibe-jobs: turn any tool into a background job, over MCP or as a library."""

from __future__ import annotations

from vibe_jobs.errors import (
    ConfigError,
    DependencyFailed,
    InvalidParams,
    InvalidTransition,
    JobCancelled,
    JobError,
    JobNotFound,
    JobTimeout,
    NonRetryableError,
    ParamsTooLarge,
    QueueFull,
    ResourceLimitExceeded,
    ResultAlreadySet,
    StaleWrite,
    StoreError,
    UnknownDependency,
    UnknownTool,
)
from vibe_jobs.events import EventBus, EventType, JobEvent
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
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DependencyFailed",
    "EventBus",
    "EventType",
    "InvalidParams",
    "InvalidTransition",
    "Job",
    "JobCancelled",
    "JobDetails",
    "JobError",
    "JobEvent",
    "JobManager",
    "JobMetrics",
    "JobNotFound",
    "JobPage",
    "JobQueueConfig",
    "JobRecord",
    "JobStatus",
    "JobStatusMessage",
    "JobTimeout",
    "NonRetryableError",
    "ParamsTooLarge",
    "PollingPolicy",
    "PollingRecommendation",
    "Priority",
    "QueueFull",
    "ResourceLimitExceeded",
    "ResourceRequirements",
    "ResultAlreadySet",
    "Settings",
    "StaleWrite",
    "StoreError",
    "TaskMetadata",
    "TaskSpec",
    "UnknownDependency",
    "UnknownTool",
    "__version__",
]
