"""The one module that touches the MCP SDK's private parts, each checked against mcp `SDK_VERSION`.

Everything else uses MCPServer's public hooks: the subscription bus is passed at construction
(`MCPServer(subscriptions=...)`), `subscriptions/listen` streams are seen by a server middleware
(`MCPServer(middleware=...)`). Two needs have no public hook in mcp 2.3.0:

- serving a request method MCPServer does not serve itself (`logging/setLevel`, legacy
  `resources/subscribe` / `resources/unsubscribe`). The low-level `Server.add_request_handler` is
  public, but MCPServer keeps its `Server` private (`_lowlevel_server`); a middleware cannot stand in,
  because the advertised capabilities (`logging`, `resources.subscribe`) come from the registered handlers.
- serving a session over streams of our own (`run_session`: the hardened stdio transport); MCPServer
  runs its `Server` only over the SDK's stdio streams.
- adding a ready-made `Tool` to a running MCPServer (a proxied upstream's new tool after its
  `tools/list_changed`): `MCPServer(tools=[...])` takes Tool objects at construction only, `add_tool` builds one
  from a function; the tool manager's table (`_tool_manager._tools`) is where they live.
- the identity of the client connection a (per-request) `ServerSession` speaks on (`_connection`):
  the key of a legacy resource subscriber, so that unsubscribe finds the subscription.

tests/server/test_sdk.py exercises each of them and fails while the installed mcp is another version:
after an upgrade, re-run those tests against it, then move `SDK_VERSION`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
