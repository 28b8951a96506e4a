"""The schedule part of every store: schedules as data (compare-and-set on version) and firings that
let each (schedule, tick) in once, whoever fires it and however often."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from tests.store.test_contract import full_record, record, store  # noqa: F401  # the fixture over every store
from vibe_jobs.models import JobRecord
from vibe_jobs.schedules import ScheduleRecord, ScheduleSpec
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobQuery, JobStore, MemoryStore
from vibe_jobs.store.base import ScheduleStore
from vibe_jobs.store.sqlite import SQLiteStore


def schedule(schedule_id: str = "s1", **fields: object) -> ScheduleRecord:
    spec = ScheduleSpec.model_validate({"tool": "echo", "arguments": {"text": "hé", "n": [1, {"a": None}]},
                                        "cron": "*/5 * * * *", "timezone": "Europe/Berlin", **fields})  # fmt: skip
    return ScheduleRecord.from_spec(spec, schedule_id, 1_000)


def fired(schedule_id: str, tick: int) -> JobRecord:
    return record(f"job-{os.urandom(4).hex()}", schedule_id=schedule_id, tick=tick)


def as_schedules(s: JobStore) -> ScheduleStore:
    assert isinstance(s, ScheduleStore)
    return s


async def test_a_schedule_held_by_its_previous_job_is_not_due(store: JobStore) -> None:  # noqa: F811
    """overlap queue holds a due schedule while its previous job is pending or running: a ticker pass reads it
    only once that job ends. Before, every pass read each held schedule and its job, arguments and all: 120 held
    schedules of 1 MiB took 1.4 s a pass, and passes come every second (bench/ticker.py)."""
    s = as_schedules(store)
    running, done = record("j-running", status=JobStatus.RUNNING), record("j-done", status=JobStatus.COMPLETED)
    for job in (running, done, record("j-pending")):
        await store.insert(job)
    for sid, overlap, last in (("q-running", "queue", "j-running"), ("q-pending", "queue", "j-pending"),
                               ("q-done", "queue", "j-done"), ("q-gone", "queue", "j-deleted"),
                               ("q-first", "queue", None), ("skip-running", "skip", "j-running"),
                               ("allow-running", "allow", "j-running")):  # fmt: skip
        rec = schedule(sid, overlap=overlap)
        rec.next_fire_at, rec.last_job_id = 1_000, last
        await s.insert_schedule(rec)
    due = sorted(r.schedule_id for r in await s.due_schedules(2_000))
    assert due == ["allow-running", "q-done", "q-first", "q-gone", "skip-running"]
    assert await store.update("j-running", {"status": JobStatus.COMPLETED, "finished_at": 1_500}) is not None
    assert "q-running" in {r.schedule_id for r in await s.due_schedules(2_000)}  # it ended: due again


async def test_a_schedule_round_trips_with_every_field(store: JobStore) -> None:  # noqa: F811
    s = as_schedules(store)
    rec = schedule(startAt=5, endAt=10**13, paused=True, misfire="catch_up", maxCatchUp=7, overlap="queue",
                   priority="high", operationType="analysis")  # fmt: skip
    rec.last_fired_at, rec.last_job_id, rec.last_tick, rec.skipped = 3, "j", 2, 4
    await s.insert_schedule(rec)
    assert await s.get_schedule("s1") == rec
    assert [r.schedule_id for r in await s.list_schedules()] == ["s1"]
    assert await s.get_schedule("nope") is None


async def test_a_principal_s_schedules_are_listed_without_anyone_else_s(store: JobStore) -> None:  # noqa: F811
    """One principal's list-schedules, job-stats and schedule quota read its own only: another's 1,000 schedules
    of 1 MiB arguments each made every call of everyone's decode them all (review helper-55 F3)."""
    s = as_schedules(store)
    for n, principal in enumerate(["alice", "bob", "alice", "local"]):
        rec = schedule(f"s{n}")
        rec.principal = principal
        await s.insert_schedule(rec)
    assert [r.schedule_id for r in await s.list_schedules("alice")] == ["s0", "s2"]
    assert [r.schedule_id for r in await s.list_schedules("bob")] == ["s1"]
    assert await s.list_schedules("carol") == []
    assert [r.schedule_id for r in await s.list_schedules()] == ["s0", "s1", "s2", "s3"]


