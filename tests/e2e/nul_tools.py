"""Job tools whose outcome holds a NUL character (loaded with `--tools tests.e2e.nul_tools`): PostgreSQL's
TEXT columns cannot hold one."""

from __future__ import annotations

from vibe_jobs import job_tool


@job_tool(description="Fail with a NUL character in the message")
async def nul_fail() -> str:
    raise ValueError("before\x00after")


@job_tool(description="Answer at once")
async def quick() -> str:
    return "quick"
