"""`jobs://recent` updates (server/recent_feed.py): who hears of a change, and what learning it costs the store."""

from __future__ import annotations

from typing import Any

from vibe_jobs.events import EventType, JobEvent
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.recent_feed import RecentFeed, ViewerBus
from vibe_jobs.states import JobStatus
from vibe_jobs.store import MemoryStore


class CountingJobs(dict[str, JobRecord]):
    """`MemoryStore.jobs` counting the records read by id."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def elsewhere(job_id: str) -> JobEvent:
    """A change another process made (its notification names no principal: `ClaimSource._changed`)."""
    return JobEvent(EventType.PROGRESS, job_id, "echo", JobStatus.RUNNING, 0, 0)


async def test_a_job_changed_elsewhere_is_read_once_to_learn_its_principal(manager: JobManager) -> None:
    """Another replica's job that the subscriber does not see (alice's, to the local viewer) was read again at each
    of its changes, progress included: a busy cluster's progress reports became as many reads of whole records by
    the hub's one task, on every replica with a jobs://recent subscriber. A job's principal never changes."""
    store = manager.store
    assert isinstance(store, MemoryStore)
    await store.insert(JobRecord("a" * 32, "echo", {}, JobStatus.RUNNING, 1, 1, principal="alice"))
    await store.insert(JobRecord("b" * 32, "echo", {}, JobStatus.RUNNING, 1, 1))  # the local principal's
    feed = RecentFeed(manager, ViewerBus(Identity()))
    heard: list[Any] = []
    feed.bus.subscribe(heard.append)  # a listen stream of the local viewer
    feed.listen_started()
    store.jobs = counting = CountingJobs(store.jobs)
    for _ in range(50):
        await feed.note(elsewhere("a" * 32))
    assert counting.reads <= 1, counting.reads  # before: 50
    await feed.flush(feed.due)
    assert heard == []  # alice's job is not the local viewer's to hear of
    await feed.note(elsewhere("b" * 32))
    await feed.flush(feed.due)
    assert len(heard) == 1  # the local principal's own job: heard of
