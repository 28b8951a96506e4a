"""A library user's program, written from the README alone: a `JobServer` with three job tools (one taking a
pydantic model, one reporting progress by stages, one that fails and is retried) and a plain tool, run over the
transport given (`python tests/library_app.py [stdio|streamable-http] [PORT]`).

It is type-checked with the tests (mypy --strict, as a user of the typed package would): `from vibe_jobs import
JobServer` was `object` to mypy ("object" not callable) and the server's decorators left the functions untyped."""

from __future__ import annotations

import sys
from typing import Literal, cast

from pydantic import BaseModel, Field

from vibe_jobs import JobContext, JobServer, RetryPolicy, job_tool


class ReportRequest(BaseModel):
    title: str
    sections: list[str] = Field(min_length=1)
    pages: int = Field(ge=1, le=100)


class Report(BaseModel):
    title: str
    words: int


@job_tool(description="Build a report from a request", operation_type="analysis", timeout=60)
async def build_report(request: ReportRequest, job: JobContext) -> Report:
    await job.progress(50, f"writing {request.title}")
    return Report(title=request.title, words=request.pages * 250)


server = JobServer("library-app")  # the store and limits of the environment, as `vibe-jobs serve` reads them
server.job_tool(build_report)  # the README's form: the options given to @job_tool hold


@server.job_tool(description="Index documents in stages")
async def index_corpus(documents: int, job: JobContext) -> dict[str, int]:
    stages = ("fetch", "tokenize", "embed")
    for number, stage in enumerate(stages):
        for done in range(1, documents + 1):
            await job.checkpoint()
            overall = (number + done / documents) / len(stages) * 100
            await job.progress(overall, f"{stage} {done}/{documents}", stage=stage, sub_progress=done / documents * 100)
        job.diagnostic(f"{stage} done")
    return {"indexed": documents}


@server.job_tool(description="Fetch from a flaky upstream", retry=RetryPolicy(max_retries=3, initial_delay_ms=10))
async def flaky_fetch(url: str, job: JobContext) -> str:
    if job.attempt < 3:
        raise ConnectionError(f"{url} reset the connection (attempt {job.attempt})")
    return f"fetched {url} on attempt {job.attempt}"


@server.tool()
def version() -> str:
    return "1.0"


if __name__ == "__main__":
    transport = cast(Literal["stdio", "streamable-http"], sys.argv[1] if len(sys.argv) > 1 else "stdio")
    server.run(transport, port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000)
