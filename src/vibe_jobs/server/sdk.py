"""The one module that touches the MCP SDK's private parts, each checked against mcp `SDK_VERSION`.

Everything else uses MCPServer's public hooks: the subscription bus is passed at construction
(`MCPServer(subscriptions=...)`), `subscriptions/listen` streams are seen by a server middleware
(`MCPServer(middleware=...)`). These needs have no public hook in mcp 2.3.0:

- serving a request method MCPServer does not serve itself (`logging/setLevel`, legacy
  `resources/subscribe` / `resources/unsubscribe`). The low-level `Server.add_request_handler` is
  public, but MCPServer keeps its `Server` private (`_lowlevel_server`); a middleware cannot stand in,
  because the advertised capabilities (`logging`, `resources.subscribe`) come from the registered handlers.
- serving a session over streams of our own (`run_session`: the hardened stdio transport); MCPServer
  runs its `Server` only over the SDK's stdio streams.
- adding a ready-made `Tool` to a running MCPServer (a proxied upstream's new tool after its
  `tools/list_changed`): `MCPServer(tools=[...])` takes Tool objects at construction only, `add_tool` builds one
  from a function; the tool manager's table (`_tool_manager._tools`) is where they live.
- running a stdio upstream with a reader of our own (`server/proxy/wire.py`): `stdio_client` offers no way to
  replace its reader, and its process handling (the executable, the inherited environment, a process group of
  its own, the shutdown order) is worth keeping: `_create_platform_compatible_process`, `_stop_server_process`.
- the identity of the client connection a (per-request) `ServerSession` speaks on (`_connection`):
  the key of a legacy resource subscriber, so that unsubscribe finds the subscription; and its `state`, where the
  last answer of that client a job refused is kept (`server/asking.py`), for its next long-poll to tell.
- which streamable-HTTP sessions are still open (`StreamableHTTPSessionManager._server_instances`): a principal's
  sessions that ended (DELETE, idle time-out) no longer count against its limit (`server/http/sessions.py`). That
  middleware also mirrors the session manager's routing: only a POST without a session id, whose protocol version
  header is absent or one of `HANDSHAKE_PROTOCOL_VERSIONS`, may open a session.
- how a client checks a tool's structured content against the tool's output schema
  (`ClientSession._output_schema_validator`, its cache `_tool_output_validators`): the stock validator of the
  schema's draft runs its `pattern`s with Python's `re`, so an upstream's backtracking pattern on its own result
  held the proxy's event loop for hours; the proxy builds a validator of its own (`check_outputs_with`).

tests/server/test_sdk.py exercises each of them and fails while the installed mcp is another version:
after an upgrade, re-run those tests against it, then move `SDK_VERSION`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container
from typing import Any, TextIO, TypeVar

from anyio.abc import Process
from mcp import StdioServerParameters
from mcp.client import ClientSession, stdio
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.session import ServerSession
from pydantic import BaseModel

SDK_VERSION = "2.3.0"  # the mcp release the internals below were checked against

P = TypeVar("P", bound=BaseModel)


def add_request_handler(
    mcp: MCPServer[Any],
    method: str,
    params_type: type[P],
    handler: Callable[[ServerRequestContext[Any, Any], P], Awaitable[HandlerResult]],
) -> None:
    """Serve `method` on `mcp` (replacing any handler it had); `handler(ctx, params)` gets validated params."""
    mcp._lowlevel_server.add_request_handler(method, params_type, handler)


async def run_session(mcp: MCPServer[Any], read_stream: Any, write_stream: Any) -> None:
    """Serve one client session of `mcp` over a (read, write) stream pair (what `run_stdio_async` does with
    the SDK's own stdio streams; `server/stdio.py` brings hardened ones)."""
    server = mcp._lowlevel_server
    await server.run(read_stream, write_stream, server.create_initialization_options())


def add_tool_object(mcp: MCPServer[Any], tool: Tool) -> None:
    """Serve `tool` on a running `mcp` (replacing any tool of that name)."""
    mcp._tool_manager._tools[tool.name] = tool


def connection_of(session: ServerSession) -> object:
    """The connection `session` speaks on: one object for every request of one client connection."""
    return session._connection


def connection_state(session: ServerSession) -> dict[str, Any]:
    """The per-connection dict `session`'s connection keeps while it lives (the SDK's `Connection.state`)."""
    state: dict[str, Any] = session._connection.state
    return state


def at_connection_close(session: ServerSession, key: str, fn: Callable[[object], object]) -> None:
    """Call `fn(connection)` once, when the connection `session` speaks on closes (the SDK's per-connection
    teardown, `Connection.exit_stack`); `key` marks it registered in the connection's `state`."""
    connection = session._connection
    if connection.state.get(key):
        return
    connection.state[key] = True
    connection.exit_stack.callback(fn, connection)


def stdio_environment(params: StdioServerParameters) -> dict[str, str]:
    """The environment `mcp.stdio_client` gives a server: the SDK's safe inherited variables under `params.env`."""
    return stdio.get_default_environment() | (params.env or {})


async def spawn_stdio_server(params: StdioServerParameters, errlog: TextIO) -> Process:
    """Start the stdio server of `params` as `mcp.stdio_client` does: its environment is `stdio_environment`,
    in a process group of its own (stopped as a whole)."""
    command = await stdio._get_executable_command(params.command)
    process = await stdio._create_platform_compatible_process(
        command, params.args, stdio_environment(params), errlog, params.cwd
    )
    assert isinstance(process, Process)  # POSIX; the SDK's Windows fallback process is not one
    return process


async def stop_stdio_server(process: Process) -> None:
    """Stop it as `mcp.stdio_client` does: stdin closed, a grace period, then the process group killed."""
    await stdio._stop_server_process(process)


def open_sessions(mcp: MCPServer[Any]) -> Container[str]:
    """The ids of the stateful streamable-HTTP sessions `mcp` keeps open now (after `streamable_http_app()`)."""
    return mcp.session_manager._server_instances


def check_outputs_with(session: ClientSession, build: Callable[[dict[str, Any]], Any]) -> None:
    """`session` checks a tool's structured content with `build(output_schema)` (a jsonschema validator; it raises
    `jsonschema.SchemaError` for a schema that is not one), built once per schema as the SDK builds its own, and
    a broken schema reported as the SDK reports it (a RuntimeError on each call)."""
    from jsonschema import SchemaError

    def validator(name: str, output_schema: dict[str, Any]) -> Any:
        if (found := session._tool_output_validators.get(name)) is not None:
            return found
        try:
            found = build(output_schema)
        except SchemaError as exc:
            raise RuntimeError(f"Invalid schema for tool {name}: {exc}") from None
        session._tool_output_validators[name] = found
        return found

    session._output_schema_validator = validator  # type: ignore[method-assign]
