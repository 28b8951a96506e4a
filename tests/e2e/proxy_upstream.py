"""A small upstream MCP server for the proxy's fault cases only (the real upstreams have no slow tool that is
not idempotent): `slow-write` takes `seconds` and is annotated `idempotentHint: false`, so an upstream that
dies under it must leave the job failed as interrupted, never run again."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

mcp: MCPServer = MCPServer("proxy-test-upstream")


@mcp.tool(name="slow-write", annotations=ToolAnnotations(idempotent_hint=False, destructive_hint=True))
async def slow_write(seconds: float) -> str:
    """Write something slowly (not safe to run twice)."""
    await anyio.sleep(seconds)
    return f"wrote after {seconds:g} s"


if __name__ == "__main__":
    mcp.run()
