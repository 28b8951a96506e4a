"""Lifecycle events, published after the change is stored, in order per job.

Drop policy for slow subscribers: each subscription buffers up to `maxsize` events. When the
buffer is full, the oldest event whose job has a newer event in the buffer is dropped
(coalescing: progress is thinned first). The newest event of every job is never dropped, so a
subscriber always learns each job's latest state; past the bound the buffer holds at most one
event per job. Publishing never blocks and never awaits; past the bound an event costs O(log n) (`_Backlog`),
not a pass over the buffer.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from vibe_jobs.states import JobStatus

if TYPE_CHECKING:
    from vibe_jobs.models import JobRecord


class EventType(StrEnum):
    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    EXPIRED = "expired"


STATUS_EVENTS = {
    JobStatus.RUNNING: EventType.STARTED,
    JobStatus.COMPLETED: EventType.COMPLETED,
    JobStatus.FAILED: EventType.FAILED,
    JobStatus.CANCELLED: EventType.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class JobEvent:
    type: EventType
    job_id: str
    tool_name: str
    status: JobStatus
    version: int
    at: int
    progress: float | None = None
    message: str | None = None
    stage: str | None = None
    priority: int | None = None  # the stored rank (None: not known to whoever made the event)
    attempt: int | None = None
    principal: str | None = None  # who created the job (None: not known to whoever made the event)
    # The record the change made, when whoever published the event stored it (None: a change made elsewhere, a job
    # deleted). Read-only, as every record (store/base.py): the subscribers of the job share it with the writer, so
    # that a waiter judges the job by it instead of each reading the job again (`JobManager.wait`). Subscribers of
    # all jobs get the event without it (`EventBus.publish`): a slow one's buffer of events of every job would hold
    # as many records, results and all (up to max_result_bytes each).
    record: JobRecord | None = field(default=None, compare=False, repr=False)

    def without_record(self) -> JobEvent:
        return JobEvent(
            self.type, self.job_id, self.tool_name, self.status, self.version, self.at,
            self.progress, self.message, self.stage, self.priority, self.attempt, self.principal,
        )  # fmt: skip


def job_event(kind: EventType, rec: JobRecord) -> JobEvent:
    """The event of a change that made `rec`."""
    return JobEvent(
        kind,
        rec.id,
        rec.tool_name,
        rec.status,
        rec.version,
        rec.updated_at,
        rec.progress_percentage,
        rec.progress_message,
        rec.current_stage,
        rec.priority,
        rec.attempt,
        rec.principal,
        rec,
    )


class Subscription:
    """An async iterator of events; use it as a context manager so it is removed when done."""

    def __init__(self, bus: EventBus, job_id: str | None, maxsize: int) -> None:
        self._bus, self.job_id, self._maxsize = bus, job_id, maxsize
        self._buffer: deque[JobEvent] | _Backlog = deque()
        self._wakeup = anyio.Event()
        self._closed = False
        self.dropped = 0

    def push(self, event: JobEvent) -> None:
        self._buffer.append(event)  # first, so the new event can supersede a buffered one of its job
        if len(self._buffer) > self._maxsize:
            self._coalesce()
        self._wakeup.set()

    def _coalesce(self) -> None:
        buffer = self._buffer
        if not isinstance(buffer, _Backlog):  # the first time past the bound since the reader caught up
            buffer = self._buffer = _Backlog(buffer)
        if buffer.drop_superseded():
            self.dropped += 1

    def _take(self) -> JobEvent:
        event = self._buffer.popleft()
        if not self._buffer and isinstance(self._buffer, _Backlog):
            self._buffer = deque()  # caught up: back to the plain buffer
        return event

    @property
    def pending(self) -> bool:
        """Whether an event is buffered (the next `__anext__` answers without waiting)."""
        return bool(self._buffer)

    def take_buffered(self, most: int) -> list[JobEvent]:
        """Up to `most` of the events buffered now, oldest first, without waiting."""
        taken: list[JobEvent] = []
        while self._buffer and len(taken) < most:
            taken.append(self._take())
        return taken

    def close(self) -> None:
        self._closed = True
        self._bus.remove(self)
        self._wakeup.set()

    async def next_by(self, deadline: float) -> JobEvent | None:
        """The next event, or None when none came by `deadline` (`anyio.current_time()`) or the subscription was
        closed. Without a cancel scope of its own (a timer sets the wake-up): a long-poll takes an event in each
        wake-up, and a scope entered and left per event was about a third of a wake-up's cost."""
        if not self._buffer and not self._closed:
            self._wakeup = wakeup = anyio.Event()
            timer = asyncio.get_running_loop().call_at(deadline, wakeup.set)
            try:
                await wakeup.wait()
            finally:
                timer.cancel()
        return self._take() if self._buffer else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._take()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Backlog:
    """A subscription's buffer once past its bound: the events by arrival number (an ordered dict: one taken out of
    the middle in O(1)), each job's newest one's number, and the numbers of superseded ones in a heap, so that
    dropping the oldest superseded event costs O(log n). Finding it by a pass over the buffer at each event took
    0.3 ms with 1,024 buffered: a stalled /events reader beside 10,000 progress reports a second cost 3 s of work a
    second, the event loop held for 50-80 ms at a time (bench/dashboard_load.py)."""

    __slots__ = ("_events", "_newest", "_next", "_superseded")

    def __init__(self, events: Iterable[JobEvent]) -> None:
        self._events: OrderedDict[int, JobEvent] = OrderedDict()
        self._newest: dict[str, int] = {}
        self._superseded: list[int] = []  # a heap; numbers of events read since are skipped (and purged)
        self._next = 0
        for event in events:
            self.append(event)

    def append(self, event: JobEvent) -> None:
        n = self._next
        self._next = n + 1
        self._events[n] = event
        before = self._newest.get(event.job_id)
        self._newest[event.job_id] = n
        if before is not None:
            heapq.heappush(self._superseded, before)

    def drop_superseded(self) -> bool:
        """Drop the oldest event whose job has a newer one buffered; False when there is none."""
        superseded, events = self._superseded, self._events
        while superseded:
            if events.pop(heapq.heappop(superseded), None) is not None:
                return True
        return False

    def popleft(self) -> JobEvent:
        n, event = self._events.popitem(last=False)
        if self._newest.get(event.job_id) == n:
            del self._newest[event.job_id]
        if len(self._superseded) > 2 * len(self._events) + 64:  # mostly numbers of events read: keep the live ones
            self._superseded = [k for k in self._superseded if k in self._events]
            heapq.heapify(self._superseded)
        return event

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[JobEvent]:
        return iter(self._events.values())


