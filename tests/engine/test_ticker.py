"""The ticker with an injected clock, on the memory and SQLite stores: firing times, misfires after an
hour of downtime, overlap, pause and resume, endAt, two processes ticking together, bad schedules."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.engine.ticker import Ticker
from vibe_jobs.errors import InvalidArguments, InvalidSchedule
from vibe_jobs.jobtool import make_spec
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.store import JobQuery, JobStore
from vibe_jobs.store.sqlite import SQLiteStore

pytestmark = pytest.mark.every_store


def echo(text: str, times: int = 1) -> str:
    return text * times


TOOLS = {"echo": make_spec(echo)}


def ticker_of(manager: JobManager) -> Ticker:
    return Ticker(Schedules(manager, TOOLS))


async def create(t: Ticker, **fields: Any) -> ScheduleRecord:
    return await t.schedules.create(parse_spec({"tool": "echo", "arguments": {"text": "hi"}, **fields}))


async def fired(store: JobStore) -> list[JobRecord]:
    jobs = await store.query(JobQuery(limit=10_000))
    return sorted(jobs, key=lambda j: j.tick or 0)


async def ticks(store: JobStore) -> list[int]:
    return [j.tick or 0 for j in await fired(store)]


async def test_every_n_seconds_fires_each_tick_once(manager: JobManager, clock: FakeClock, store: JobStore) -> None:
    t = ticker_of(manager)
    start = clock.ms
    sch = await create(t, everySeconds=10)
    assert sch.next_fire_at == start + 10_000
    assert await t.tick() == start + 10_000 and await ticks(store) == []
    clock.advance(10)
    assert await t.tick() == start + 20_000
    await t.tick()  # the same instant again: nothing more
    clock.advance(10)
    await t.tick()
    jobs = await fired(store)
    assert [j.tick for j in jobs] == [start + 10_000, start + 20_000]
    assert {j.schedule_id for j in jobs} == {sch.schedule_id} and {j.tool_name for j in jobs} == {"echo"}
    assert all(j.params == {"text": "hi", "times": 1} or j.params == {"text": "hi"} for j in jobs)
    after = await t.schedules.get(sch.schedule_id)
    assert after.last_job_id == jobs[-1].id and after.last_fired_at == clock.ms and after.last_tick == start + 20_000


async def test_cron_fires_on_its_wall_times(manager: JobManager, clock: FakeClock, store: JobStore) -> None:
    t = ticker_of(manager)
    sch = await create(t, cron="*/15 * * * * *")  # every 15 seconds (leading seconds field)
    first = sch.next_fire_at
    assert first is not None and first % 15_000 == 0 and 0 < first - clock.ms <= 15_000
    clock.advance((first - clock.ms) / 1000)
    for _ in range(3):
        await t.tick()
        clock.advance(15)
    assert await ticks(store) == [first, first + 15_000, first + 30_000]


@pytest.mark.parametrize(("misfire", "expected"), [("skip", 1), ("run_once", 2), ("catch_up", 4)])
async def test_an_hour_down_then_each_misfire_policy(
    make_manager: ManagerFactory, clock: FakeClock, store: JobStore, misfire: str, expected: int
) -> None:
    before = ticker_of(make_manager())
    start = clock.ms
    await create(before, everySeconds=60, misfire=misfire, maxCatchUp=3)
    clock.advance(3600.5)  # the process was down for an hour: 60 ticks passed unfired
    after = ticker_of(make_manager())  # a restarted process, same store
    await after.tick()
    got = await ticks(store)
    assert len(got) == expected
    assert got[-1] == start + 3_600_000  # the latest tick, on time
    assert got == [start + 3_600_000 - 60_000 * k for k in range(expected - 1, -1, -1)]
    sch = (await after.schedules.store.list_schedules())[0]
    assert sch.next_fire_at == start + 3_660_000 and sch.skipped == 60 - expected


async def finish(manager: JobManager, job_id: str) -> None:
    await manager.start_job(job_id)
    await manager.set_job_result(job_id, {"content": [{"type": "text", "text": "ok"}]})


@pytest.mark.parametrize("overlap", ["allow", "skip", "queue"])
async def test_overlap_while_the_previous_run_goes(
    manager: JobManager, clock: FakeClock, store: JobStore, overlap: str
) -> None:
    t = ticker_of(manager)
    start = clock.ms
    await create(t, everySeconds=10, overlap=overlap)
    clock.advance(10)
    await t.tick()
    (first,) = await fired(store)
    await manager.start_job(first.id)  # still running at the next tick
    clock.advance(10)
    await t.tick()
    got = await ticks(store)
    assert got == {"allow": [start + 10_000, start + 20_000], "skip": [start + 10_000],
                   "queue": [start + 10_000]}[overlap]  # fmt: skip
    await manager.set_job_result(first.id, {"content": []})
    clock.advance(1)
    await t.tick()
    got = await ticks(store)
    # queue: the held tick fires once the previous run finished; skip: the skipped tick stays skipped
    assert got == {"allow": [start + 10_000, start + 20_000], "skip": [start + 10_000],
                   "queue": [start + 10_000, start + 20_000]}[overlap]  # fmt: skip


async def test_pause_and_resume(manager: JobManager, clock: FakeClock, store: JobStore) -> None:
    t = ticker_of(manager)
    sch = await create(t, everySeconds=10)
    paused = await t.schedules.pause(sch.schedule_id)
    assert paused.paused
    clock.advance(35)
    assert await t.tick() is None
    assert await ticks(store) == []
    resumed = await t.schedules.resume(sch.schedule_id)
    assert not resumed.paused and resumed.next_fire_at == sch.next_fire_at + 30_000  # type: ignore[operator]
    clock.advance(5)
    await t.tick()
    assert await ticks(store) == [resumed.next_fire_at]  # the ticks of the pause were not fired


async def test_a_pass_that_read_the_schedule_before_a_pause_answered_fires_nothing(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """The race a pause can lose: the ticker read the schedule (due), then `pause-schedule` answered, then
    the ticker fired. A job appeared after the pause had answered; now the firing checks the version."""
    t = ticker_of(manager)
    sch = await create(t, everySeconds=10)
    clock.advance(10)
    read = await t.schedules.store.get_schedule(sch.schedule_id)  # what the pass read, before the pause
    assert read is not None and read.next_fire_at is not None and read.next_fire_at <= clock.ms
    await t.schedules.pause(sch.schedule_id)
    await t._fire_due(read)
    assert await ticks(store) == []
    still = await t.schedules.get(sch.schedule_id)
    assert still.paused and still.next_fire_at == read.next_fire_at  # the stale pass moved nothing on
    await t.schedules.delete(sch.schedule_id)
    await t._fire_due(read)  # a pass that read it before a delete answered
    assert await ticks(store) == []


async def test_end_at_stops_the_schedule(manager: JobManager, clock: FakeClock, store: JobStore) -> None:
    t = ticker_of(manager)
    start = clock.ms
    sch = await create(t, everySeconds=10, endAt=start + 25_000)
    for _ in range(6):
        clock.advance(10)
        await t.tick()
    assert await ticks(store) == [start + 10_000, start + 20_000]
    after = await t.schedules.get(sch.schedule_id)
    assert after.next_fire_at is None
    clock.advance(60)
    assert await t.tick() is None and len(await ticks(store)) == 2


async def test_a_schedule_stored_with_a_cron_longer_than_the_cap_still_fires(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """The cap (200 characters) is for schedules made from now on; one stored before it failed every tick."""
    t = ticker_of(manager)
    long_cron = ",".join(["*/1"] * 60) + " * * * *"  # every minute, in 247 characters
    sch = await create(t, cron="* * * * *")
    stored = replace(await t.schedules.get(sch.schedule_id), schedule_id="long", cron=long_cron)
    assert len(stored.cron or "") > 200
    await t.schedules.store.insert_schedule(stored)
    clock.advance(60)
    await t.tick()
    assert {j.schedule_id for j in await fired(store)} == {sch.schedule_id, "long"}


async def test_a_schedule_that_cannot_fire_does_not_make_the_ticker_spin(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """A stored schedule whose firing fails (here a cron no parser takes, written by hand) stayed due, and the
    pass answered its past firing as the next one: the ticker woke again at once, a busy loop. It is retried at
    the next pass; the next firing a pass answers is always ahead."""
    t = ticker_of(manager)
    sch = await create(t, everySeconds=60)
    broken = replace(await t.schedules.get(sch.schedule_id), schedule_id="broken", cron="61 * * * *",
                     every_seconds=None)  # fmt: skip
    await t.schedules.store.insert_schedule(broken)
    clock.advance(60)
    upcoming = await t.tick()
    assert [j.schedule_id for j in await fired(store)] == [sch.schedule_id]
    assert upcoming is not None and upcoming > clock.ms


async def test_a_tick_the_store_could_not_take_is_fired_later_not_counted_as_skipped(
    make_manager: ManagerFactory, clock: FakeClock, store_kind: str, tmp_path: Path
) -> None:
    """A store that cannot take the firing's writes (another process holds the lock) is not a refusal by
    admission (those ticks are lost, counted as skipped): the tick fires once the store takes writes again."""
    if store_kind != "sqlite":
        pytest.skip("a write lock held by another process: SQLite")
    db = tmp_path / "locked.db"
    sqlite_store = SQLiteStore(f"sqlite:///{db}?busy_timeout=0.2")
    await sqlite_store.open()
    try:
        t = ticker_of(make_manager(store=sqlite_store))
        sch = await create(t, everySeconds=10)
        clock.advance(10)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock through this pass
        try:
            await t.tick()
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await t.schedules.get(sch.schedule_id)).skipped == 0
        reasons = (await t.m.statistics()).health.reasons  # health names it (the firing's own failure was only logged)
        assert any("the job store failed" in reason for reason in reasons), reasons
        await t.tick()  # the store takes writes again: the tick is fired now
        assert await ticks(sqlite_store) == [sch.next_fire_at]
    finally:
        await sqlite_store.close()


async def test_two_processes_ticking_together_fire_each_tick_once(
    make_manager: ManagerFactory, clock: FakeClock, store: JobStore
) -> None:
    one, two = ticker_of(make_manager()), ticker_of(make_manager())
    start = clock.ms
    await create(one, everySeconds=1, misfire="catch_up", maxCatchUp=100)
    for _ in range(20):
        clock.advance(0.5)
        await two.tick()
        await one.tick()
    assert await ticks(store) == [start + 1000 * k for k in range(1, 11)]


async def test_the_firing_is_recorded_when_the_process_that_lost_it_moves_the_schedule_on_first(
    make_manager: ManagerFactory, clock: FakeClock, store: JobStore
) -> None:
    """On PostgreSQL the loser of a tick's firing waits for the winner's commit, then moves the schedule on
    first, knowing no job of it: lastFiredAt and lastJobId stayed empty for every tick."""
    one, two = ticker_of(make_manager()), ticker_of(make_manager())
    schedules = one.schedules.store  # the store, as its schedules' keeper
    sch = await create(one, everySeconds=1)
    clock.advance(1)
    rec = await schedules.get_schedule(sch.schedule_id)
    assert rec is not None
    p = one._plan(rec)
    last, refused = await one._fire_ticks(rec, p)  # one fires the tick ...
    assert last["last_tick"] == sch.next_fire_at and refused == 0
    await two.tick()  # ... two loses its firing and moves the schedule on first, naming one's job (the tick's key)
    moved = await schedules.get_schedule(sch.schedule_id)
    assert moved is not None and moved.next_fire_at == p.next_fire_at
    assert moved.last_job_id == last["last_job_id"]
    await one._move_on(rec, p, last)  # one's compare-and-set misses: it records its firing on the new version
    after = await schedules.get_schedule(sch.schedule_id)
    assert after is not None and after.next_fire_at == p.next_fire_at
    assert (after.last_job_id, after.last_tick) == (last["last_job_id"], last["last_tick"])
    assert [j.id for j in await fired(store)] == [last["last_job_id"]]


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"cron": "61 * * * *"}, InvalidSchedule, "not valid"),
        ({"cron": "* * * *"}, InvalidSchedule, "expected 5 fields"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, InvalidSchedule, "unknown timezone 'Mars/Olympus'"),
        ({"cron": "* * * * *", "everySeconds": 5}, InvalidSchedule, "exactly one of cron and everySeconds"),
        ({}, InvalidSchedule, "exactly one of cron and everySeconds"),
        ({"everySeconds": 0.5}, InvalidSchedule, "everySeconds: Input should be greater than or equal to 1"),
        ({"everySeconds": 5, "tool": "nope"}, InvalidSchedule, "no job tool named 'nope'; job tools: echo"),
        ({"everySeconds": 5, "arguments": {"text": 3}}, InvalidArguments, "text"),
        ({"everySeconds": 5, "arguments": {"txt": "x"}}, InvalidArguments, "txt"),
        ({"everySeconds": 5, "endAt": 1}, InvalidSchedule, "never fire"),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_stored(
    manager: JobManager, store: JobStore, fields: dict[str, Any], error: type[Exception], words: str
) -> None:
    t = ticker_of(manager)
    with pytest.raises(error, match=words):
        await create(t, **fields)
    assert await t.schedules.store.list_schedules() == []


async def test_a_schedule_is_its_creators_and_so_are_its_jobs(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    from vibe_jobs.errors import ScheduleNotFound
    from vibe_jobs.identity import Viewer

    alice, bob, admin = Viewer("alice"), Viewer("bob"), Viewer("root", admin=True)
    t = ticker_of(manager)
    sch = await t.schedules.create(parse_spec({"tool": "echo", "arguments": {"text": "a"}, "everySeconds": 5}), alice)
    assert [s.schedule_id for s in await t.schedules.list(alice)] == [sch.schedule_id]
    assert await t.schedules.list(bob) == []
    assert [s.schedule_id for s in await t.schedules.list(admin)] == [sch.schedule_id]
    for change in (t.schedules.pause, t.schedules.resume, t.schedules.delete):
        with pytest.raises(ScheduleNotFound):
            await change(sch.schedule_id, bob)
    clock.advance(5)
    await t.tick()
    (job,) = await fired(store)
    assert job.principal == "alice"


async def test_by_default_a_principal_keeps_at_most_1000_schedules_and_concurrent_creates_cannot_pass_it(
    manager: JobManager, store: JobStore
) -> None:
    import anyio

    from vibe_jobs.errors import QuotaExceeded
    from vibe_jobs.identity import Viewer

    t, alice = ticker_of(manager), Viewer("alice")
    spec = parse_spec({"tool": "echo", "arguments": {"text": "a"}, "everySeconds": 60})
    assert manager.settings.quota_schedules == 1000
    for _ in range(990):
        await t.schedules.create(spec, alice)
    refused: list[QuotaExceeded] = []

    async def one() -> None:
        try:
            await t.schedules.create(spec, alice)
        except QuotaExceeded as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert len(refused) == 10 and "VIBE_JOBS_QUOTA_SCHEDULES" in str(refused[0])
    assert len(await t.schedules.store.list_schedules()) == 1000
    await t.schedules.create(spec, Viewer("bob"))  # the quota is alice's


async def test_a_schedule_whose_tool_this_process_lacks_is_left_to_one_that_has_it_and_health_names_it(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """A server restarted without a schedule's tool fired its jobs anyway: pending for ever, piling up, while
    health said healthy. Now a ticker fires only the schedules of its own job tools; one overdue past the grace
    is named (by tool, no schedule id) by health, until a process with the tool fires it."""
    has = ticker_of(manager)
    lacks = Ticker(Schedules(manager, {}))
    sch = await create(has, everySeconds=10)
    clock.advance(10)
    await lacks.tick()
    assert await ticks(store) == []
    assert (await manager.statistics()).health.status == "healthy"  # within the grace: another process may fire it
    clock.advance(60)  # engine.ticker.UNFIRED_GRACE_MS
    await lacks.tick()
    assert await ticks(store) == []
    health = (await manager.statistics()).health
    assert health.status == "degraded" and sch.schedule_id not in " ".join(health.reasons)
    assert health.reasons == [
        "schedules are overdue and fire nothing (no job tool here runs their tool): 1 of tool 'echo'"
    ]
    await has.tick()  # a process with the tool fires it (its misfire rule decides which ticks) and moves it on
    assert await ticks(store) != []
    await lacks.tick()
    assert (await manager.statistics()).health.status == "healthy"


async def test_a_pass_that_read_a_declared_schedule_before_it_was_deleted_and_declared_again_fires_nothing(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """A schedule declared in code has a fixed id: deleted and declared again, it came back at version 1, so a
    pass that read the old one passed the firing's version check, fired the old cadence's tick after the delete
    answered and wrote the old next firing onto the new schedule (helper-46 #3)."""
    t = ticker_of(manager)
    old = await t.schedules.declare(parse_spec({"tool": "echo", "arguments": {"text": "a"}, "everySeconds": 10,
                                                "scheduleId": "code:echo"}))  # fmt: skip
    clock.advance(10)
    read = await t.schedules.store.get_schedule(old.schedule_id)  # what the pass read
    assert read is not None
    await t.schedules.delete(old.schedule_id)
    clock.advance(0.001)
    new = await t.schedules.declare(parse_spec({"tool": "echo", "arguments": {"text": "a"}, "cron": "0 3 * * *",
                                                "scheduleId": "code:echo"}))  # fmt: skip
    await t._fire_due(read)
    assert await ticks(store) == []
    assert await t.schedules.store.get_schedule(old.schedule_id) == new  # untouched by the stale pass


async def test_a_schedule_due_while_a_pass_fires_another_is_the_next_firing_it_answers(
    manager: JobManager, clock: FakeClock, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass reads the schedules due when it starts; one that comes due while it fires (the clock moves
    10 ms per firing here) is answered as the next firing, so the ticker passes again at once, not a second
    later."""
    t = ticker_of(manager)
    first = await create(t, everySeconds=10)
    clock.advance(0.003)
    second = await create(t, everySeconds=10)
    assert first.next_fire_at is not None and second.next_fire_at == first.next_fire_at + 3
    fire = manager.fire_job

    async def slow_fire(*args: Any, **kwargs: Any) -> str | None:
        clock.advance(0.01)  # the store takes 10 ms
        return await fire(*args, **kwargs)

    monkeypatch.setattr(manager, "fire_job", slow_fire)
    clock.advance(9.997)
    upcoming = await t.tick()
    assert await ticks(store) == [first.next_fire_at]
    assert upcoming == first.next_fire_at + 3 and upcoming < clock.ms  # due now: the next pass is at once
    await t.tick()
    assert await ticks(store) == [first.next_fire_at, first.next_fire_at + 3]


async def test_a_queued_schedule_held_for_its_running_job_is_not_reported_as_unfired(
    manager: JobManager, clock: FakeClock, store: JobStore
) -> None:
    """overlap queue holds a due tick while the previous job runs: the process with the tool leaves it due on
    purpose. A process without the tool took it for one nobody fires and made health degraded."""
    has, lacks = ticker_of(manager), Ticker(Schedules(manager, {}))
    await create(has, everySeconds=10, overlap="queue")
    for _ in range(8):  # its first job stays pending: every later tick is held
        clock.advance(10)
        await has.tick()
        await lacks.tick()
    assert len(await ticks(store)) == 1
    assert (await manager.statistics()).health.status == "healthy"


@pytest.mark.parametrize("overlap", ["skip", "queue"])
async def test_a_tick_whose_firing_process_died_before_moving_the_schedule_on_is_recorded_as_its_last(
    manager: JobManager, clock: FakeClock, store: JobStore, overlap: str
) -> None:
    """A process fired a tick (its job and the tick's key, one transaction), then died before moving the
    schedule on. The next pass finds the tick fired and records that job as the schedule's last: the overlap
    rule then sees it running. It moved the schedule on naming no job, so the next tick ran beside it."""
    t = ticker_of(manager)
    sch = await create(t, everySeconds=10, overlap=overlap)
    clock.advance(10)
    tick = sch.next_fire_at
    assert tick is not None
    job_id = await manager.fire_job("echo", {"text": "hi"}, None, sch.schedule_id, tick, version=sch.version)
    assert job_id is not None  # the dead process's firing
    await manager.start_job(job_id)  # its job runs (adopted, run again by a live process)
    await t.tick()  # the tick fired already: nothing fired, the schedule moved on
    moved = await t.schedules.get(sch.schedule_id)
    assert (moved.last_job_id, moved.last_tick) == (job_id, tick)
    clock.advance(10)
    await t.tick()  # the next tick while that job runs: skipped, or held for it
    assert await ticks(store) == [tick]
