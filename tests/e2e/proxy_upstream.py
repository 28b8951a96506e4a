"""A small upstream MCP server for what the real upstreams cannot show: `slow-write` is a slow tool annotated
`idempotentHint: false` (an upstream that dies under it must leave the job failed as interrupted, never run
again), `grow` adds a tool at run time and sends `tools/list_changed`, and `refuse` answers a JSON-RPC error
with the code the SDK also gives a closed connection (-32000), and lives on."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, ToolAnnotations

mcp: MCPServer = MCPServer("proxy-test-upstream")


@mcp.tool(name="slow-write", annotations=ToolAnnotations(idempotent_hint=False, destructive_hint=True))
async def slow_write(seconds: float) -> str:
    """Write something slowly (not safe to run twice)."""
    await anyio.sleep(seconds)
    return f"wrote after {seconds:g} s"


@mcp.tool(name="grow")
async def grow(name: str, ctx: Context) -> str:
    """Add a tool named `name` (it answers `NAME here`) and tell the client the tool list changed."""

    def added() -> str:
        return f"{name} here"

    mcp.add_tool(added, name=name, description="added at run time")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@mcp.tool(name="refuse")
async def refuse() -> str:
    """Answer a JSON-RPC error -32000 (a server's own error code, which is also the SDK's "connection closed")."""
    raise MCPError(CONNECTION_CLOSED, "upstream refused: quota exceeded")


if __name__ == "__main__":
    mcp.run()