async def test_a_principal_s_schedules_are_counted_without_reading_them(store: JobStore) -> None:  # noqa: F811
    """The schedule quota's count: the quota read each of the principal's schedules whole to count them, under
    its lock, at every create (1,000 schedules of 100 kB on SQLite: 1.1-1.3 s a create; a count reads 10 ms)."""
    s = as_schedules(store)
    for n, principal in enumerate(["alice", "bob", "alice", "local"]):
        rec = schedule(f"s{n}")
        rec.principal = principal
        await s.insert_schedule(rec)
    assert [await s.count_schedules(p) for p in ("alice", "bob", "local", "carol")] == [2, 1, 1, 0]
    await s.delete_schedule("s0")
    assert await s.count_schedules("alice") == 1


async def test_the_first_schedules_are_listed_without_their_arguments_and_all_counted(
    store: JobStore,  # noqa: F811
) -> None:
    """The dashboard's schedules: the first few, oldest first, of everyone's or one principal's, without the
    arguments it never shows, and how many there are (the page read every schedule whole to show 50)."""
    s = as_schedules(store)
    for n, principal in enumerate(["alice", "bob", "alice", "local"]):
        rec = schedule(f"s{n}")
        rec.principal = principal
        await s.insert_schedule(rec)
    first = await s.list_schedules(limit=3, arguments=False)
    assert [r.schedule_id for r in first] == ["s0", "s1", "s2"]
    whole = await s.list_schedules(limit=3)
    if not isinstance(store, MemoryStore):  # it reads nothing: it hands its records as they are
        assert [r.arguments for r in first] == [{}, {}, {}]
    assert [replace(r, arguments={}) for r in whole] == [replace(r, arguments={}) for r in first]  # all else read
    assert [r.schedule_id for r in await s.list_schedules("alice", limit=1, arguments=False)] == ["s0"]
    assert await s.list_schedules(limit=0) == []
    assert (await s.count_schedules(None), await s.count_schedules("alice")) == (4, 2)


async def test_a_schedule_changes_by_compare_and_set(store: JobStore) -> None:  # noqa: F811
    s = as_schedules(store)
    await s.insert_schedule(schedule())
    new = await s.update_schedule("s1", {"paused": True, "next_fire_at": 99}, version=1)
    assert new is not None and new.paused and new.next_fire_at == 99 and new.version == 2
    assert await s.update_schedule("s1", {"paused": False}, version=1) is None  # a stale writer loses
    assert (await s.get_schedule("s1")).paused  # type: ignore[union-attr]
    assert await s.delete_schedule("s1") and not await s.delete_schedule("s1")
    assert await s.list_schedules() == []


async def test_a_tick_fires_once(store: JobStore) -> None:  # noqa: F811
    s = as_schedules(store)
    await s.insert_schedule(schedule())
    first, again, other = fired("s1", 60_000), fired("s1", 60_000), fired("s1", 120_000)
    assert await s.fire(first, 1)
    assert not await s.fire(again, 1)
    assert await s.fire(other, 1)
    assert await store.get(again.id) is None
    jobs = await store.query(JobQuery(limit=10))
    assert sorted((j.schedule_id, j.tick) for j in jobs) == [("s1", 60_000), ("s1", 120_000)]
    # the tick's key names the job that fired it (what a firing that finds the tick fired records as the last)
    assert await s.fired_job("s1", 60_000) == first.id and await s.fired_job("s1", 120_000) == other.id
    assert await s.fired_job("s1", 180_000) is None and await s.fired_job("s2", 60_000) is None


async def test_a_fired_job_keeps_every_field(store: JobStore) -> None:  # noqa: F811
    """A firing stores the job as an insert does, every column of it (SQLite copies them in a trigger)."""
    rec = full_record()
    rec.schedule_id, rec.tick, rec.principal, rec.trace_context = "s1", 9_000, "alice", "00-" + "ab" * 16 + "-01"
    rec.stage_history = [{"stage": "one", "at": 5, "progress": 10.0}]
    await as_schedules(store).insert_schedule(schedule())
    assert await as_schedules(store).fire(rec, 1)
    assert await store.get(rec.id) == rec


