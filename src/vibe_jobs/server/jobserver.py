"""JobServer: the library form. Build a server, add job tools and plain tools, run it."""

from __future__ import annotations

import contextlib
import functools
import gc
import socket
from collections.abc import Awaitable, Callable, Container
from dataclasses import replace
from typing import Any, Literal, Unpack, overload

import anyio
from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import PydanticUserError

from vibe_jobs.engine.claims import ClaimSource
from vibe_jobs.engine.schedules import Schedules, code_schedule_id, parse_spec
from vibe_jobs.engine.sources import JobSource, make_source
from vibe_jobs.engine.ticker import Ticker
from vibe_jobs.errors import BadJobTool, ToolNameTaken, refusal_in
from vibe_jobs.jobtool import F, JobToolOptions, JobToolSpec, check_plain, make_spec, marked_spec
from vibe_jobs.logs import configure_logging, get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.owners import program_named
from vibe_jobs.redact import redact_url, set_secret_pattern
from vibe_jobs.server import hooks, tracing
from vibe_jobs.server.accepting import Listener
from vibe_jobs.server.app import build_mcp
from vibe_jobs.server.auth import AuthSetup, auth_setup, check_bind, transport_security
from vibe_jobs.server.control import CONTROL_TOOL_NAMES
from vibe_jobs.server.http.hosts import HostCheck
from vibe_jobs.server.http.lifetime import end_with_token
from vibe_jobs.server.http.prom import instrument_store
from vibe_jobs.server.http.requestids import look_after_authentication
from vibe_jobs.server.http.sessions import limit_sessions
from vibe_jobs.server.listen import bind, serve_http
from vibe_jobs.server.scheduletools import SCHEDULE_TOOL_NAMES
from vibe_jobs.server.sdk import open_sessions, run_session
from vibe_jobs.server.stdio import frame_limit, stdio_streams
from vibe_jobs.server.stopping import exit_now, stop_signals
from vibe_jobs.settings import Settings
from vibe_jobs.store import JobStore, open_store

Transport = Literal["stdio", "sse", "streamable-http"]
OWN_TOOL_NAMES = CONTROL_TOOL_NAMES | SCHEDULE_TOOL_NAMES
log = get_logger("vibe_jobs.server")


