# mypy: disable-error-code="import-not-found,untyped-decorator"
"""A FastMCP 4 server for figure 3: a task-enabled no-op tool (background task, in-memory Docket backend)
and a plain no-op tool. Runs over stdio in the peers' venv; started by bench/peers/fastmcp_call.py."""

from __future__ import annotations

from fastmcp import FastMCP
from fastmcp_tasks import TasksExtension

mcp = FastMCP("bench")
mcp.add_extension(TasksExtension(url="memory://"))


@mcp.tool(task=True)
async def noop_task() -> str:
    """Return at once, as a background task."""
    return "done"


@mcp.tool
async def plain_noop() -> str:
    """Return at once."""
    return "ok"


if __name__ == "__main__":
    mcp.run(show_banner=False)
