"""The bounded map of recently remembered records (manager, SQLite store)."""

from __future__ import annotations

import pytest

from vibe_jobs.models import JobRecord
from vibe_jobs.recent import Recent, RecentRecords
from vibe_jobs.states import JobStatus


def test_the_oldest_goes_when_full_and_a_put_makes_a_key_the_newest() -> None:
    recent: Recent[int] = Recent(3)
    for key in "abc":
        recent.put(key, ord(key))
    recent.put("a", 1)  # refreshed: now the newest
    recent.put("d", 4)  # full: the oldest ("b") goes
    assert list(recent) == ["c", "a", "d"]
    assert recent.get("a") == 1 and recent.get("b") is None
    assert recent.pop("c", None) == 99 and recent.pop("c", None) is None
    assert len(recent) == 2


def test_churn_keeps_the_newest_values_and_never_more_than_the_limit() -> None:
    recent: Recent[int] = Recent(100)
    for i in range(10_000):
        recent.put(str(i), i)
        if i % 3 == 0:
            recent.pop(str(i), None)  # finished jobs are forgotten as they go
    kept = sorted(map(int, recent))
    assert 90 <= len(kept) <= 100
    assert all(i % 3 for i in kept)  # forgotten ones stay forgotten
    assert kept[-1] == 9_998 and kept[0] > 9_998 - 200  # only the newest: the old ones went as it filled


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Recent(0)


def test_records_of_active_jobs_are_kept_and_a_finished_jobs_record_is_dropped() -> None:
    recent = RecentRecords(10)
    pending = recent.remember(JobRecord("a", "tool", {}, JobStatus.PENDING, 0, 0))
    running = recent.remember(JobRecord("b", "tool", {}, JobStatus.RUNNING, 0, 0))
    assert recent.get("a") is pending and recent.get("b") is running
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        recent.remember(JobRecord("a", "tool", {}, JobStatus.PENDING, 0, 0))
        finished = JobRecord("a", "tool", {}, status, 0, 0, version=2)
        assert recent.remember(finished) is finished and "a" not in recent
    assert list(recent) == ["b"]
