"""Job tools whose text holds what some store cannot (loaded with `--tools tests.e2e.nul_tools`): a NUL, which
PostgreSQL's TEXT columns cannot hold, and a word a test's database trigger refuses."""

from __future__ import annotations

import anyio

from vibe_jobs import JobContext, job_tool


@job_tool(description="Fail with a NUL character in the message")
async def nul_fail() -> str:
    raise ValueError("before\x00after")


@job_tool(description="Report progress with a NUL in the message and the stage, then wait to be cancelled")
async def nul_progress(job: JobContext) -> str:
    await job.progress(50, "read a\x00b", stage="stage\x00one")
    await anyio.sleep_forever()
    return "never"


@job_tool(description="Fail with a message that a test's database trigger refuses to store")
async def poison_fail() -> str:
    raise ValueError("poison")


@job_tool(description="Answer at once")
async def quick() -> str:
    return "quick"
