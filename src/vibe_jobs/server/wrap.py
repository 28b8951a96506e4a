"""Turn a JobToolSpec into an MCP tool that creates a job and answers at once with its id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from vibe_jobs.arguments import ToolArguments
from vibe_jobs.errors import InvalidArguments, JobError, JobNotFound, StoreError
from vibe_jobs.identity import Viewer
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobStarted, JobStatus, TaskSpec
from vibe_jobs.polling import decide
from vibe_jobs.server import tracing
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.messages import started_text
from vibe_jobs.server.schemas import flat_schema, or_error, untitled

log = get_logger("vibe_jobs.server")
STARTED_SCHEMA = or_error(untitled(flat_schema(JobStarted.model_json_schema(by_alias=True))))  # or a refusal


def error_result(message: str, code: str, **extra: Any) -> CallToolResult:
    """An isError answer whose text names the problem (and structured content carrying a stable code)."""
    structured = {"error": {"code": code, "message": message, **extra}}
    return CallToolResult(
        content=[TextContent(type="text", text=message)], structured_content=structured, is_error=True
    )


def job_error_result(exc: JobError) -> CallToolResult:
    """The isError answer to a refused or failed call. A store's failure is told by its condition (the
    server's log has its message: the store's host, schema or path and the driver's words are no caller's)."""
    return error_result(caller_text(exc), exc.code, **({"jobId": exc.job_id} if exc.job_id else {}))


# what a caller whose job id is unknown is told (another principal's job answers the same: it is unknown to them)
UNKNOWN_JOB_HINT = (
    "Pass the jobId exactly as a job tool or submit-job answered it; list-jobs lists the jobs you can read "
    "(finished jobs are kept for a limited time)."
)


def caller_text(exc: JobError) -> str:
    """`exc` as a caller of the server is told it (a store's failure logged whole, as it is not its message)."""
    if isinstance(exc, JobNotFound):
        return f"{exc}. {UNKNOWN_JOB_HINT}"
    if not isinstance(exc, StoreError):
        return str(exc)
    if exc.told is None:
        log.warning("mcp.store_error", error=f"{type(exc).__name__}: {exc}")
    return exc.for_caller()


class RawArguments(FuncMetadata):
    """The SDK's argument hook, handing the call's arguments on as they came: the job tool validates them
    itself (`admit`), with the same rule that every run of the job uses."""

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        return {"arguments": arguments_to_validate}


def refused(exc: InvalidArguments) -> CallToolResult:
    """The isError answer to arguments a tool refuses: the text names each unknown, missing or mistyped
    argument; the structured error lists the unknown and the accepted names."""
    return error_result(str(exc), exc.code, unknown=exc.unknown, accepted=exc.accepted)


def admit(spec: JobToolSpec, arguments: dict[str, Any]) -> dict[str, Any] | CallToolResult:
    """The params a job of `spec` stores for these arguments, or the isError answer that refuses them
    (naming each unknown, missing or mistyped argument, and the accepted ones)."""
    try:
        params = spec.arguments.check(arguments)
    except InvalidArguments as exc:
        return refused(exc)
    if spec.refuse is not None and (reason := spec.refuse(params)) is not None:
        return error_result(reason, "refused")
    return params


async def start_job(
    manager: JobManager,
    spec: JobToolSpec,
    params: dict[str, Any],
    task: TaskSpec | None,
    viewer: Viewer | None,
    *,
    run_at: int | None = None,
) -> CallToolResult:
    """Create the job (of `viewer`'s principal) and build the immediate answer."""
    traceparent = tracing.current_traceparent()
    try:
        job_id = await manager.create_job(
            spec.name, params, task=task, trace_context=traceparent, viewer=viewer, run_at=run_at
        )
    except JobError as exc:
        return job_error_result(exc)
    if traceparent is not None:
        tracing.tag_job(job_id)
    return started_result(manager, job_id, spec.name, run_at)


def started_result(manager: JobManager, job_id: str, tool_name: str, run_at: int | None = None) -> CallToolResult:
    now, interval = manager.now(), manager.settings.poll_base_ms
    if run_at is not None:  # a deferred job is first read when it may run (the polling rule)
        first = decide(
            manager.settings.polling, now=now, finished=False, reads=0, next_check_time=None, runnable_at=run_at
        )
        interval = first.interval or interval
    deferred = run_at if run_at is not None and run_at > now else None  # any runAt still ahead, however near
    next_check_time = now + interval
    said = f"deferred to runAt {run_at}" if deferred is not None else "started"
    started = {  # the JobStarted shape, built directly: this is the hot path of every job tool call
        "jobId": job_id,
        "status": JobStatus.PENDING.value,
        "toolName": tool_name,
        "message": f"Job {said}; poll get-job-result with jobId {job_id}",
        "pollingRecommendation": {"interval": interval, "nextCheckTime": next_check_time},
    }
    text = started_text(job_id, tool_name, interval, next_check_time, manager.settings.max_wait_ms / 1000, deferred)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=started)


