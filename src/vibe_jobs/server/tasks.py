"""The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663, spec 2026-07-28) over our jobs.

A 2026-07-28 client that declares the extension in a `tools/call` request's capabilities gets, for a
job tool, a task handle (`resultType: "task"`) instead of the jobId answer; the task id is the job id.
It then polls `tasks/get` (the final CallToolResult is inlined once the job completes) and may send
`tasks/cancel`. Every other client, every plain tool and every control tool is unchanged.

Status mapping: pending, running -> `working` (`input_required`, with `inputRequests`, while the job waits
for an answer, which `tasks/update {inputResponses}` gives); completed -> `completed` (result inlined); cancelled ->
`cancelled`. A failed job is a tool whose call ended with an isError result, which the spec files under
`completed` with that result (`failed` is reserved for JSON-RPC errors); only a failed job without a
stored result is reported as `failed` with an internal error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.jsonrpc import HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from vibe_jobs.arguments import shown
from vibe_jobs.blocks import shown_blocks
from vibe_jobs.errors import InvalidParams, InvalidTransition, JobError, JobNotFound, NotWaiting
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager, status_text
from vibe_jobs.models import JobRecord, JobStatusMessage
from vibe_jobs.questions import open_question, response_to_pending
from vibe_jobs.server.answers import carried_result
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.wrap import caller_text
from vibe_jobs.states import JobStatus

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
PROGRESS_META_KEY = "vibe-jobs/progress"  # percent done, in a working task's `_meta`
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
TASK_STATUS = {
    JobStatus.PENDING: "working", JobStatus.RUNNING: "working", JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "completed", JobStatus.CANCELLED: "cancelled",
}  # fmt: skip


class TaskIdParams(RequestParams):
    """`tasks/get` and `tasks/cancel` params."""

    task_id: str = Field(alias="taskId")


class UpdateTaskParams(TaskIdParams):
    """`tasks/update` params: responses keyed by the `inputRequests` keys (the job's question id)."""

    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def declared_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Did this 2026-07-28 request declare the extension? (On that era capabilities are per request.)"""
    if ctx.protocol_version not in MODERN:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def not_found(action: str, job_id: str) -> MCPError:
    """The refusal of an unknown task id, naming it cut short (a caller may send one of megabytes)."""
    message = f"Failed to {action} task: Task not found"
    return MCPError(code=INVALID_PARAMS, message=message, data={"taskId": shown(job_id)})


def check_routing_header(ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
    """The spec's routing header over streamable HTTP: a tasks/* request's `Mcp-Name` is its taskId. One naming
    another task is refused as the SDK refuses a mismatched `Mcp-Name` on tools/call (-32020, HTTP 400), since
    an intermediary routed the request by it. A request without one is served (FastMCP 4 sends none)."""
    headers = getattr(ctx.request, "headers", None)
    raw = headers.get(MCP_NAME_HEADER) if headers is not None else None
    if raw is not None and decode_header_value(raw) != task_id:
        message = f"{MCP_NAME_HEADER} header does not match the request body's 'taskId' parameter"
        raise MCPError(code=HEADER_MISMATCH, message=message)


class TasksExtension(Extension):
    """Serve job tools as tasks to clients that declare `io.modelcontextprotocol/tasks`."""

    identifier = TASKS_EXTENSION

    def __init__(self, manager: JobManager, specs: Mapping[str, JobToolSpec], identity: Identity | None = None) -> None:
        self.manager, self.specs = manager, specs
        self.identity = identity or Identity()

    def settings(self) -> dict[str, Any]:
        return {}  # the spec defines no settings: an empty object advertises support

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskIdParams, self.get_task, protocol_versions=MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self.update_task, protocol_versions=MODERN),
            MethodBinding("tasks/cancel", TaskIdParams, self.cancel_task, protocol_versions=MODERN),
        ]

    # -- tools/call ------------------------------------------------------------------------

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """A job tool called by a declaring client answers with a task handle for the job it started."""
        if params.name not in self.specs or not declared_tasks(ctx):
            return await call_next(ctx)
        result = await call_next(ctx)  # validation, refusals, job creation: all as in the jobId protocol
        started = result.structured_content if isinstance(result, CallToolResult) and not result.is_error else None
        job_id = (started or {}).get("jobId")
        if not isinstance(job_id, str):
            return result  # refused or invalid: answered synchronously, as the spec allows
        rec = await self.manager.get_record(job_id, self.identity.viewer())  # stored before create_job returned
        return {"resultType": "task", **self.task(rec, self.manager.settings.poll_base_ms)}

    # -- tasks/* ---------------------------------------------------------------------------

    async def get_task(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)
        check_routing_header(ctx, params.task_id)
        viewer = self.identity.viewer()
        try:
            msg = await self.manager.poll(params.task_id, include_details=False, viewer=viewer)
            rec = await self.manager.get_record(params.task_id, viewer)
        except JobNotFound:
            raise not_found("retrieve", params.task_id) from None
        reco = msg.polling_recommendation
        if rec.result is not None:  # a view for this answer (records are read-only)
            shown = carried_result(rec.result, ctx.request, self.manager.settings.max_answer_bytes, rec.id)
            if shown is not None and "content" in shown:  # read as a CallToolResult: each block one it can hold
                shown = {**shown, "content": shown_blocks(shown["content"])}
            rec = rec.changed({"result": shown}, bump=False)
        return {"resultType": "complete", **self.task(rec, reco.interval if reco else None), **payload(rec, msg)}

    async def update_task(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)
        check_routing_header(ctx, params.task_id)
        try:
            rec = await self.manager.get_record(params.task_id, self.identity.viewer())
            if (found := response_to_pending(rec, params.input_responses)) is not None:
                await self._answer(params.task_id, *found)  # keys not outstanding are ignored, as the spec says
        except JobNotFound:
            raise not_found("update", params.task_id) from None
        return {"resultType": "complete"}

    async def _answer(self, task_id: str, key: str, response: Any) -> None:
        try:
            await self.manager.answer(task_id, response, request_id=key)
        except NotWaiting:
            pass  # a key not (or no longer) outstanding is ignored, as the spec says
        except InvalidParams as exc:
            raise MCPError(code=INVALID_PARAMS, message=f"Invalid input response {key!r}: {exc}") from None

    async def cancel_task(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)
        check_routing_header(ctx, params.task_id)
        try:
            await self.manager.cancel_job(params.task_id, "cancelled by tasks/cancel", self.identity.viewer())
        except JobNotFound:
            raise not_found("cancel", params.task_id) from None
        except InvalidTransition:
            pass  # already finished: acknowledged, the task keeps its terminal status
        except JobError as exc:
            raise MCPError(code=INTERNAL_ERROR, message=f"Failed to cancel task: {caller_text(exc)}") from None
        return {"resultType": "complete"}

    async def list_tools_middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: for a declaring client a job tool answers (in the end) with its real result,
        not the jobId answer, so its listing drops the jobId outputSchema (clients validate against it)."""
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict) and declared_tasks(ctx):
            for tool in result.get("tools") or ():
                if isinstance(tool, dict) and tool.get("name") in self.specs:
                    tool.pop("outputSchema", None)
        return result

    async def listen_middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: a `subscriptions/listen` asking for task status notifications (`taskIds`) from a
        client that did not declare the extension is refused with -32021 naming it, as the spec requires (a
        declaring client's stream is served; this server honours no `taskIds`, which the spec allows)."""
        listen = ctx.method == "subscriptions/listen" and ctx.protocol_version in MODERN
        if listen and _asks_task_notifications(ctx.params):
            require_client_extension(ctx, TASKS_EXTENSION)
        return await call_next(ctx)

    # -- shapes ----------------------------------------------------------------------------

    def task(self, rec: JobRecord, poll_interval_ms: int | None) -> dict[str, Any]:
        """The spec's `Task`; ttlMs counts from creation, and we keep a job `retention` after it ends."""
        end = (rec.finished_at or rec.updated_at) if rec.finished else self.manager.now()
        task: dict[str, Any] = {
            "taskId": rec.id,
            "status": task_status(rec),
            "statusMessage": _status_message(rec),
            "createdAt": iso(rec.created_at),
            "lastUpdatedAt": iso(rec.updated_at),
            "ttlMs": max(0, end - rec.created_at) + self.manager.settings.max_retention_ms,
        }
        if poll_interval_ms is not None:
            task["pollIntervalMs"] = int(poll_interval_ms)
        if not rec.finished and rec.progress_percentage is not None:  # a vendor hint; Task has no progress field
            task["_meta"] = {PROGRESS_META_KEY: rec.progress_percentage}
        return task


def _asks_task_notifications(params: Mapping[str, Any] | None) -> bool:
    """Whether listen params (raw: middleware sees them before the handler checks them) name task ids."""
    notifications = (params or {}).get("notifications")
    return isinstance(notifications, Mapping) and notifications.get("taskIds") is not None


def _status_message(rec: JobRecord) -> str:
    question = open_question(rec)
    if question is None:
        return status_text(rec)
    asked = question["params"].get("message") or "a model reply (sampling)"
    return f"Waiting for an answer: {asked}"


def task_status(rec: JobRecord) -> str:
    if rec.status is JobStatus.FAILED and rec.result is None:
        return "failed"
    if open_question(rec) is not None:
        return "input_required"
    return TASK_STATUS[rec.status]


def payload(rec: JobRecord, msg: JobStatusMessage) -> dict[str, Any]:
    """The status-specific fields of a DetailedTask: the result once completed, the error once failed."""
    status = task_status(rec)
    if status == "completed":
        return {"result": rec.result}
    if status == "failed":
        return {"error": {"code": INTERNAL_ERROR, "message": msg.message or "Job failed"}}
    if status == "input_required" and (question := open_question(rec)) is not None:
        return {"inputRequests": {question["id"]: {"method": question["method"], "params": question["params"]}}}
    return {}
