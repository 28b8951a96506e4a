"""OpenTelemetry traces of jobs (optional: `pip install 'vibe-jobs[otel]'` brings the SDK).

The MCP SDK already opens a span for each `tools/call`, parented on the W3C `traceparent` the request
carries in `_meta` (the 2026-07-28 protocol's carrier). A job tool's call records that span's context on
the job (`JobRecord.trace_context`, stored, so a worker on another machine sees it too) and tags the span
with the job id. Each attempt of the run is a span of its own (`job <tool> attempt <n>`, a new trace, as
a consumer of a queue), linked to the creating call; a retry's span is linked to the first attempt's
too (when the same process ran it: the first attempt's context is kept in memory, bounded).

Zero-cost when off: without an SDK tracer provider (the API alone is a dependency of `mcp`), nothing is
installed on the executor, and a tool call reads one no-op span's invalid context.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from vibe_jobs.models import JobRecord

TRACER_NAME = "vibe-jobs"
FIRST_ATTEMPTS_KEPT = 4096

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
except ImportError:  # pragma: no cover - the API comes with mcp; kept for a stripped install
    trace = None  # type: ignore[assignment]


def enabled() -> bool:
    """A real tracer provider is configured (not the API's default proxy)."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (the SDK's tools/call span); None when there is none."""
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def tag_job(job_id: str) -> None:
    """Name the created job on the current (tools/call) span."""
    if trace is not None and (span := trace.get_current_span()).is_recording():
        span.set_attribute("vibe_jobs.job_id", job_id)


def parse_traceparent(text: str | None) -> SpanContext | None:
    """A remote SpanContext from `00-<trace>-<span>-<flags>`, or None when absent or malformed."""
    if trace is None or not text:
        return None
    parts = text.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return ctx if ctx.is_valid else None


class AttemptSpans:
    """The executor's attempt hook: a span per attempt, linked to the creating call and the first attempt."""

    def __init__(self) -> None:
        assert trace is not None
        self.tracer = trace.get_tracer(TRACER_NAME)
        self.first: OrderedDict[str, SpanContext] = OrderedDict()

    def __call__(self, rec: JobRecord) -> AbstractContextManager[Any]:
        return self._span(rec)

    @contextmanager
    def _span(self, rec: JobRecord) -> Iterator[Any]:
        links = []
        if (created := parse_traceparent(rec.trace_context)) is not None:
            links.append(Link(created, {"vibe_jobs.link": "created_by"}))
        if rec.attempt > 1 and (first := self.first.get(rec.id)) is not None:
            links.append(Link(first, {"vibe_jobs.link": "retry_of"}))
        attributes: dict[str, str | int] = {
            "vibe_jobs.job_id": rec.id,
            "vibe_jobs.tool": rec.tool_name,
            "vibe_jobs.attempt": rec.attempt,
        }
        with self.tracer.start_as_current_span(
            f"job {rec.tool_name} attempt {rec.attempt}",
            context=otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ) as span:
            if rec.attempt == 1:
                self._keep_first(rec.id, span.get_span_context())
            yield span

    def _keep_first(self, job_id: str, ctx: SpanContext) -> None:
        self.first[job_id] = ctx
        if len(self.first) > FIRST_ATTEMPTS_KEPT:
            self.first.popitem(last=False)


def install(executor: Any) -> bool:
    """Put a span around each attempt the executor runs, when tracing is on; whether it is installed. Called again,
    it keeps the hook it installed (and the first attempts that hook remembers)."""
    if not enabled():
        return False
    if not isinstance(executor.attempt_hook, AttemptSpans):
        executor.attempt_hook = AttemptSpans()
    return True
