"""Traces: one job call over MCP yields the tool call's span (under the request's traceparent) and a span per
attempt linked to it; a retry's span is linked to the first attempt's. An in-memory exporter collects them."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from mcp import Client
from mcp_types import RequestParamsMeta

from vibe_jobs import Settings
from vibe_jobs.jobtool import make_spec
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.server import tracing
from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.states import JobStatus

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra: pip install 'vibe-jobs[otel]'")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_SPAN = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_SPAN:016x}-01"
EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk.TracerProvider):  # the global provider is set once per process
        provider = sdk.TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


async def test_one_job_call_yields_the_call_span_and_linked_attempt_spans(spans: InMemorySpanExporter) -> None:
    calls = [0]

    async def flaky() -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    server = JobServer(settings=Settings(store_url="memory://"))
    server.add_spec(make_spec(flaky, name="flaky", retry=RetryPolicy(max_retries=1, initial_delay_ms=0, jitter=0)))
    assert tracing.install(server.source.executor)
    async with server.manager as m, Client(server.build()) as client:
        answer = await client.call_tool("flaky", {}, meta=RequestParamsMeta(traceparent=TRACEPARENT))  # type: ignore[typeddict-unknown-key]
        job_id = answer.structured_content["jobId"] if answer.structured_content else ""
        with anyio.fail_after(10):
            assert (await m.wait(job_id, 10)).status is JobStatus.COMPLETED
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.name == "tools/call flaky"]
    assert call.context is not None and call.parent is not None
    assert call.context.trace_id == TRACE_ID, "the request's traceparent is not the call's trace"
    assert call.parent.span_id == PARENT_SPAN, "the call's span is not a child of the request's traceparent"
    assert call.attributes is not None and call.attributes["vibe_jobs.job_id"] == job_id
    first, second = sorted((s for s in finished if s.name.startswith("job flaky attempt")), key=lambda s: s.name)
    assert first.name == "job flaky attempt 1" and second.name == "job flaky attempt 2"
    assert first.status.status_code.name == "ERROR" and second.status.status_code.name == "UNSET"
    for attempt in (first, second):
        assert attempt.parent is None, "an attempt is a trace of its own, linked (not a child)"
        linked = {link.context.span_id: dict(link.attributes or {}) for link in attempt.links}
        assert linked[call.context.span_id] == {"vibe_jobs.link": "created_by"}
    assert first.context is not None
    assert {link.context.span_id for link in second.links} == {call.context.span_id, first.context.span_id}


def test_tracing_is_off_without_an_sdk_provider() -> None:
    assert tracing.parse_traceparent("00-" + "0" * 32 + "-" + "0" * 16 + "-01") is None
    assert tracing.parse_traceparent("garbage") is None
    ctx = tracing.parse_traceparent(TRACEPARENT)
    assert ctx is not None and ctx.trace_id == TRACE_ID and ctx.span_id == PARENT_SPAN


async def test_a_library_server_traces_attempts_without_being_told_to(spans: InMemorySpanExporter) -> None:
    """A library user who configures a tracer provider and serves `JobServer.build()` gets the attempt spans too
    (issue 17's "one job call yields the linked spans"), not only `vibe-jobs serve` and `worker`."""
    server = JobServer(settings=Settings(store_url="memory://"))

    @server.job_tool
    async def hello(name: str) -> str:
        return f"hello {name}"

    async with server.manager as m, Client(server.build()) as client:
        answer = await client.call_tool("hello", {"name": "x"}, meta=RequestParamsMeta(traceparent=TRACEPARENT))  # type: ignore[typeddict-unknown-key]
        job_id = answer.structured_content["jobId"] if answer.structured_content else ""
        with anyio.fail_after(10):
            assert (await m.wait(job_id, 10)).status is JobStatus.COMPLETED
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.name == "tools/call hello"]
    attempts = [s for s in finished if s.name == "job hello attempt 1"]
    assert len(attempts) == 1, [s.name for s in finished]
    assert call.context is not None and call.parent is not None and call.parent.span_id == PARENT_SPAN
    assert {link.context.span_id for link in attempts[0].links} == {call.context.span_id}