class JobServer:
    """An MCP server whose job tools run in the background under a JobManager."""

    def __init__(
        self,
        name: str = "vibe-jobs",
        *,
        settings: Settings | None = None,
        store: JobStore | None = None,
        instructions: str | None = None,
        run_jobs: bool = True,
        concurrency: int | None = None,
    ) -> None:
        """`name`: the MCP server's name (and its program on a shared store, unless the settings give one);
        `settings`: default the environment's, as `vibe-jobs serve` reads them; `store`: default the settings'
        store URL; `instructions`: told to clients at initialize; `run_jobs=False`: serve only, where workers
        run the jobs (a shared store: PostgreSQL); `concurrency`: the jobs this process runs at once (default the
        settings' `max_concurrent`)."""
        self.name, self.instructions = name, instructions
        # no settings: the environment's, as `vibe-jobs serve` reads them (the SQLite store by default)
        self.settings = settings if settings is not None else Settings.from_env()
        if self.settings.program is None:  # this server's program, on a store other programs share: its name
            self.settings = replace(self.settings, program=program_named(name))
        set_secret_pattern(self.settings.secret_pattern)
        self.manager = JobManager(store or open_store(self.settings.store_url), self.settings)
        self.specs: dict[str, JobToolSpec] = {}
        self.source: JobSource = make_source(self.manager, self.specs, run_jobs=run_jobs, concurrency=concurrency)
        self._plain: list[Tool] = []
        self._middleware: list[ServerMiddleware[Any]] = []
        self._setups: list[Callable[[MCPServer[Any]], None]] = []
        self.schedules = Schedules(self.manager, self.specs)
        self.ticker = Ticker(self.schedules)

    async def start_schedules(self) -> None:
        """Declare the schedules of job tools (`@job_tool(schedule=...)`) and start firing schedules
        (call inside `async with self.manager`)."""
        for spec in self.specs.values():
            if spec.schedule is not None:
                fields = {"tool": spec.name, "cron": spec.schedule, "scheduleId": code_schedule_id(spec.name)}
                await self.schedules.declare(parse_spec(fields))
        self.manager.task_group.start_soon(self.ticker.run)

    def add_spec(self, spec: JobToolSpec) -> JobToolSpec:
        self._check_name_free(spec.name, "job tool")
        self.specs[spec.name] = spec
        return spec

    def _check_name_free(self, name: str, kind: str) -> None:
        """ToolNameTaken when another tool has `name`: one of this server's own, or one registered before (the
        MCP server kept only the later of two, with a warning, while the job tool's spec stayed registered)."""
        if name in OWN_TOOL_NAMES:
            raise ToolNameTaken(f"{kind} {name}: the name is one of the server's own tools; choose another")
        if name in self.specs or any(tool.name == name for tool in self._plain):
            raise ToolNameTaken(f"{kind} {name}: a tool of that name is registered already")

    @overload
    def job_tool(self, fn: F, /, **options: Unpack[JobToolOptions]) -> F: ...

    @overload
    def job_tool(self, fn: None = None, /, **options: Unpack[JobToolOptions]) -> Callable[[F], F]: ...

    def job_tool(self, fn: F | None = None, /, **options: Unpack[JobToolOptions]) -> F | Callable[[F], F]:
        """Register `fn` as a job tool (options as for `vibe_jobs.job_tool`), or decorate with `@server.job_tool(...)`.
        A function marked `@job_tool(...)` keeps the options written there (those given here replace them)."""

        given: dict[str, Any] = {key: value for key, value in options.items() if value is not None}

        def register(f: F) -> F:
            marked = marked_spec(f)
            self.add_spec(make_spec(f, **given) if marked is None else replace(marked, **given))
            return f

        return register(fn) if fn is not None else register

    @overload
    def tool(self, name: F, /) -> F: ...

    @overload
    def tool(self, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...

    def tool(self, name: Any = None, description: str | None = None) -> Any:
        """Decorator: register an ordinary MCP tool that answers within the request (usable bare, `@server.tool`,
        or with a name and description)."""

        def register(f: F) -> F:
            self.add_plain_tool(f, name, description)
            return f

        if callable(name):  # bare: the function went in as the name, and nothing was registered
            fn, name = name, None
            return register(fn)
        return register

    def add_plain_tool(self, fn: Callable[..., Any], name: str | None = None, description: str | None = None) -> None:
        """Register `fn` as an ordinary MCP tool that answers within the request (name: the function's).
        BadJobTool for a function that cannot be one (it takes a JobContext, or a parameter no schema describes)."""
        check_plain(fn, name)
        try:
            tool = Tool.from_function(fn, name=name, description=description)
        except PydanticUserError as exc:  # an argument type no JSON schema describes
            raise BadJobTool(f"tool {name or fn.__name__}: {str(exc).splitlines()[0]}") from None
        self.add_mcp_tool(tool)

    def add_mcp_tool(self, tool: Tool) -> None:
        """Register an MCP tool built elsewhere (it answers within the request); ToolNameTaken when another tool
        has its name."""
        self._check_name_free(tool.name, "tool")
        self._plain.append(tool)

    def add_middleware(self, middleware: ServerMiddleware[Any]) -> None:
        """Add a server middleware (`(ctx, call_next) -> result`), after the built-in ones."""
        self._middleware.append(middleware)

    def on_build(self, setup: Callable[[MCPServer[Any]], None]) -> None:
        """Call `setup(mcp)` on the MCPServer each `build()` makes (to register handlers of its own)."""
        self._setups.append(setup)

    def build(self, auth: AuthSetup | None = None) -> MCPServer[Any]:
        mcp = build_mcp(
            self.manager,
            self.specs,
            self._plain,
            name=self.name,
            instructions=self.instructions,
            middleware=self._middleware,
            auth=auth,
        )
        for setup in self._setups:
            setup(mcp)
        tracing.install(self.source.executor)  # a library user's tracer provider traces the attempts too
        return mcp

    async def serve(
        self,
        transport: Transport = "stdio",
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allow_unauthenticated: bool = False,
    ) -> None:
        """Run until stdin closes (stdio) or SIGINT/SIGTERM/SIGHUP; jobs live for the whole process.

        Over HTTP: authentication as the settings say (a token file or JWT), refused beyond loopback
        without it (unless `allow_unauthenticated`), Host/Origin checks always on (`allowed_hosts`)."""
        sock = bind(host, port) if transport != "stdio" else None  # a taken port: one line, nothing started
        with sock or contextlib.nullcontext():  # closed whatever ends the server
            url = _base_url(host, port if sock is None else sock.getsockname()[1])  # port 0: the one given
            auth = AuthSetup() if transport == "stdio" else auth_setup(self.settings, url)
            if transport != "stdio":
                check_bind(host, auth.enabled, allow_unauthenticated)
            security = transport_security(host, self.settings.allowed_hosts)
            try:
                await self._serve(auth, transport, sock, security, url)
            except BaseExceptionGroup as group:  # from the manager's task group: a refusal comes out as itself
                if (refused := refusal_in(group)) is None:
                    raise
                raise refused from None
        log.info("server.stopped")

    async def _serve(
        self,
        auth: AuthSetup,
        transport: Transport,
        sock: socket.socket | None,
        security: TransportSecuritySettings,
        url: str,
    ) -> None:
        mcp = self.build(auth)
        if sock is not None:  # /metrics is served: time the store's calls
            instrument_store(self.manager.store, self.manager.stats.counters)
        with stop_signals() as stopping:
            async with self.manager:
                await self.start_schedules()
                log.info(
                    "server.started",
                    transport=transport,
                    store=redact_url(self.manager.store.url),
                    tools=sorted(self.specs),
                    authenticated=auth.enabled,
                )
                try:
                    if sock is None:
                        limit = frame_limit(self.settings.max_params_bytes)
                        await stopping.until_signal(lambda: serve_stdio(mcp, limit, on_eof=stopping.arm))
                    else:
                        await stopping.until_signal(lambda: self._serve_http(mcp, transport, sock, security, url, auth))
                finally:
                    stopping.arm()  # the manager stops next: a signal meanwhile hurries it (`stopping.py`)

    async def _serve_http(
        self,
        mcp: MCPServer[Any],
        transport: Transport,
        sock: socket.socket,
        security: TransportSecuritySettings,
        url: str,
        auth: AuthSetup,
    ) -> None:
        """Serve SSE or streamable HTTP on `sock` until cancelled: the header deadline (`listen`), the Host
        check on every route (`http.hosts`), with authentication a limit of open sessions per principal
        (`http.sessions`)."""
        settings = self.settings
        sessions: Callable[[], Container[str]] | None = None
        if transport == "sse":
            app, path = mcp.sse_app(transport_security=security), "/sse"
        else:
            options = {
                "max_sessions": settings.max_sessions,
                "session_idle_timeout": settings.session_idle_ms / 1000,
                **hooks.http_options,
            }
            app, path = mcp.streamable_http_app(transport_security=security, **options), "/mcp"
            sessions = functools.partial(open_sessions, mcp)
        if auth.enabled:
            limit_sessions(app, settings.max_sessions_per_principal, sessions)
            end_with_token(app, auth.lease)
        level, timeout = settings.log_level, settings.http_header_timeout_ms / 1000
        guarded = HostCheck(look_after_authentication(app), security)
        announce = f"vibe-jobs: serving MCP at {url}{path}"
        if isinstance(sock, Listener):  # its limit of open files reached: health says so (`accepting.py`)
            self.manager.stats.limits_reached.append(sock.limit_reached)
        await serve_http(guarded, sock, log_level=level, header_timeout=timeout, announce=announce)

    def run(
        self,
        transport: Transport = "stdio",
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allow_unauthenticated: bool = False,
    ) -> None:
        run_whole_process(
            self, functools.partial(self.serve, transport, host, port, allow_unauthenticated=allow_unauthenticated)
        )


def run_whole_process(server: JobServer, main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` as the whole life of a process that owns its event loop (`JobServer.run`, `run_worker`, the
    proxy's `run`): logging as `server`'s settings say, the start-up heap frozen (`freeze_startup_heap`), and once
    `main` returns, work that ignored its stop left behind (`leave_work_behind`)."""
    configure_logging(server.settings.log_level, server.settings.log_format)
    freeze_startup_heap()

    async def whole() -> None:
        await main()
        await leave_work_behind(server)

    anyio.run(whole)


async def leave_work_behind(server: JobServer) -> None:
    """For a process that owns its event loop, once `server` has stopped: work that ignored its cancellation past
    the stop's grace (`job.ignored_stop`) still runs on the loop, and the loop's end (`anyio.run` returning)
    cancels it once more and waits for it, for ever; so does the interpreter's end for a sync tool's thread, which
    cannot be stopped (given what is left of the grace here). The stop is complete (its lease released, its store
    closed): the process exits now (0), its exit handlers run first (`exit_now`). A program's code after `run()` does
    not run then."""
    executor = server.source.executor
    if await executor.threads_left() or executor.left_at_stop:
        exit_now(0, executor.grace_seconds)


def freeze_startup_heap() -> None:
    """Leave what start-up built (modules, classes, the SDK's and pydantic's schemas: most of the process's
    objects, and permanent) out of every later garbage collection: a full collection walks every tracked
    object, and over a server's start-up heap that is a pause of tens of milliseconds in the middle of
    answering calls. Called for the entry points that own the process (`run_whole_process`), not by `serve`,
    which a program may await in a process of its own."""
    gc.collect()
    gc.freeze()


def _base_url(host: str, port: int) -> str:
    name = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    return f"http://{f'[{name}]' if ':' in name and not name.startswith('[') else name}:{port}"


async def serve_stdio(mcp: MCPServer[Any], max_frame_bytes: int, on_eof: Callable[[], None] | None = None) -> None:
    """Serve one client over stdin/stdout until stdin closes (`on_eof()` then)."""
    async with stdio_streams(max_frame_bytes, on_eof) as (read_stream, write_stream):
        await run_session(mcp, read_stream, write_stream)


def run_worker(server: JobServer, drain_seconds: float) -> None:
    """Run jobs from the shared store until SIGINT/SIGTERM/SIGHUP, then drain (see `work_until_signal`)."""
    run_whole_process(server, functools.partial(work_until_signal, server, drain_seconds))


async def work_until_signal(server: JobServer, drain_seconds: float) -> None:
    """Claim and run jobs; on a signal stop claiming and give running jobs `drain_seconds` to finish.

    Jobs still running after that are stopped and released: settled by this process as it stops (requeued when
    their tool opted in to retries, otherwise failed as interrupted, in words of the stop: `recovery.hand_back`),
    its lease then dropped.
    """
    source = server.source
    if not isinstance(source, ClaimSource):
        raise ValueError("a worker needs a shared store (postgresql://): it runs jobs that others submit")
    tracing.install(source.executor)
    with stop_signals() as stopping:
        async with server.manager:
            await server.start_schedules()
            log.info("worker.started", owner=server.manager.owner, tools=sorted(server.specs))
            await stopping.until_signal(anyio.sleep_forever)
            log.info("worker.draining", signal=stopping.received, running=len(source.executor.running))
            source.stop_claiming()
            with anyio.move_on_after(drain_seconds) as drain:
                stopping.arm(drain.cancel)  # a signal while draining ends the drain, and the commands at once
                await source.drained()
    log.info("worker.stopped")