class EventBus:
    """Fan-out of job events to subscriptions, for all jobs or one job."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        self._all: list[Subscription] = []
        self._by_job: dict[str, list[Subscription]] = {}
        # anybody subscribed at all: per-job publishers test this attribute before calling `wants`
        self.listened = False

    def subscribe(self, job_id: str | None = None) -> Subscription:
        sub = Subscription(self, job_id, self._maxsize)
        if job_id is None:
            self._all.append(sub)
        else:
            self._by_job.setdefault(job_id, []).append(sub)
        self.listened = True
        return sub

    def remove(self, sub: Subscription) -> None:
        subs = self._all if sub.job_id is None else self._by_job.get(sub.job_id, [])
        if sub in subs:
            subs.remove(sub)
        if sub.job_id is not None and not subs:
            self._by_job.pop(sub.job_id, None)
        self.listened = bool(self._all or self._by_job)

    def wants(self, job_id: str) -> bool:
        """Whether anybody listens to this job (so publishers can skip building the event)."""
        return bool(self._all) or job_id in self._by_job

    def publish(self, event: JobEvent) -> None:
        if self._all:
            bare = event if event.record is None else event.without_record()  # (see JobEvent.record)
            for sub in self._all:
                sub.push(bare)
        for sub in self._by_job.get(event.job_id, ()):
            sub.push(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._all) + sum(len(s) for s in self._by_job.values())
