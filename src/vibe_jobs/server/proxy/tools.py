"""The proxy's tools: a job tool per upstream tool (its name, description, input schema and annotations), or,
for the tools named `--direct`, a tool that forwards the call and answers within the request.

A job calls the upstream tool and its CallToolResult (content, structured content, isError) becomes the job's
result unchanged. Upstream progress becomes job progress (percent from progress/total, the message as the stage);
a cancel or a time-out cancels the call, which sends `notifications/cancelled` upstream. A tool annotated
`idempotentHint: true` is `retry_safe`: interrupted by the upstream's exit (or the proxy's), it runs again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, ToolAnnotations
from mcp_types import Tool as UpstreamTool
from pydantic import ValidationError

from vibe_jobs.context import JobContext
from vibe_jobs.errors import InvalidArguments, InvalidTransition, StaleWrite
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import diagnostic_line
from vibe_jobs.server.proxy.schema import SchemaArguments
from vibe_jobs.server.proxy.upstream import ProgressFn, Upstream, UpstreamExited
from vibe_jobs.server.schemas import or_error
from vibe_jobs.server.wrap import RawArguments, error_result


def job_spec(upstream: Upstream, tool: UpstreamTool) -> JobToolSpec:
    """The job tool that runs `tool` on `upstream`."""
    name = upstream.spec.prefixed(tool.name)

    async def run(ctx: JobContext, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await upstream.call_tool(tool.name, arguments, ctx, job_progress(ctx))
        return call_result(result)

    return JobToolSpec(
        name=name,
        fn=run,
        description=tool.description or f"{tool.name} on {upstream.spec.label}",
        retry_safe=idempotent(tool),
        context_param="ctx",
        title=tool.title,
        argument_rule=SchemaArguments(name, tool.input_schema),
        annotations=annotations_of(tool),
        verbatim_description=True,  # the upstream's description, unchanged (its answer says what to call next)
    )


RESULT_FIELDS = ("content", "structuredContent", "isError", "_meta")  # a CallToolResult's own fields


def call_result(result: CallToolResult) -> dict[str, Any]:
    """The upstream's CallToolResult as the job's result: its fields, unchanged (the SDK's wire extras,
    such as the 2026 `resultType`, are the SDK's business)."""
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {key: wire[key] for key in RESULT_FIELDS if key in wire}


def job_progress(ctx: JobContext) -> ProgressFn:
    """Upstream `notifications/progress` -> the job's progress: percent from progress/total, message as stage.

    The SDK runs each progress callback as a task of its own, so a burst of notifications was as many writes of
    one record racing each other: out of order (the job's progress went back) and, on PostgreSQL, thousands of
    retried compare-and-sets keeping the job from its result for minutes. Here one write runs at a time, of the
    latest report: a report that came while another was written waits, and gives way to a later one."""
    latest: list[tuple[float, float | None, str | None]] = []  # the newest report not written yet
    writing = anyio.Lock()  # fair: writes in the order the reports came

    async def report(progress: float, total: float | None, message: str | None) -> None:
        latest[:] = [(progress, total, message)]
        async with writing:
            if not latest:
                return  # written already, by the write that found it the latest
            progress, total, message = latest.pop()
            percent = max(0.0, min(100.0, progress / total * 100)) if total else None
            with contextlib.suppress(InvalidTransition, StaleWrite):  # the job ended meanwhile
                await ctx.progress(percent, message, stage=message)

    return report


def direct_tool(upstream: Upstream, tool: UpstreamTool) -> Tool:
    """A tool that forwards the call upstream and answers within the request (`--direct`); upstream progress
    reaches the caller as progress of its request."""
    name = upstream.spec.prefixed(tool.name)
    rule = SchemaArguments(name, tool.input_schema)

    async def handler(ctx: Context, arguments: dict[str, Any]) -> CallToolResult:
        try:
            checked = rule.check(arguments)
        except InvalidArguments as exc:
            return error_result(str(exc), exc.code, unknown=exc.unknown, accepted=exc.accepted)
        try:
            async with upstream.calling() as conn:  # a cancelled request cancels the call: notifications/cancelled
                try:
                    return await conn.client.call_tool(tool.name, checked, progress_callback=ctx.report_progress)
                except (ValidationError, RuntimeError) as exc:  # its result: not MCP's shape, not its output schema's
                    return error_result(unusable_result(upstream, tool.name, exc), "upstream_result")
        except UpstreamExited as exc:  # as a job's call fails; the upstream is being connected again
            return error_result(f"upstream {exc.upstream}: {exc}", "upstream_exited")

    return Tool(
        fn=handler,
        name=name,
        title=tool.title,
        description=tool.description or f"{tool.name} on {upstream.spec.label}",
        parameters=rule.schema(),
        fn_metadata=RawArguments(arg_model=ArgModelBase, output_schema=or_error_of(tool.output_schema)),
        is_async=True,
        context_kwarg="ctx",
        annotations=tool.annotations,
    )


def unusable_result(upstream: Upstream, tool: str, exc: Exception) -> str:
    """Why the SDK's client could not take `tool`'s result (a direct tool's caller reads it; the SDK's server would
    say only "Error executing tool", as for a crash of its own)."""
    said = diagnostic_line(f"{type(exc).__name__}: {exc}")
    return f"upstream {upstream.spec.label} answered {tool} with a result that cannot be used: {said}"


def or_error_of(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The upstream tool's output schema, admitting our own refusals of bad arguments too."""
    return None if schema is None else or_error(schema)


def idempotent(tool: UpstreamTool) -> bool:
    return bool(tool.annotations is not None and tool.annotations.idempotent_hint)


def annotations_of(tool: UpstreamTool) -> dict[str, Any] | None:
    value: ToolAnnotations | None = tool.annotations
    return value.model_dump(mode="json", by_alias=True, exclude_none=True) if value is not None else None
