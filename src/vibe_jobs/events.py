"""Lifecycle events, published after the change is stored, in order per job.

Drop policy for slow subscribers: each subscription buffers up to `maxsize` events. When the
buffer is full, the oldest event whose job has a newer event in the buffer is dropped
(coalescing: progress is thinned first). The newest event of every job is never dropped, so a
subscriber always learns each job's latest state; past the bound the buffer holds at most one
event per job. Publishing never blocks and never awaits.
"""

from __future__ import annotations

import asyncio
from collections import deque
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
        self._buffer: deque[JobEvent] = deque()
        self._wakeup = anyio.Event()
        self._closed = False
        self.dropped = 0

    def push(self, event: JobEvent) -> None:
        self._buffer.append(event)  # first, so the new event can supersede a buffered one of its job
        if len(self._buffer) > self._maxsize:
            self._coalesce()
        self._wakeup.set()

    def _coalesce(self) -> None:
        newest: dict[str, int] = {ev.job_id: i for i, ev in enumerate(self._buffer)}
        for i, ev in enumerate(self._buffer):
            if newest[ev.job_id] != i:
                del self._buffer[i]
                self.dropped += 1
                return

    @property
    def pending(self) -> bool:
        """Whether an event is buffered (the next `__anext__` answers without waiting)."""
        return bool(self._buffer)

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
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

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
