"""A subscription's buffer past its bound (`events._Backlog`) against the plain rule it replaced (a deque: past the
bound, the oldest event whose job has a newer one buffered is dropped by a pass over the buffer), event for event,
with reads through the subscription's own ways (`take_buffered`, `next_by`) in between, over many seeds."""

from __future__ import annotations

import random
from collections import deque

import anyio

from vibe_jobs.events import EventBus, EventType, JobEvent
from vibe_jobs.states import JobStatus


class PlainBuffer:
    """The rule as a deque and a pass: what the buffer held before `_Backlog`."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize, self.events, self.dropped = maxsize, deque[JobEvent](), 0

    def push(self, event: JobEvent) -> None:
        self.events.append(event)
        if len(self.events) > self.maxsize:
            newest = {ev.job_id: i for i, ev in enumerate(self.events)}
            for i, ev in enumerate(self.events):
                if newest[ev.job_id] != i:
                    del self.events[i]
                    self.dropped += 1
                    return

    def take(self, most: int) -> list[JobEvent]:
        return [self.events.popleft() for _ in range(min(most, len(self.events)))]


def _event(job: str, n: int) -> JobEvent:
    kind = EventType.PROGRESS if n % 3 else EventType.STARTED
    return JobEvent(kind, job, "t", JobStatus.RUNNING, n, n)


async def test_the_backlog_keeps_what_the_plain_rule_kept_event_for_event() -> None:
    for seed in range(60):
        rng = random.Random(seed)
        maxsize, jobs = rng.choice((1, 2, 3, 8, 16)), rng.choice((1, 2, 5, 20, 60))
        bus = EventBus(maxsize=maxsize)
        sub, plain = bus.subscribe(), PlainBuffer(maxsize)
        for n in range(1, 600):
            event = _event(f"j{rng.randrange(jobs)}", n)
            bus.publish(event)
            plain.push(event)
            roll = rng.random()
            if roll < 0.08:  # a burst read (/events), sometimes to the end, then the plain buffer again
                most = rng.choice((1, 3, 256))
                assert sub.take_buffered(most) == plain.take(most), (seed, n)
            elif roll < 0.12:  # one event (a long-poll's)
                got = await sub.next_by(anyio.current_time())
                assert [got] == plain.take(1), (seed, n)
            assert sub.dropped == plain.dropped, (seed, n)
        assert sub.take_buffered(10_000) == plain.take(10_000), seed
        sub.close()
