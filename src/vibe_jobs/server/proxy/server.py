"""ProxyServer: a JobServer in front of upstream MCP servers, each upstream tool a job tool (or a direct one)."""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Collection, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp_types import Tool as UpstreamTool

from vibe_jobs.arguments import shown
from vibe_jobs.logs import get_logger
from vibe_jobs.server.control import CONTROL_TOOL_NAMES, MAX_NAME_CHARS
from vibe_jobs.server.jobserver import JobServer, Transport, run_whole_process
from vibe_jobs.server.proxy import tether
from vibe_jobs.server.proxy.config import ConfigError, UpstreamSpec
from vibe_jobs.server.proxy.passthrough import PassThrough
from vibe_jobs.server.proxy.tools import direct_tool, job_spec
from vibe_jobs.server.proxy.upstream import TOOLS_CHANGED, Backoff, Upstream
from vibe_jobs.server.scheduletools import SCHEDULE_TOOL_NAMES
from vibe_jobs.server.sdk import add_tool_object
from vibe_jobs.server.stopping import STOP_SIGNALS
from vibe_jobs.server.wrap import job_mcp_tool

log = get_logger("vibe_jobs.server.proxy")


class ProxyServer:
    """Serves `server` (its own tools, control tools and job resources) plus the upstreams' tools, resources,
    prompts and completions. `jobs`: only these tools become job tools; `direct`: these answer within the
    request (names as the proxy lists them, `NAME.tool` with several upstreams)."""

    def __init__(
        self,
        server: JobServer,
        upstreams: Sequence[UpstreamSpec],
        *,
        jobs: Collection[str] | None = None,
        direct: Collection[str] = (),
        backoff: Backoff | None = None,
    ) -> None:
        if not upstreams:
            raise ConfigError("no upstream: give -- COMMAND [ARGS...], --upstream-url, --upstream or --config")
        if jobs is not None and direct:
            raise ConfigError("give --jobs or --direct, not both")
        names = [u.name for u in upstreams]
        if len(set(names)) != len(names) or (len(names) > 1 and "" in names):
            raise ConfigError("with several upstreams each needs a name of its own (--upstream NAME=COMMAND)")
        self.server, self.jobs, self.direct = server, jobs, set(direct)
        # the names of the proxy's own tools: an upstream's tool of one of these names is not served (it
        # would take over get-job-result or cancel-job, and see every job id the clients send)
        self.own = CONTROL_TOOL_NAMES | SCHEDULE_TOOL_NAMES | set(server.specs)
        start_timeout = server.settings.proxy_start_timeout_ms / 1000
        # a late log line is held back only where callers are principals apart (with authentication): without it
        # every caller is the operator, whose next call's first lines would be lost for nothing
        late_line = server.settings.proxy_late_line_ms / 1000 if server.settings.authenticated else 0.0
        self.upstreams = [
            Upstream(spec, backoff, start_timeout=start_timeout, late_line=late_line) for spec in upstreams
        ]
        self.passthrough = PassThrough(self.upstreams)
        self.mcp: MCPServer[Any] | None = None  # the MCPServer serving now (tools change on it)
        self.served: dict[int, set[str]] = {}  # per upstream (by index): the tool names the proxy lists
        server.add_middleware(self.passthrough)
        server.on_build(self.passthrough.install)
        server.on_build(self._built)
        for upstream in self.upstreams:
            upstream.tools_changed = self.sync_tools

    async def serve(
        self,
        transport: Transport = "stdio",
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allow_unauthenticated: bool = False,
    ) -> None:
        """Start the upstreams (their first connection must succeed), list their tools, serve; the
        upstreams are restarted with backoff whenever they exit, and stopped with the proxy."""
        async with anyio.create_task_group() as tg:
            if not await self._start_upstreams(tg):
                tg.cancel_scope.cancel()  # a signal came first: the upstreams started stop with the proxy
                return
            self.register_tools()
            await self.server.serve(transport, host, port, allow_unauthenticated=allow_unauthenticated)
            tether.kill_groups_on_sigterm()  # stopping: the client's next step kills us, and the upstreams with us
            tg.cancel_scope.cancel()

    async def _start_upstreams(self, tg: TaskGroup) -> bool:
        """Start every upstream in `tg`; False when SIGINT or SIGTERM came first (the serving transports watch
        for them later): the one starting is stopped, with its process, not left behind."""
        with anyio.CancelScope() as starting:
            async with anyio.create_task_group() as watch:
                watch.start_soon(_cancel_on_signal, starting)
                for upstream in self.upstreams:
                    await tg.start(upstream.run)
                watch.cancel_scope.cancel()
        return not starting.cancelled_caught

    def run(
        self,
        transport: Transport = "stdio",
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allow_unauthenticated: bool = False,
    ) -> None:
        run_whole_process(
            self.server,
            functools.partial(self.serve, transport, host, port, allow_unauthenticated=allow_unauthenticated),
        )

    def register_tools(self) -> None:
        """A job tool (or a direct one) for each upstream tool; unknown names in --jobs/--direct are an error."""
        for index, upstream in enumerate(self.upstreams):
            self.served[index] = set()
            for name, tool in self._listed(upstream).items():
                self.served[index].add(name)
                if self.is_direct(name):
                    self.server.add_mcp_tool(direct_tool(upstream, tool))
                else:
                    self.server.add_spec(job_spec(upstream, tool))
        listed = set().union(*self.served.values())
        unknown = sorted((set(self.jobs or ()) | self.direct) - listed)
        if unknown:
            names, known = ", ".join(unknown), ", ".join(sorted(listed))
            raise ConfigError(f"no upstream tool named {names} (the upstreams list: {known})")

    def is_direct(self, name: str) -> bool:
        return name in self.direct or (self.jobs is not None and name not in self.jobs)

    def _built(self, mcp: MCPServer[Any]) -> None:
        self.mcp = mcp

    async def sync_tools(self, upstream: Upstream) -> None:
        """The upstream lists other tools now (its `tools/list_changed`, or a restart): serve the new ones, stop
        listing the dropped ones (their job specs stay, for jobs still running or recovered later), and tell the
        clients (`tools/list_changed`)."""
        if self.mcp is None:
            return
        index = self.upstreams.index(upstream)
        now = self._listed(upstream)
        before = self.served.get(index, set())
        for name, tool in now.items():
            if name not in before:
                add_tool_object(self.mcp, self._mcp_tool(upstream, name, tool))
        for name in before - set(now):
            self.mcp.remove_tool(name)
        self.served[index] = set(now)
        if set(now) != before:
            await self.passthrough.notify_clients(TOOLS_CHANGED)

    def _listed(self, upstream: Upstream) -> dict[str, UpstreamTool]:
        """The upstream's tools by the names the proxy serves them under, but for the proxy's own names and the
        names nobody can name (`unusable_name`)."""
        listed = {upstream.spec.prefixed(tool.name): tool for tool in upstream.tools}
        for name in sorted(self.own.intersection(listed)):
            log.warning("proxy.tool_name_taken", upstream=upstream.spec.label, tool=name)
            del listed[name]
        for name in list(listed):
            if (why := unusable_name(name)) is not None:
                log.warning("proxy.tool_name_unusable", upstream=upstream.spec.label, tool=repr(shown(name)), why=why)
                del listed[name]
        return listed

    def _mcp_tool(self, upstream: Upstream, name: str, tool: UpstreamTool) -> Tool:
        if self.is_direct(name):
            return direct_tool(upstream, tool)
        spec = self.server.specs[name] = job_spec(upstream, tool)  # a tool back after a while may have changed
        return job_mcp_tool(self.server.manager, spec)


def unusable_name(name: str) -> str | None:
    """Why the proxy cannot serve a tool of this (upstream-given) name, or None. A job keeps its tool's name,
    the worker offers it on its lease, callers name it (list-jobs' `toolName`): a NUL cannot be stored in
    PostgreSQL (the lease's write failed, and with it every job of every tool), a caller may send at most
    MAX_NAME_CHARS, and a control character (a newline, an escape) names no tool but rewrites a list or a log; an
    invisible one (a zero-width space, a right-to-left override, a line separator) shows the name as another, the
    proxy's own `get-job-result` or `cancel-job` among them (review helper-150)."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"it is {len(name):,} characters, more than the {MAX_NAME_CHARS} a caller may send"
    control = next((c for c in name if unicodedata.category(c) in UNSHOWN), None)
    if control is not None:
        return f"it holds a control or invisible character (U+{ord(control):04X})"
    return None


UNSHOWN = frozenset({"Cc", "Cf", "Zl", "Zp"})  # control, format (invisible, direction), line and paragraph breaks


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            print(f"vibe-jobs: stopping on signal {signum}", file=sys.stderr)
            scope.cancel()
            return
