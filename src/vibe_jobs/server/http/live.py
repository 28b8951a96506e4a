"""Live updates: Server-Sent Events from the job event bus (the page holds one EventSource, no polling).

`/events` streams every job's changes (`?job=ID`: one job's) as `event: job`, and the queue figures every
few seconds as `event: stats` (depth, running, throughput, error rate, health) for the sparklines and banner.
The bus coalesces a slow reader's backlog (progress first, never a job's latest state), so a stalled
browser costs a bounded buffer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vibe_jobs.events import JobEvent
from vibe_jobs.manager import JobManager
from vibe_jobs.server.http.guard import Refused

STATS_SECONDS = 2.0


def event_data(ev: JobEvent) -> dict[str, Any]:
    return {
        "type": ev.type.value,
        "jobId": ev.job_id,
        "toolName": ev.tool_name,
        "status": ev.status.value,
        "version": ev.version,
        "at": ev.at,
        "progress": ev.progress,
        "message": ev.message,
        "stage": ev.stage,
    }


async def stats_data(manager: JobManager) -> dict[str, Any]:
    s = await manager.statistics()
    return {
        "queue": s.queue_depth,
        "running": s.running,
        "throughput": s.throughput_per_minute,
        "errors": s.error_rate_5m,
        "health": s.health.status,
        "reasons": s.health.reasons,
    }


async def stream(manager: JobManager, job_id: str | None, stats_every: float) -> AsyncIterator[dict[str, str]]:
    with manager.subscribe(job_id) as sub:
        yield {"event": "hello", "data": json.dumps({"job": job_id})}
        next_stats = anyio.current_time()
        while True:
            if job_id is None and anyio.current_time() >= next_stats:
                next_stats = anyio.current_time() + stats_every
                yield {"event": "stats", "data": json.dumps(await stats_data(manager))}
            event: JobEvent | None = None
            with anyio.move_on_after(max(0.0, next_stats - anyio.current_time()) if job_id is None else 15):
                event = await sub.__anext__()
            if event is not None:
                yield {"event": "job", "data": json.dumps(event_data(event))}


def events_endpoint(
    manager: JobManager, check: Callable[[Request], Awaitable[None]], stats_every: float = STATS_SECONDS
) -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        try:
            await check(request)
        except Refused as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        job_id = request.query_params.get("job") or None
        return EventSourceResponse(stream(manager, job_id, stats_every), ping=15)

    return events
