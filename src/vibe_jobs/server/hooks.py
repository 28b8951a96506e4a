"""What a `--tools` module may add to the MCP server itself beyond job tools and plain tools: resources,
prompts, a completion handler, tools as `Tool` objects, HTTP options. `on_build(fn)` registers `fn(mcp)`,
called once the MCPServer is built (`build_mcp`); `EXTRA_TOOLS` are listed with the plain tools;
`http_options` are passed to the streamable-HTTP transport (e.g. an event store)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool

BuildHook = Callable[[MCPServer[Any]], None]
BUILD_HOOKS: list[BuildHook] = []
EXTRA_TOOLS: list[Tool] = []  # ordinary tools given as Tool objects (e.g. with an input schema of their own)
http_options: dict[str, Any] = {}


def on_build(fn: BuildHook) -> BuildHook:
    """Decorator: call `fn(mcp)` on every MCPServer built in this process."""
    BUILD_HOOKS.append(fn)
    return fn


def run_build_hooks(mcp: MCPServer[Any]) -> None:
    for fn in BUILD_HOOKS:
        fn(mcp)
