"""A job tool whose result costs little to hold and much to store (loaded with `VIBE_JOBS_TOOLS=tests.e2e.memory_tools`;
kept apart from the fuzzed tool modules, whose fuzzer would ask it for gigabytes)."""

from __future__ import annotations

from typing import Any

from vibe_jobs import JobContext, job_tool


@job_tool(description="Return a CallToolResult of `times` text blocks that are one `mb` MB string")
async def repeated_blocks(mb: int, times: int, job: JobContext) -> dict[str, Any]:
    block = {"type": "text", "text": "y" * (mb << 20)}  # one string: held once, written out `times` over
    return {"content": [block] * times, "isError": False}
