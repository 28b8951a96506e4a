"""ProxyServer: a JobServer in front of upstream MCP servers, each upstream tool a job tool (or a direct one)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import anyio

from vibe_jobs.logs import configure_logging
from vibe_jobs.server.jobserver import JobServer, Transport
from vibe_jobs.server.proxy.config import ConfigError, UpstreamSpec
from vibe_jobs.server.proxy.passthrough import PassThrough
from vibe_jobs.server.proxy.tools import direct_tool, job_spec
from vibe_jobs.server.proxy.upstream import Backoff, Upstream


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
        self.upstreams = [Upstream(spec, backoff) for spec in upstreams]
        self.passthrough = PassThrough(self.upstreams)
        server.add_middleware(self.passthrough)
        server.on_build(self.passthrough.install)

    async def serve(self, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8000) -> None:
        """Start the upstreams (their first connection must succeed), list their tools, serve; the
        upstreams are restarted with backoff whenever they exit, and stopped with the proxy."""
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                await tg.start(upstream.run)
            self.register_tools()
            await self.server.serve(transport, host, port)
            tg.cancel_scope.cancel()

    def run(self, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8000) -> None:
        configure_logging(self.server.settings.log_level, self.server.settings.log_format)
        anyio.run(self.serve, transport, host, port)

    def register_tools(self) -> None:
        """A job tool (or a direct one) for each upstream tool; unknown names in --jobs/--direct are an error."""
        listed: set[str] = set()
        for upstream in self.upstreams:
            for tool in upstream.tools:
                name = upstream.spec.prefixed(tool.name)
                listed.add(name)
                if self.is_direct(name):
                    self.server.add_mcp_tool(direct_tool(upstream, tool))
                else:
                    self.server.add_spec(job_spec(upstream, tool))
        unknown = sorted((set(self.jobs or ()) | self.direct) - listed)
        if unknown:
            names, known = ", ".join(unknown), ", ".join(sorted(listed))
            raise ConfigError(f"no upstream tool named {names} (the upstreams list: {known})")

    def is_direct(self, name: str) -> bool:
        return name in self.direct or (self.jobs is not None and name not in self.jobs)
