"""Lifecycle events: published after the change is stored, in order per job; slow subscribers never block."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator

import anyio
import pytest

from tests.conftest import ManagerFactory
from vibe_jobs.errors import InvalidTransition
from vibe_jobs.events import EventBus, EventType, JobEvent, Subscription
from vibe_jobs.manager import JobManager
from vibe_jobs.results import text_result
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

pytestmark = pytest.mark.every_store

Stored = Callable[[str], tuple[int, str] | None]  # a job's (version, status) as stored, or None


class CheckingBus(EventBus):
    """An EventBus that checks, at the moment of publishing, that the store already holds the change."""

    def __init__(self, stored: Stored, maxsize: int = 1024) -> None:
        super().__init__(maxsize)
        self.stored = stored
        self.published: list[JobEvent] = []

    def publish(self, event: JobEvent) -> None:
        found = self.stored(event.job_id)
        assert found is not None, f"{event.type} published before the job was stored"
        assert found == (event.version, event.status.value), f"{event.type} published early"
        self.published.append(event)
        super().publish(event)


@pytest.fixture
def stored(store: JobStore) -> Iterator[Stored]:
    """Read a job as stored, synchronously (while the bus publishes): the memory store's record, or the
    committed row of the SQLite file, on a connection of its own."""
    if isinstance(store, MemoryStore):
        yield lambda job_id: (rec.version, rec.status.value) if (rec := store.jobs.get(job_id)) else None
        return
    assert isinstance(store, SQLiteStore)
    db = sqlite3.connect(store.path)
    try:
        yield lambda job_id: db.execute("SELECT version, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()


@pytest.fixture
def bus(stored: Stored) -> CheckingBus:
    return CheckingBus(stored)


@pytest.fixture
def manager(make_manager: ManagerFactory, bus: CheckingBus) -> JobManager:
    return make_manager(bus=bus)


def drain(sub: Subscription) -> list[JobEvent]:
    """What a subscription holds now (without waiting)."""
    out = []
    while sub._buffer:
        out.append(sub._buffer.popleft())
    return out


def kinds(events: list[JobEvent], job_id: str | None = None) -> list[str]:
    return [e.type.value for e in events if job_id is None or e.job_id == job_id]


async def _lifecycles(manager: JobManager) -> tuple[str, str, str]:
    """One job completes, one fails, one is cancelled while pending."""
    done = await manager.create_job("echo", {"n": 1})
    failed = await manager.create_job("echo", {"n": 2})
    cancelled = await manager.create_job("echo", {"n": 3})
    await manager.start_job(done)
    await manager.update_progress(done, 50, "half", stage="parse")
    await manager.start_job(failed)
    await manager.cancel_job(cancelled, "not needed")
    await manager.update_job_status(done, JobStatus.RUNNING, "more", progress=75)
    await manager.set_job_result(failed, text_result("boom", is_error=True))
    await manager.set_job_result(done, text_result("ok"))
    return done, failed, cancelled


EXPECTED = {
    "done": ["created", "started", "progress", "progress", "completed"],
    "failed": ["created", "started", "failed"],
    "cancelled": ["created", "cancelled"],
}


async def test_every_change_is_published_after_it_is_stored_in_order(manager: JobManager, bus: CheckingBus) -> None:
    with manager.subscribe() as everything:
        done, failed, cancelled = await _lifecycles(manager)
    events = drain(everything)
    assert events == bus.published  # every published event reached the subscriber, in publishing order
    for job_id, name in ((done, "done"), (failed, "failed"), (cancelled, "cancelled")):
        assert kinds(events, job_id) == EXPECTED[name]
        versions = [e.version for e in events if e.job_id == job_id]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
    last = [e for e in events if e.job_id == done]
    assert (last[2].progress, last[2].message, last[2].stage) == (50.0, "half", "parse")
    assert (last[3].progress, last[3].message) == (75.0, "more")
    assert last[4].status is JobStatus.COMPLETED and last[4].tool_name == "echo"


async def test_subscribing_to_one_job_sees_only_that_job(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    other = await manager.create_job("echo", {"other": True})
    with manager.subscribe(job_id) as sub:
        await manager.start_job(other)
        await manager.start_job(job_id)
        await manager.update_progress(job_id, 10)
        await manager.set_job_result(other, text_result("x"))
        await manager.set_job_result(job_id, text_result("y", is_error=True))
    events = drain(sub)
    assert {e.job_id for e in events} == {job_id}
    assert kinds(events) == ["started", "progress", "failed"]


async def test_a_retry_is_published(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    with manager.subscribe(job_id) as sub:
        await manager.update_job_status(job_id, JobStatus.PENDING, "retrying")
        await manager.start_job(job_id)
    assert kinds(drain(sub)) == ["retried", "started"]


async def test_refused_changes_publish_nothing(manager: JobManager, bus: CheckingBus) -> None:
    job_id = await manager.create_job("echo")
    await manager.cancel_job(job_id)
    count = len(bus.published)
    with manager.subscribe(job_id) as sub:
        for attempt in (manager.start_job(job_id), manager.update_progress(job_id, 5), manager.cancel_job(job_id)):
            with pytest.raises(InvalidTransition, match="cannot go from cancelled"):
                await attempt
    assert drain(sub) == []
    assert len(bus.published) == count


async def test_an_async_subscriber_receives_events_as_they_happen(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    received: list[JobEvent] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, manager.subscribe(job_id) as sub:

            async def consume() -> None:
                async for event in sub:
                    received.append(event)
                    if event.status.finished:
                        return

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()  # the consumer waits for the first event
            await manager.start_job(job_id)
            for pct in (10, 20, 30):
                await manager.update_progress(job_id, pct)
                await anyio.wait_all_tasks_blocked()  # let the consumer take it
            await manager.set_job_result(job_id, text_result("ok"))
    assert kinds(received) == ["started", "progress", "progress", "progress", "completed"]
    assert [e.progress for e in received[1:4]] == [10, 20, 30]


async def test_leaving_the_with_block_removes_the_subscription(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    assert manager.bus.subscriber_count == 0
    with manager.subscribe(job_id) as one, manager.subscribe() as everything:
        assert manager.bus.subscriber_count == 2
        assert manager.bus.wants(job_id) and manager.bus.listened
        await manager.start_job(job_id)
    assert manager.bus.subscriber_count == 0
    assert not manager.bus.wants(job_id) and not manager.bus.listened
    await manager.update_progress(job_id, 50)
    assert kinds(drain(one)) == kinds(drain(everything)) == ["started"]


async def test_async_with_removes_the_subscription_and_ends_iteration(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    async with manager.subscribe(job_id) as sub:
        await manager.start_job(job_id)
    assert manager.bus.subscriber_count == 0
    assert kinds([e async for e in sub]) == ["started"]  # buffered events are still delivered, then it ends


async def test_closing_wakes_a_waiting_subscriber(manager: JobManager) -> None:
    sub = manager.subscribe()
    done = anyio.Event()

    async def consume() -> None:
        async for _ in sub:
            pytest.fail("no event was published")
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            sub.close()
            await done.wait()
    assert manager.bus.subscriber_count == 0


# -- slow subscribers and the drop policy -------------------------------------------------


def ev(job_id: str, version: int) -> JobEvent:
    return JobEvent(EventType.PROGRESS, job_id, "t", JobStatus.RUNNING, version, version)


def labels(sub: Subscription) -> list[str]:
    return [f"{e.job_id}{e.version}" for e in sub._buffer]


def test_a_full_buffer_drops_the_oldest_superseded_event() -> None:
    bus = EventBus(maxsize=3)
    sub = bus.subscribe()
    for event in (ev("A", 1), ev("B", 1), ev("A", 2)):
        bus.publish(event)
    assert labels(sub) == ["A1", "B1", "A2"]
    bus.publish(ev("C", 1))  # full: A1 is superseded by A2
    assert labels(sub) == ["B1", "A2", "C1"]
    assert sub.dropped == 1
    bus.publish(ev("C", 2))  # full: C1 is the only superseded one now
    assert labels(sub) == ["B1", "A2", "C2"]


def test_one_busy_job_keeps_only_its_latest_events() -> None:
    bus = EventBus(maxsize=3)
    sub = bus.subscribe("A")
    for v in range(1, 11):
        bus.publish(ev("A", v))
    assert labels(sub) == ["A8", "A9", "A10"]
    assert sub.dropped == 7


def test_past_the_bound_the_buffer_holds_one_event_per_job() -> None:
    bus = EventBus(maxsize=3)
    sub = bus.subscribe()
    for job in "ABCDE":
        bus.publish(ev(job, 1))
    assert labels(sub) == ["A1", "B1", "C1", "D1", "E1"]  # the newest event of a job is never dropped
    bus.publish(ev("A", 2))
    assert labels(sub) == ["B1", "C1", "D1", "E1", "A2"]
    assert sub.dropped == 1


def test_drop_policy_holds_for_any_sequence() -> None:
    maxsize = 8
    bus = EventBus(maxsize=maxsize)
    sub = bus.subscribe()
    rng = random.Random(7)
    unread_latest: dict[str, int] = {}  # per job, its latest event when the subscriber has not read it yet
    for step in range(1, 3000):
        job = f"j{rng.randrange(12)}"
        bus.publish(ev(job, step))
        unread_latest[job] = step
        buffered = [(e.job_id, e.version) for e in sub._buffer]
        assert len(buffered) <= max(maxsize, len({j for j, _ in buffered}))
        assert set(unread_latest.items()) <= set(buffered), "a job's latest event was dropped"
        for job_id in unread_latest:  # per job, still in order
            versions = [v for j, v in buffered if j == job_id]
            assert versions == sorted(versions)
        if rng.random() < 0.1:  # the subscriber reads now and then
            read = sub._buffer.popleft()
            if unread_latest.get(read.job_id) == read.version:
                del unread_latest[read.job_id]
    assert sub.dropped > 0


async def test_a_slow_subscriber_never_blocks_the_manager(make_manager: ManagerFactory) -> None:
    manager = make_manager(bus=EventBus(maxsize=16))
    slow = manager.subscribe()  # never read
    ids = [await manager.create_job("echo", {"i": i}) for i in range(40)]
    with anyio.fail_after(5):
        for job_id in ids:
            await manager.start_job(job_id)
            for pct in range(0, 100, 5):
                await manager.update_progress(job_id, pct)
            await manager.set_job_result(job_id, text_result("ok"))
    counts = await manager.store.counts()
    assert counts[JobStatus.COMPLETED] == 40
    buffered = drain(slow)
    assert len(buffered) == 40  # past the bound: one per job, the latest
    assert {e.job_id for e in buffered} == set(ids)
    assert all(e.type is EventType.COMPLETED for e in buffered)
    assert slow.dropped == 40 * (1 + 1 + 20 + 1) - 40
    slow.close()


async def test_a_slow_subscriber_does_not_hold_back_a_fast_one(make_manager: ManagerFactory) -> None:
    manager = make_manager(bus=EventBus(maxsize=4))
    job_id = await manager.create_job("echo")
    with manager.subscribe(job_id) as slow, manager.subscribe(job_id) as fast:
        await manager.start_job(job_id)
        assert kinds(drain(fast)) == ["started"]
        seen: list[float | None] = []
        for pct in range(10):
            await manager.update_progress(job_id, pct)
            seen.extend(e.progress for e in drain(fast))
    assert seen == list(range(10))
    assert [e.progress for e in drain(slow)] == [6, 7, 8, 9]


class CountedId(str):
    """A job id that counts how often it is hashed: a buffer that looks an event up (or every event) hashes its id."""

    hashed = 0

    def __hash__(self) -> int:
        CountedId.hashed += 1
        return str.__hash__(self)


def test_past_the_bound_an_event_does_not_cost_a_pass_over_the_buffer() -> None:
    bus = EventBus(maxsize=100)
    sub = bus.subscribe()
    for i in range(2_000):  # jobs that report once: none of their events is ever superseded (never dropped)
        bus.publish(ev(CountedId(f"quiet{i}"), 1))
    CountedId.hashed = 0
    for v in range(2, 1_002):  # one busy job, past the bound: each of its events supersedes its previous one
        bus.publish(ev("busy", v))
    # before: each event past the bound went over the whole buffer (1,000 x 2,000 hashes of the quiet ids)
    assert CountedId.hashed < 2_000
    assert sub.dropped == 999
    assert [e.job_id for e in sub._buffer][-3:] == ["quiet1998", "quiet1999", "busy"]
    assert len(sub._buffer) == 2_001
    read = [sub._take() for _ in range(len(sub._buffer))]  # the reader catches up: the plain buffer again
    assert read[0].job_id == "quiet0" and read[-1].version == 1_001
    assert not sub.pending
    bus.publish(ev("busy", 1_002))
    assert labels(sub) == ["busy1002"]
