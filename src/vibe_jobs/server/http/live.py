"""Live updates: Server-Sent Events from the job event bus and the store (the page holds one EventSource).

`/events` streams every job's changes (`?job=ID`: one job's) as `event: job`, and the queue figures every
few seconds as `event: stats` (depth, running, throughput, error rate, health) for the sparklines and banner.
The bus coalesces a slow reader's backlog (progress first, never a job's latest state), so a stalled
browser costs a bounded buffer; the events buffered are sent together, a job's progress superseded by a later
event of it left out (`job_events`), and a reader that takes nothing for SEND_TIMEOUT_SECONDS is dropped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vibe_jobs.errors import StoreError
from vibe_jobs.events import STATUS_EVENTS, EventType, JobEvent, job_event
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord, priority_of
from vibe_jobs.server.http.guard import Refused
from vibe_jobs.server.http.lifetime import Lease, serve_until
from vibe_jobs.store.base import JobQuery

STATS_SECONDS = 2.0
WATCH_SECONDS = 1.0  # how often a job page's job is read for changes other processes made (until it finishes)
WATCH_LIST_SECONDS = 5.0  # how often the list page's first rows are read (WATCH_ROWS records, without results)
WATCH_ROWS = 50  # the jobs the list page shows first
# /events streams open at once in one process: each reads the store every few seconds, so a client opening
# thousands (a script, a tab reloading in a loop) would cost every other reader; a tab holds one
MAX_EVENT_STREAMS = 64
BATCH = 256  # events buffered for a stream, sent as one write (one write an event cost most of an event's time)
# a reader that takes no write of its stream for this long (its socket's buffers full) is dropped: its subscription
# would hold up to one event of every job that changed meanwhile
SEND_TIMEOUT_SECONDS = 30.0
log = get_logger("vibe_jobs.dashboard")


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
        "priority": None if ev.priority is None else priority_of(ev.priority).value,
        "attempt": ev.attempt,
    }


def job_events(batch: list[JobEvent]) -> bytes:
    """`batch` as `job` events in one chunk, a progress event left out where a later event of its job follows (it
    says all the progress one says: the page shows a job's latest)."""
    last = {ev.job_id: i for i, ev in enumerate(batch)}
    return b"".join(
        ServerSentEvent(json.dumps(event_data(ev)), event="job").encode()
        for i, ev in enumerate(batch)
        if ev.type is not EventType.PROGRESS or last[ev.job_id] == i
    )


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


class StoreWatch:
    """Changes made by other processes, read from the store: the bus carries this process's own, and the
    dashboard alone (`vibe-jobs dashboard`), a `--no-worker` replica or a second server on one SQLite file
    runs none of the jobs it shows. The watched job every WATCH_SECONDS until it finishes, or the newest
    WATCH_ROWS jobs (the list page's first page) every WATCH_LIST_SECONDS; a version seen already (from
    the bus or a read) is not sent again."""

    def __init__(self, manager: JobManager, job_id: str | None) -> None:
        self.m, self.job_id = manager, job_id
        self.seen: dict[str, int] = {}
        self.primed = False  # the first read only notes what the page was rendered with
        self.every = WATCH_SECONDS if job_id is not None else WATCH_LIST_SECONDS
        self.done = False  # the watched job finished (or is gone): nothing more to read

    def saw(self, event: JobEvent) -> None:
        self.seen[event.job_id] = max(event.version, self.seen.get(event.job_id, 0))

    async def changes(self) -> list[JobEvent]:
        records = await self._records()
        events = []
        for rec in records:
            last = self.seen.get(rec.id)
            if self.primed and (last is None or rec.version > last):
                kind = EventType.CREATED if last is None and self.job_id is None else None
                events.append(job_event(kind or STATUS_EVENTS.get(rec.status, EventType.PROGRESS), rec))
        self.seen = {rec.id: max(rec.version, self.seen.get(rec.id, 0)) for rec in records}
        self.primed = True
        return events

    async def _records(self) -> list[JobRecord]:
        if self.job_id is None:
            return await self.m.store.query(JobQuery(limit=WATCH_ROWS, with_result=False, with_params=False))
        if self.done:
            return []
        rec = await self.m.store.get(self.job_id)
        self.done = rec is None or rec.finished
        return [rec] if rec is not None else []


async def stream(
    manager: JobManager, job_id: str | None, stats_every: float
) -> AsyncGenerator[dict[str, str] | bytes, None]:
    watch = StoreWatch(manager, job_id)
    with manager.subscribe(job_id) as sub:
        await _watched(watch)  # what the page shows: changes come after it (and after hello)
        yield {"event": "hello", "data": json.dumps({"job": job_id})}
        now = anyio.current_time()
        next_stats, next_watch = now, now + watch.every
        while True:
            now = anyio.current_time()
            if job_id is None and now >= next_stats:
                next_stats = now + stats_every
                yield {"event": "stats", "data": json.dumps(await stats_data(manager))}
            if now >= next_watch:
                next_watch = now + watch.every
                for change in await _watched(watch):
                    yield {"event": "job", "data": json.dumps(event_data(change))}
            until = min(next_watch, next_stats) if job_id is None else next_watch
            event: JobEvent | None = None
            with anyio.move_on_after(max(0.0, until - anyio.current_time())):
                event = await sub.__anext__()
            if event is not None:
                batch = [event, *sub.take_buffered(BATCH - 1)]
                for each in batch:
                    watch.saw(each)
                yield job_events(batch)
                await anyio.lowlevel.checkpoint()  # a write that does not wait lets the loop's other work go on


async def _watched(watch: StoreWatch) -> list[JobEvent]:
    try:
        return await watch.changes()
    except StoreError as exc:  # the stats' health names the failure; the stream goes on
        watch.m.store_failed(exc)
        return []


class OpenStreams:
    """How many /events streams are open; `take` refuses one past `most`."""

    def __init__(self, most: int) -> None:
        self.most, self.open = most, 0

    def take(self) -> bool:
        if self.open >= self.most:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class _CountedEvents(EventSourceResponse):
    """An event stream that gives its place back however it ends (the client gone, the server stopping, the
    `lease` of the token that opened it ending: `lifetime.serve_until`)."""

    def __init__(
        self,
        streams: OpenStreams,
        content: AsyncIterator[dict[str, str] | bytes],
        lease: Lease | None,
        send_timeout: float,
    ) -> None:
        super().__init__(content, ping=15, send_timeout=send_timeout)
        self.streams, self.lease = streams, lease

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await serve_until(self.lease, super().__call__, scope, receive, send)
        except SendTimeoutError:  # the server closes the connection (its answer not complete)
            log.info("events.reader_dropped", path=scope.get("path"), seconds=self.send_timeout)
        finally:
            self.streams.give_back()


def events_endpoint(
    manager: JobManager,
    check: Callable[[Request], Awaitable[Lease | None]],
    stats_every: float = STATS_SECONDS,
    send_timeout: float = SEND_TIMEOUT_SECONDS,
) -> Callable[[Request], Awaitable[Response]]:
    streams = OpenStreams(MAX_EVENT_STREAMS)

    async def events(request: Request) -> Response:
        try:
            lease = await check(request)
        except Refused as exc:
            return PlainTextResponse(str(exc), status_code=exc.status, headers=exc.headers)
        if not streams.take():
            message = f"at most {streams.most} live event streams may be open at once: close one (a dashboard tab)"
            return PlainTextResponse(message, status_code=429, headers={"Retry-After": "5"})
        job_id = request.query_params.get("job") or None
        return _CountedEvents(streams, stream(manager, job_id, stats_every), lease, send_timeout)

    return events