def make_handler(
    manager: JobManager, spec: JobToolSpec, identity: Identity
) -> Callable[..., Awaitable[CallToolResult]]:
    async def handler(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        params = admit(spec, arguments)
        if isinstance(params, CallToolResult):
            return params
        task = TaskSpec(operation_type=spec.operation_type) if spec.operation_type else None
        return await start_job(manager, spec, params, task, identity.viewer())

    return handler


JOB_NOTE = (
    "\n\nRuns as a background job: answers at once with a jobId; "
    "then call get-job-result with that jobId at the recommended time (or with waitSeconds)."
)


def job_mcp_tool(manager: JobManager, spec: JobToolSpec, identity: Identity | None = None) -> Tool:
    """The MCP tool for a job function: its input schema is the job tool's arguments model. Its description
    gets a note that it runs as a job, unless the spec's is `verbatim` (a proxied tool keeps its upstream's
    description as it is; its immediate answer says what to call next)."""
    return Tool(
        fn=make_handler(manager, spec, identity or Identity()),
        name=spec.name,
        title=spec.title,
        description=spec.description if spec.verbatim_description else f"{spec.description}{JOB_NOTE}",
        parameters=untitled(spec.arguments.schema(), top=True),
        annotations=ToolAnnotations.model_validate(spec.annotations) if spec.annotations else None,
        fn_metadata=RawArguments(arg_model=ArgModelBase, output_schema=STARTED_SCHEMA),  # arg_model: unused
        is_async=True,
        context_kwarg="ctx",
    )


def checked_tool(fn: Callable[..., Awaitable[Any]], name: str, description: str | None = None) -> Tool:
    """The MCP tool for one of the server's own tools (the control and schedule tools): its arguments are
    checked by the rule of a job tool's (`ToolArguments`), so an unknown argument is refused by name, never
    dropped, and its input schema says `additionalProperties: false`. Its output schema is advertised, flattened
    and admitting a refusal, but the answers (built from the same models) are not validated again on each call."""
    base = Tool.from_function(fn, name=name, description=description)
    rule = ToolArguments(name, fn, skip=base.context_kwarg)
    context_kwarg = base.context_kwarg

    async def handler(ctx: Context, arguments: dict[str, Any]) -> Any:
        try:
            kwargs = rule.typed(arguments)
        except InvalidArguments as exc:
            return refused(exc)
        if context_kwarg is not None:
            kwargs[context_kwarg] = ctx
        return await fn(**kwargs)

    output = base.fn_metadata.output_schema
    advertised = or_error(untitled(flat_schema(output))) if output is not None else None
    return Tool(
        fn=handler,
        name=name,
        title=base.title,
        description=base.description,
        parameters=untitled(rule.schema(), top=True),
        annotations=base.annotations,
        fn_metadata=RawArguments(arg_model=ArgModelBase, output_schema=advertised),
        is_async=True,
        context_kwarg="ctx",
    )
