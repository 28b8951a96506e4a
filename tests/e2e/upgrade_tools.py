"""Job tools of the upgrade fixtures (tests/fixtures/upgrade, made by scripts/old_store_fixture.py with an older
vibe-jobs, and opened by test_upgrade_e2e with this one): they use only what every version's `job_tool` has.

`hold` and `hold_safe` report progress in a stage, then wait until the file named by VIBE_JOBS_TEST_UPGRADE_MARK
exists (the fixture script kills the old server while they wait; a test creates the file first, so a job run
again finishes at once)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from vibe_jobs import JobContext, job_tool

MARK_ENV = "VIBE_JOBS_TEST_UPGRADE_MARK"


def _mark() -> Path:
    return Path(os.environ.get(MARK_ENV, "/nonexistent/upgrade-mark"))


@job_tool(description="Return a rich result at once")
async def rich(tag: str, job: JobContext) -> dict[str, object]:
    await job.progress(50, f"half of {tag}", stage="halfway")
    return {
        "tag": tag,
        "third": 1 / 3,
        "text": "naïve café — ✓ 日本語 \U0001f680",
        "nested": {"l": [1, 2.5, None, True]},
    }


@job_tool(description="Fail with the given message")
async def explode(message: str, job: JobContext) -> str:
    job.diagnostic("about to explode")
    raise ValueError(message)


async def _hold(tag: str, job: JobContext) -> str:
    await job.progress(40, f"holding {tag}", stage="holding", sub_progress=25)
    await anyio.Path(f"{_mark()}.{tag}").touch()  # the fixture script waits for it
    while not await anyio.Path(_mark()).exists():  # noqa: ASYNC110 - a file another process makes
        await anyio.sleep(0.05)
    return f"released {tag}"


@job_tool(description="Hold until the mark file exists")
async def hold(tag: str, job: JobContext) -> str:
    return await _hold(tag, job)


@job_tool(description="Hold until the mark file exists; safe to run again", retry_safe=True, max_retries=2)
async def hold_safe(tag: str, job: JobContext) -> str:
    return await _hold(tag, job)


@job_tool(description="Ask a question and wait for its answer (versions with questions only)")
async def ask(tag: str, job: JobContext) -> str:
    answer = await job.elicit(f"go on with {tag}?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    return f"{tag}: {answer.action}"
