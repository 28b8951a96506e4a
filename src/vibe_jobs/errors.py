"""Errors: one root with a stable `code`, a subclass per condition.

The class docstring is the default message; context attributes (`job_id`, ...) are kept so
callers can act on them. The MCP layer maps `code` to the error it returns.
"""

from __future__ import annotations

from typing import Any, ClassVar


class JobError(Exception):
    """A job operation failed."""

    code: ClassVar[str] = "job_error"

    def __init__(self, message: str | None = None, *, job_id: str | None = None, **context: Any) -> None:
        self.job_id = job_id
        self.context = context
        super().__init__(message or (self.__doc__ or self.code).strip())

    @property
    def message(self) -> str:
        return str(self)


class JobNotFound(JobError):
    """No job with that id."""

    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job with id '{job_id}'", job_id=job_id)


class InvalidTransition(JobError):
    """The job cannot move between these states."""

    code = "invalid_transition"

    def __init__(self, job_id: str, current: str, target: str, reason: str | None = None) -> None:
        self.current, self.target = current, target
        text = f"Job '{job_id}' cannot go from {current} to {target}"
        super().__init__(f"{text}: {reason}" if reason else text, job_id=job_id)


class ResultAlreadySet(InvalidTransition):
    """The job already has a result; the first result wins."""

    code = "result_already_set"


class InvalidParams(JobError):
    """The job's parameters are not acceptable."""

    code = "invalid_params"


class InvalidTask(InvalidParams, ValueError):
    """A task mapping (`create_job(task={...})`) with a field that is unknown or wrong: a ValueError too, as
    pydantic's ValidationError it replaces was."""

    code = "invalid_task"


class ParamsTooLarge(InvalidParams):
    """The job's parameters (or an answer to its question: both are stored on the job) are larger than allowed."""

    code = "params_too_large"

    def __init__(self, size: int, limit: int, what: str = "params are") -> None:
        self.size, self.limit = size, limit
        super().__init__(f"{what} {size} bytes serialised; the limit is {limit} bytes")


class QuotaExceeded(JobError):
    """The caller's principal is at one of its quotas; no job was created."""

    code = "quota_exceeded"

    def __init__(
        self, principal: str, what: str, used: int, limit: int, setting: str, nothing_made: str = "no job was created"
    ) -> None:
        self.principal, self.what, self.used, self.limit, self.setting = principal, what, used, limit, setting
        super().__init__(
            f"quota exceeded: principal {principal!r} has {used} {what}, the limit is {limit} ({setting}); "
            + nothing_made
        )


class InvalidArguments(InvalidParams):
    """The arguments do not match the job tool's parameters."""

    retryable: ClassVar[bool] = False  # the same arguments fail the same way on every attempt

    def __init__(self, message: str, *, unknown: list[str], accepted: list[str]) -> None:
        self.unknown, self.accepted = unknown, accepted
        super().__init__(message)


class DependencyFailed(JobError):
    """A job this one depends on did not complete."""

    code = "dependency_failed"


class UnknownDependency(JobError):
    """A dependency names no known job."""

    code = "unknown_dependency"


class JobTimeout(JobError):
    """The job ran longer than its time-out."""

    code = "job_timeout"


class JobCancelled(JobError):
    """The job was cancelled."""

    code = "job_cancelled"


class QueueFull(JobError):
    """The queue holds its maximum number of pending jobs."""

    code = "queue_full"


class ResourceLimitExceeded(JobError):
    """The job asks for more of a resource than the limits allow."""

    code = "resource_limit_exceeded"


class UnknownTool(JobError):
    """No job tool with that name is registered."""

    code = "unknown_tool"


class NonRetryableError(JobError):
    """A failure that must not be retried (raise it from a tool)."""

    code = "non_retryable"


class ProcessLimit(JobError):
    """The server's process reached one of its limits (open files, processes, memory): the job could not go on.

    An outcome of the load, not a fault of the tool: logged without a traceback, once a minute (`job.limit_reached`).
    Retried as the job's retry policy allows (the limit frees as the work running now ends).
    """

    code = "process_limit"


class StoreError(JobError):
    """The job store failed.

    The subclasses name the condition (`StoreUnavailable`, `StoreLocked`, `StoreFull`, `StoreCorrupt`,
    `DuplicateJob`); stores detect it from the driver's error class or code, never from message text.
    `transient` says whether the same operation may succeed when tried again later: retry loops retry
    those and nothing else. A lost race is not a store failure: see `StaleWrite`.
    """

    code = "store_error"
    transient: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, told: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.told = told

    def for_caller(self) -> str:
        """What a caller of the server (an MCP client) is told: the words written for one (`told`), else the
        condition's, with advice when trying again may help. The message itself is the operator's (the server
        log, the CLI): it names the store's place (a host, a schema, a path) and quotes the driver, whose words
        may hold a row's values."""
        if self.told is not None:
            return self.told
        said = (type(self).__doc__ or "The job store failed.").strip().splitlines()[0]
        return f"{said} Try again in a few seconds." if self.transient else f"{said} The server's log says more."


class StoreUnavailable(StoreError):
    """The job store cannot be reached (the connection or its server process was lost)."""

    transient = True


class StoreLocked(StoreError):
    """The job store is locked by another process or transaction (busy, a deadlock, a serialisation failure)."""

    transient = True


class StoreFull(StoreError):
    """The job store has no room (the disk or the database server's resources are exhausted)."""

    transient = True


class StoreCorrupt(StoreError):
    """The job store is not a database of this kind, or it is damaged."""


class DuplicateJob(StoreError):
    """A job with this id exists already."""


class NotWaiting(JobError):
    """The job is not waiting for this answer (it asked nothing, was answered already, or moved on)."""

    code = "job_not_waiting"


class StaleWrite(JobError):
    """The job changed under this writer (its version or attempt no longer matches).

    A sibling of `StoreError`, not a kind of it: the store worked, this writer lost a race, and trying
    the same write again would lose again (re-read the job, or give the write up).
    """

    code = "stale_write"


class ConfigError(JobError):
    """A setting has an invalid value."""

    code = "config_error"


class ScheduleNotFound(JobError):
    """No schedule with that id."""

    code = "schedule_not_found"

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"No schedule with id '{schedule_id}'", schedule_id=schedule_id)


class InvalidSchedule(InvalidParams):
    """The schedule is not acceptable (its timing, timezone, tool or arguments)."""

    code = "invalid_schedule"


class BadJobTool(TypeError):
    """A job tool declared wrong (a parameter it cannot take, a schedule that is not a cron): raised where it
    is declared. A TypeError, as a wrong signature is."""


class ToolNameTaken(BadJobTool, ValueError):
    """A tool registered under a name another tool of the server has (the server's own tools included)."""


def refusal_in(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The ConfigError a task group raised when it is all the group holds (a refusal, such as a port another
    server took, then comes out as itself: one line and exit 2), else None."""
    refused, other = group.split(ConfigError)
    return first_leaf(refused) if refused is not None and other is None else None


def first_leaf(exc: BaseException) -> BaseException:
    """The first error inside `exc`, looking through exception groups (task groups wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
