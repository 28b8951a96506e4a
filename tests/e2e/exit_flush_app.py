"""A library user's program whose exit must flush what it holds (`python tests/e2e/exit_flush_app.py SPANS MARK`):
OpenTelemetry spans batched for export (a BatchSpanProcessor exports what it holds when its provider shuts down, at
the interpreter's exit) and an exit handler of its own (`atexit`, writing MARK). Its job tool `swallow` ignores its
cancellation for good, so a stop leaves its work behind (`jobserver.leave_work_behind`); `quick` ends at once,
its attempt's span batched. A grace of 0.5 s keeps the stop short."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from vibe_jobs import JobContext, JobServer, Settings
from vibe_jobs.engine.sources import make_source

spans, mark = Path(sys.argv[1]), Path(sys.argv[2])
provider = TracerProvider()  # shut down at exit (its own exit handler): what its batch holds is exported then
exporter = ConsoleSpanExporter(out=spans.open("w"))
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))  # nothing sent before
trace.set_tracer_provider(provider)
atexit.register(mark.write_text, "exit handlers ran\n")

server = JobServer("exit-flush", settings=Settings(store_url="memory://"))
server.source = make_source(server.manager, server.specs, grace_seconds=0.5)  # (JobServer takes no grace)


@server.job_tool(description="Return at once")
async def quick() -> str:
    return "quick"


@server.job_tool(description="Catch every cancellation and go on, for ever")
async def swallow(job: JobContext) -> str:
    while True:
        try:
            await anyio.sleep(0.05)
        except BaseException:  # hostile on purpose
            job.diagnostic("cancellation swallowed")


server.run()