async def test_racing_firings_of_one_tick_let_one_in(store: JobStore) -> None:  # noqa: F811
    s = as_schedules(store)
    await s.insert_schedule(schedule())
    results = await asyncio.gather(*(s.fire(fired("s1", 7_000), 1) for _ in range(12)))
    assert sorted(results) == [False] * 11 + [True]
    assert len(await store.query(JobQuery(limit=100))) == 1


async def test_the_tick_key_outlives_a_restart_of_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    one = SQLiteStore(url)
    await one.open()
    await one.insert_schedule(schedule())
    assert await one.fire(fired("s1", 5_000), 1)
    await one.close()
    two = SQLiteStore(url)
    await two.open()
    try:
        assert not await two.fire(fired("s1", 5_000), 1)
        assert len(await two.query(JobQuery(limit=10))) == 1
    finally:
        await two.close()


async def test_prune_deletes_only_keys_no_firing_can_come_back_to(store: JobStore) -> None:  # noqa: F811
    s = as_schedules(store)
    await s.insert_schedule(schedule())
    assert await s.update_schedule("s1", {"next_fire_at": 2_500}, version=1) is not None
    for tick in (1_000, 2_000, 3_000):
        assert await s.fire(fired("s1", tick), 2)  # fired at created_at 1_000
    assert await s.prune_ticks(before=1_000) == 0  # none fired long enough ago
    assert await s.prune_ticks(before=10_000) == 2  # s1's 1_000 and 2_000 (it is past them)
    assert not await s.fire(fired("s1", 3_000), 2)  # the key of a tick still ahead of the schedule is kept
    assert await s.fire(fired("s1", 2_000), 2)  # (a pruned key: the schedule never comes back to it)


async def test_a_paused_changed_or_deleted_schedule_fires_nothing(store: JobStore) -> None:  # noqa: F811
    """A firing planned on a schedule read before a pause, an edit or a delete answered writes no job: the
    store checks the version it was planned on in the same step as the insert."""
    s = as_schedules(store)
    await s.insert_schedule(schedule())
    paused = await s.update_schedule("s1", {"paused": True}, version=1)
    assert paused is not None
    assert not await s.fire(fired("s1", 1_000), 1)  # planned before the pause
    assert not await s.fire(fired("s1", 1_000), 2)  # paused: not even at its own version
    resumed = await s.update_schedule("s1", {"paused": False}, version=2)
    assert resumed is not None
    assert await s.fire(fired("s1", 1_000), 3)
    assert await s.update_schedule("s1", {"arguments": {"text": "new"}}, version=3) is not None
    assert not await s.fire(fired("s1", 2_000), 3)  # planned with the old arguments
    assert await s.delete_schedule("s1")
    assert not await s.fire(fired("s1", 3_000), 4)
    jobs = await store.query(JobQuery(limit=10))
    assert [(j.schedule_id, j.tick) for j in jobs] == [("s1", 1_000)]


async def test_a_ticker_reads_the_schedules_due_and_the_next_firing_not_every_schedule(
    store: JobStore,  # noqa: F811
) -> None:
    s = as_schedules(store)
    for sid, at, paused in (("late", 3_000, False), ("early", 1_000, False), ("held", 500, True),
                            ("later", 9_000, False), ("same", 3_000, False), ("never", None, False)):  # fmt: skip
        rec = schedule(sid, paused=paused)
        rec.next_fire_at = at
        await s.insert_schedule(rec)
    assert [r.schedule_id for r in await s.due_schedules(3_000)] == ["early", "late", "same"]  # earliest first
    assert await s.due_schedules(999) == []  # the paused one is never due
    assert await s.next_fire_after(3_000) == 9_000
    assert await s.next_fire_after(0) == 1_000  # not the paused one's 500
    assert await s.next_fire_after(9_000) is None
