"""One upstream MCP server: its connection (stdio or streamable HTTP) through the real `mcp.Client`, kept alive
for the proxy's whole life: started with it, restarted with backoff when it exits.

A call made while the connection dies raises `UpstreamExited`. Upstream stderr goes to the proxy's stderr (the
SDK's stdio transport passes it through); upstream stdout is read as protocol only.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskStatus
from mcp import Client, MCPError, StdioServerParameters
from mcp.client import ClientRequestContext, Transport
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    LoggingMessageNotificationParams,
    Tool,
)

from vibe_jobs.context import JobContext
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import diagnostic_line
from vibe_jobs.server import sdk
from vibe_jobs.server.proxy.config import UpstreamSpec
from vibe_jobs.server.proxy.httpwire import ACCEPT_ENCODING, capping
from vibe_jobs.server.proxy.listing import Sieve
from vibe_jobs.server.proxy.pages import Page, read_pages
from vibe_jobs.server.proxy.schema import output_validator
from vibe_jobs.server.proxy.talkback import Answer, Declines, Kind, answer_upstream_request
from vibe_jobs.server.proxy.wire import stdio_upstream

log = get_logger("vibe_jobs.server.proxy")

ProgressFn = ProgressFnT
RootsFn = Callable[[], Awaitable[ListRootsResult]]


TOOLS_CHANGED = "notifications/tools/list_changed"
# what the SDK's streamable-HTTP transport answers for a request the server refused at the HTTP level: a 404 on a
# session (the server forgot it: restarted) or another non-2xx status without a JSON-RPC error in the body
HTTP_SESSION_LOST = frozenset({"Session terminated", "Server returned an error response"})
# after a call ends with -32000 from a stdio upstream, how long its output may take to end if it is dead
CLOSE_NOTICE_SECONDS = 2.0


def notification_method(message: IncomingMessage) -> str | None:
    """The method of a notification the upstream sent (None for anything else)."""
    method = getattr(getattr(message, "root", message), "method", None)
    return method if isinstance(method, str) else None


class UpstreamExited(Exception):
    """interrupted: upstream exited"""

    def __init__(self, upstream: str) -> None:
        super().__init__("interrupted: upstream exited")
        self.upstream = upstream


class UpstreamUnavailable(Exception):
    """The upstream could not be started at all (the proxy does not start)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: initial * 2^n, capped; a connection that lived `reset_after` seconds starts over."""

    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 60.0


@dataclass(slots=True)
class Connection:
    client: Client
    ended: anyio.Event  # set when the upstream's stream ends (the process exited, the transport broke)


class Upstream:
    """A live connection to one upstream server, and the jobs running on it."""

    def __init__(
        self,
        spec: UpstreamSpec,
        backoff: Backoff | None = None,
        roots: RootsFn | None = None,
        start_timeout: float = 60.0,
        late_line: float = 2.0,
    ) -> None:
        self.spec, self.backoff, self.roots = spec, backoff or Backoff(), roots
        self.start_timeout = start_timeout  # seconds to answer initialize and list its tools
        # after a call here ends, how long a log line of it may still come (a task of the upstream's that outlives
        # the call): meanwhile no line is any job's (`_on_log`), for it may be the ended call's, another principal's
        self.late_line = late_line
        self.conn: Connection | None = None
        self.tools: list[Tool] = []
        self.capabilities: Any = None
        self.restarts = 0
        self.jobs: set[JobContext] = set()  # running a call now (see `sole_job`)
        self.others = 0  # calls in flight that are no job's: direct tools, passthrough requests (`calling`)
        self.last_ended = -math.inf  # when a call here last ended (anyio's clock; `sole_job`)
        self.notify: Callable[[IncomingMessage], Awaitable[None]] | None = None  # list_changed and the like
        self.tools_changed: Callable[[Upstream], Awaitable[None]] | None = None  # its tool list is new
        self.declines = Declines()  # its requests the proxy declined (logged as they double)
        self._up = anyio.Event()
        self._tools_dirty = anyio.Event()

    # -- life ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect; reconnect with backoff whenever the connection ends. Reports started after the first
        connection (its tool list read); raises UpstreamUnavailable when that first one fails."""
        delay = self.backoff.initial
        while True:
            since = anyio.current_time()
            try:
                await self._connect_once(task_status if not self.restarts else None)
            except Exception as exc:
                if not self.restarts and self.capabilities is None:  # never connected
                    raise UpstreamUnavailable(f"upstream {self.spec.label}: cannot start: {_describe(exc)}") from exc
                log.warning("proxy.upstream_failed", upstream=self.spec.label, error=_describe(exc))
            if anyio.current_time() - since > self.backoff.reset_after:
                delay = self.backoff.initial
            self.restarts += 1
            log.warning("proxy.upstream_exited", upstream=self.spec.label, restart=self.restarts, restart_in_s=delay)
            await anyio.sleep(delay)
            delay = min(self.backoff.maximum, delay * 2)

    async def _connect_once(self, task_status: TaskStatus[None] | None) -> None:
        ended = anyio.Event()
        starting = anyio.CancelScope(deadline=anyio.current_time() + self.start_timeout)
        try:
            with starting:
                await self._serve_connection(ended, starting, task_status)
            if starting.cancelled_caught:
                raise TimeoutError(f"no answer to initialize and tools/list within {self.start_timeout:g} s")
        finally:
            self._lost(ended)

    async def _serve_connection(
        self, ended: anyio.Event, starting: anyio.CancelScope, task_status: TaskStatus[None] | None
    ) -> None:
        """Connect and list the tools (within `starting`'s deadline, which is then lifted); serve until the
        connection ends."""
        async with self._client(ended) as client, anyio.create_task_group() as tg:
            sdk.check_outputs_with(client.session, output_validator)  # runs none of the upstream's patterns
            self.tools = await _all_tools(client, self.spec.label)
            starting.deadline = math.inf
            self.capabilities = client.server_capabilities
            self.conn = Connection(client, ended)
            self._up.set()
            log.info("proxy.upstream_started", upstream=self.spec.label, tools=len(self.tools))
            if task_status is not None:
                task_status.started()
            else:  # a restarted upstream may list other tools
                await self._tell_tools_changed()
            tg.start_soon(self._follow_tool_changes, client)
            await ended.wait()
            tg.cancel_scope.cancel()

    def _lost(self, ended: anyio.Event) -> None:
        """The connection of `ended` is over: from now on `connection()` waits for the next one."""
        ended.set()
        if self.conn is not None and self.conn.ended is ended:
            self.conn, self._up = None, anyio.Event()  # the old _up was set: nobody waits on it

    async def _follow_tool_changes(self, client: Client) -> None:
        """On the upstream's `tools/list_changed`, list its tools again and tell `tools_changed`. A listing that
        fails or takes longer than the start time-out keeps the tools listed before: the upstream lives on (its
        running calls with it) and the next change is followed."""
        while True:
            await self._tools_dirty.wait()
            self._tools_dirty = anyio.Event()
            with anyio.move_on_after(self.start_timeout) as listing:
                try:
                    tools = await _all_tools(client, self.spec.label)
                except Exception as exc:  # an error answer, a page that is not a tool list
                    log.warning("proxy.upstream_tools_unlisted", upstream=self.spec.label, error=_describe(exc))
                    continue
            if listing.cancelled_caught:
                why = f"no answer within {self.start_timeout:g} s"
                log.warning("proxy.upstream_tools_unlisted", upstream=self.spec.label, error=why)
                continue
            self.tools = tools
            log.info("proxy.upstream_tools_changed", upstream=self.spec.label, tools=len(self.tools))
            await self._tell_tools_changed()

    async def _tell_tools_changed(self) -> None:
        """Tell `tools_changed` (the proxy serves the new list). Its failure (a tool the proxy cannot serve) is
        logged: it must not end a live upstream's connection, its running calls with it."""
        if self.tools_changed is None:
            return
        try:
            await self.tools_changed(self)
        except Exception as exc:
            log.error("proxy.upstream_tools_not_served", upstream=self.spec.label, error=_describe(exc), exc_info=exc)

    def _client(self, ended: anyio.Event) -> Client:
        return Client(
            _watched(self._transport(), lambda: self._lost(ended), Sieve(self.spec.label)),
            mode="legacy",  # upstreams of every era speak it; the proxy's own clients may use either
            logging_callback=self._on_log,
            message_handler=self._on_message,
            elicitation_callback=self._on_elicit,
            sampling_callback=self._on_sample,
            list_roots_callback=self._on_roots if self.roots is not None else None,
            cache=None,
        )

    def _transport(self) -> Transport:
        spec = self.spec
        if spec.url is not None:
            timeout = httpx2.Timeout(30.0, read=300.0)
            headers = dict(spec.headers)
            if not any(name.lower() == "accept-encoding" for name in headers):  # those decoded within the limit
                headers["Accept-Encoding"] = ACCEPT_ENCODING
            http = httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=capping())
            return _owning(streamable_http_client(spec.url, http_client=http), http)
        assert spec.command is not None
        env = dict(spec.env) or None
        params = StdioServerParameters(command=spec.command, args=list(spec.args), env=env, cwd=spec.cwd)
        return stdio_upstream(params, spec.label)

    async def connection(self) -> Connection:
        """The live connection, waiting while the upstream restarts."""
        while self.conn is None:
            await self._up.wait()
        return self.conn

    # -- calls -----------------------------------------------------------------------------

    @asynccontextmanager
    async def calling(self) -> AsyncIterator[Connection]:
        """The live connection for a call that is no job's (a direct tool, a passthrough request), counted while it
        is in flight: meanwhile no request or log line of the upstream can be told to be one job's."""
        conn = await self.connection()
        self.others += 1
        try:
            async with self._losing(conn):
                yield conn
        finally:
            self.others -= 1
            self.last_ended = anyio.current_time()

    def sole_job(self, settled: float = 0.0) -> JobContext | None:
        """The job whose call is the only one in flight here: the one an upstream's request or log line can only
        belong to (nothing on the wire ties them to a call). None with no call, several, or one no job's: the
        request or line may be another caller's, perhaps another principal's. With `settled`, None too while
        another call ended less than `settled` seconds ago: what comes may still be that call's (`_on_log`)."""
        if self.others or len(self.jobs) != 1:
            return None
        if anyio.current_time() - self.last_ended < settled:
            return None
        return next(iter(self.jobs))

    async def call_tool(
        self, name: str, arguments: dict[str, Any], ctx: JobContext, progress: ProgressFn
    ) -> CallToolResult:
        """Call `name` upstream for the job of `ctx`; UpstreamExited when the upstream dies meanwhile."""
        conn = await self.connection()
        self.jobs.add(ctx)
        try:
            async with self._losing(conn):
                return await _unless_ended(conn, conn.client.call_tool(name, arguments, progress_callback=progress))
        finally:
            self.jobs.discard(ctx)
            self.last_ended = anyio.current_time()

    @asynccontextmanager
    async def _losing(self, conn: Connection) -> AsyncIterator[None]:
        """A call on `conn` (a job's, a direct tool's, a pass-through request): an error of it that says the
        connection is gone ends that connection, so that the upstream is connected again (an HTTP connection
        does not end by itself: a restarted upstream's lost session was noticed by job calls only, and direct tools
        and pass-through requests failed for ever), and is raised as UpstreamExited."""
        try:
            yield
        except (MCPError, httpx2.TransportError) as exc:
            if not await self._connection_lost(conn, exc):
                raise
            self._lost(conn.ended)
            raise UpstreamExited(self.spec.label) from None

    async def _connection_lost(self, conn: Connection, exc: Exception) -> bool:
        """The connection is gone, not the call refused: closed, or (HTTP) unreachable, or its session unknown to
        the server (a restarted upstream), as the SDK's transport reports them.

        The SDK reports a closed connection with code -32000, which is also a server's own error code: an
        upstream may answer it and live on. A stdio upstream is lost only when its output ends too (the reader
        marks that before the close reaches a waiter, or soon after a write found the pipe broken)."""
        if conn.ended.is_set() or isinstance(exc, httpx2.TransportError):
            return True
        assert isinstance(exc, MCPError)
        if self.spec.url is not None:
            return exc.code == CONNECTION_CLOSED or exc.error.message in HTTP_SESSION_LOST
        if exc.code != CONNECTION_CLOSED:
            return False
        with anyio.move_on_after(CLOSE_NOTICE_SECONDS):
            await conn.ended.wait()
        return conn.ended.is_set()

    # -- what the upstream sends -----------------------------------------------------------

    async def _on_log(self, params: LoggingMessageNotificationParams) -> None:
        """An upstream's log line: a job's diagnostic when it can only be that job's, else only the proxy's own log.

        Nothing on the wire ties a log line to a call (the SDK's client gives only its params), so it is the job
        whose call is the only one in flight, and only once no other call has ended for `late_line` seconds: a line
        an upstream writes just after a call ended (a task of its own that outlives the call) came while the next
        caller's call ran, and became that caller's diagnostic, perhaps another principal's. (A line written later
        than that after its call still reaches the job running then: nothing on the wire can tell.) Progress needs
        no such rule: its token is the call's own request id."""
        # cut as it comes (a job stores each diagnostic cut anyway): the last 100 waited whole for the job's next
        # write, and an upstream's lines of 8 MB each held 320 MB of the proxy until then (review helper-150)
        said = str(params.data)
        text = diagnostic_line(f"upstream {params.level}: {said}" + (f" ({params.logger})" if params.logger else ""))
        ctx = self.sole_job(settled=self.late_line)
        if ctx is not None:
            ctx.diagnostic(text)
        whose = {"job_id": ctx.job_id} if ctx is not None else {}
        log.debug(
            "proxy.upstream_log", upstream=self.spec.label, level=str(params.level), data=diagnostic_line(said), **whose
        )

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            return
        if notification_method(message) == TOOLS_CHANGED:
            self._tools_dirty.set()  # listed again by _follow_tool_changes: no request from inside the reader
        elif self.notify is not None:
            await self.notify(message)

    async def _on_elicit(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        answer = await self._talkback("elicitation", params)
        assert not isinstance(answer, CreateMessageResult)
        return answer

    async def _on_sample(self, context: ClientRequestContext, params: CreateMessageRequestParams) -> Any:
        return await self._talkback("sampling", params)

    async def _talkback(self, kind: Kind, params: Any) -> Answer:
        return await answer_upstream_request(
            kind, self.spec.label, params, list(self.jobs), self.sole_job(), self.declines
        )

    async def _on_roots(self, context: ClientRequestContext) -> ListRootsResult | ErrorData:
        assert self.roots is not None
        return await self.roots()


async def _unless_ended(conn: Connection, call: Awaitable[CallToolResult]) -> CallToolResult:
    """Await `call`, unless the connection ends first (then CONNECTION_CLOSED, as the SDK reports it)."""
    outcome: CallToolResult | Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await conn.ended.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            outcome = await call
        except Exception as exc:  # raised below, as itself (not inside the task group's ExceptionGroup)
            outcome = exc
        tg.cancel_scope.cancel()
    if isinstance(outcome, Exception):
        raise outcome
    if outcome is None:
        raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
    return outcome


async def _all_tools(client: Client, upstream: str) -> list[Tool]:
    async def page(cursor: str | None) -> Page[Tool]:
        found = await client.list_tools(cursor=cursor)
        return found.tools, found.next_cursor

    return await read_pages(page, lambda tool: len(tool.model_dump_json(by_alias=True)), upstream, "tools")


@asynccontextmanager
async def _watched(transport: Transport, on_end: Callable[[], None], sift: Sieve) -> AsyncIterator[tuple[Any, Any]]:
    """`transport`, with `on_end()` called when its read stream ends (the upstream's stdout closed), and each
    message read passed through `sift` (tool lists: as much as the SDK's client can take)."""
    async with transport as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            try:
                async for item in read:
                    await send.send(sift(item))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                on_end()  # first: a call the closing wakes must not find this connection still current
                send.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                yield receive, write
            finally:
                tg.cancel_scope.cancel()


@asynccontextmanager
async def _owning(transport: Transport, http: httpx2.AsyncClient) -> AsyncIterator[tuple[Any, Any]]:
    async with http, transport as streams:
        yield streams


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
