"""Build the MCPServer: job tools, plain tools, control tools, logging/setLevel and the health route."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, EmptyResult, SetLevelRequestParams, TextContent
from starlette.requests import Request
from starlette.responses import JSONResponse

from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import configure_logging, get_logger, own_stdlib_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.server.answers import encodable_answers
from vibe_jobs.server.auth import AuthSetup, Identity
from vibe_jobs.server.control import PROTOCOL, ControlTools
from vibe_jobs.server.hooks import EXTRA_TOOLS, run_build_hooks
from vibe_jobs.server.http.dashboard import Dashboard, add_dashboard
from vibe_jobs.server.http.guard import Guard
from vibe_jobs.server.messages import unknown_tool_text
from vibe_jobs.server.resources import JobResourceHub, register_job_resources
from vibe_jobs.server.scheduletools import ScheduleTools
from vibe_jobs.server.sdk import add_request_handler
from vibe_jobs.server.tasks import TasksExtension
from vibe_jobs.server.wrap import job_mcp_tool

INSTRUCTIONS = "vibe-jobs runs long tools as background jobs. A job tool answers at once with a jobId. " + PROTOCOL

# MCP log levels -> ours
LEVELS = {
    "debug": "debug", "info": "info", "notice": "info", "warning": "warning",
    "error": "error", "critical": "critical", "alert": "critical", "emergency": "critical",
}  # fmt: skip

log = get_logger("vibe_jobs.server")


def build_mcp(
    manager: JobManager,
    specs: Mapping[str, JobToolSpec],
    plain_tools: list[Tool],
    *,
    name: str = "vibe-jobs",
    instructions: str | None = None,
    auth: AuthSetup | None = None,
    middleware: Sequence[ServerMiddleware[Any]] = (),
) -> MCPServer[Any]:
    """The MCPServer with every tool registered; `manager` must be running while it serves. With `auth`
    (HTTP), requests need a bearer token and every surface sees only its caller's jobs."""
    auth = auth or AuthSetup()
    identity = Identity(required=auth.enabled)
    job_tools = {spec_name: job_mcp_tool(manager, spec, identity) for spec_name, spec in specs.items()}
    schedules = Schedules(manager, specs)
    control = ControlTools(manager, specs, identity, schedules)
    tools = [
        *job_tools.values(),
        *plain_tools,
        *EXTRA_TOOLS,
        *control.tools(),
        *ScheduleTools(schedules, identity).tools(),
    ]
    tasks, hub = TasksExtension(manager, specs, identity), JobResourceHub(manager, identity=identity)
    own_stdlib_logging()  # before MCPServer, which would print Python's logging unredacted
    mcp: MCPServer[Any] = MCPServer(
        name,
        instructions=instructions or INSTRUCTIONS,
        version=_version(),
        tools=tools,
        log_level=cast(Any, manager.settings.log_level.upper()),
        extensions=[tasks],
        subscriptions=hub.bus,
        middleware=[
            identity.track,  # first: every request notes its viewer on its connection
            tasks.list_tools_middleware,
            tasks.listen_middleware,
            hub.track_listen,
            encodable_answers({t.name for t in plain_tools}),
            *middleware,
        ],
        token_verifier=auth.verifier,
        auth=auth.settings,
    )
    mcp.middleware.append(_unknown_tool_hint(mcp))
    _add_set_level(mcp, manager, identity)
    _add_health(mcp, manager)
    add_dashboard(mcp, Dashboard(manager, Guard(bearer=auth.admin_check()), tools=specs))  # admin only with auth
    register_job_resources(mcp, hub)
    run_build_hooks(mcp)
    return mcp


def _version() -> str:
    from vibe_jobs import __version__

    return __version__


def _unknown_tool_hint(mcp: MCPServer[Any]) -> ServerMiddleware[Any]:
    """Server middleware: a call to a tool this server does not have is refused naming the tool most likely meant
    and the tools it has (the SDK said only 'Unknown tool: get_job_result'). Only a refused call pays for it."""

    async def hint(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        name = ctx.params.get("name") if ctx.method == "tools/call" and isinstance(ctx.params, dict) else None
        if not isinstance(name, str) or not _is_error(result):
            return result
        tools = [tool.name for tool in await mcp.list_tools()]
        if name in tools:
            return result
        return CallToolResult(content=[TextContent(type="text", text=unknown_tool_text(name, tools))], is_error=True)

    return hint


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, dict) and result.get("isError") is True


def _add_set_level(mcp: MCPServer[Any], manager: JobManager, identity: Identity) -> None:
    """Answer logging/setLevel (the SDK's MCPServer has no public hook for it). It sets the level of the server's
    own log (stderr), which is the operator's: only a caller who may see the server's figures changes it (an
    admin, or the one user of a server without authentication). Another principal's request is answered and
    changes nothing: it silenced every warning, for everyone (review helper-53)."""

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        level = LEVELS.get(str(params.level), "info")
        viewer = identity.viewer()
        if identity.sees_server_figures(viewer):
            configure_logging(level, manager.settings.log_format)
        else:
            log.info("logging.set_level_ignored", principal=viewer.principal, level=level)
        return EmptyResult()

    add_request_handler(mcp, "logging/setLevel", SetLevelRequestParams, set_level)


def _add_health(mcp: MCPServer[Any], manager: JobManager) -> None:
    @mcp.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(request: Request) -> JSONResponse:
        stats = await manager.statistics()
        code = 503 if stats.health.status == "unhealthy" else 200
        return JSONResponse({"status": stats.health.status, "reasons": stats.health.reasons}, status_code=code)
