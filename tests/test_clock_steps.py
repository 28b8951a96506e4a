"""Wall-clock steps: an NTP correction or a resumed VM moves `time.time()` back or forward by minutes or hours
while the server runs. The manager's clock is injected (`SteppedClock` steps both ways, as a wall clock does;
`Ticks` stands for the monotonic clock, which never steps), on every store where the rule is the store's."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.conftest import ManagerFactory
from tests.engine import test_scheduler
from tests.engine.test_scheduler import (
    Backend,
    Gates,
    decide_now,
    finished,
    gated_tool,
    limits,
    needs,
    on_stores,
    status,
    task,
)
from tests.engine.test_ticker import create as create_schedule
from tests.engine.test_ticker import ticker_of, ticks
from vibe_jobs.clocks import ClockSteps
from vibe_jobs.context import JobContext
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.engine.schedules import parse_spec
from vibe_jobs.errors import StoreError
from vibe_jobs.events import EventType
from vibe_jobs.jobtool import make_spec
from vibe_jobs.manager import JobManager
from vibe_jobs.models import Priority, TaskSpec
from vibe_jobs.polling import PollingPolicy, decide
from vibe_jobs.results import text_result
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.server.http.pages import duration
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

pytestmark = pytest.mark.every_store

HOUR = 3600.0
T0 = 1_700_000_000.0


class SteppedClock:
    """A wall clock in epoch seconds, moved by `advance` (time passing) and `step` (either way: a correction)."""

    def __init__(self, now: float = T0) -> None:
        self._us = round(now * 1_000_000)

    def __call__(self) -> float:
        return self._us / 1_000_000

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self._us += round(seconds * 1_000_000)

    def step(self, seconds: float) -> None:
        self._us += round(seconds * 1_000_000)

    def ms(self) -> int:
        return self._us // 1000


# -- polling: a schedule set before a step back ------------------------------------------------


def test_a_next_check_time_further_ahead_than_the_rule_sets_is_not_a_rate_limit() -> None:
    """Read at 10 s, the next check was set to 11 s; the clock then went back an hour. Limited by that time,
    every read for the next hour would be refused and told to wait an hour."""
    policy, set_at = PollingPolicy(), 10_000_000
    stepped_back = set_at - 3_600_000
    d = decide(policy, now=stepped_back, finished=False, reads=1, next_check_time=set_at + 1000)
    assert (d.rate_limited, d.counted, d.interval) == (False, True, 2000)
    # the rule's own schedule still limits: at most the longest interval ahead, or a runAt
    limited = decide(policy, now=set_at, finished=False, reads=6, next_check_time=set_at + 30_000)
    assert limited.rate_limited
    run_at = set_at + 3_600_000
    deferred = decide(policy, now=set_at, finished=False, reads=1, next_check_time=run_at, runnable_at=run_at)
    assert deferred.rate_limited


async def test_reads_after_the_clock_went_back_are_not_limited_for_the_step(make_manager: ManagerFactory) -> None:
    clock = SteppedClock()
    manager: JobManager = make_manager(clock=clock)
    async with manager:
        job_id = await manager.create_job("slow")
        first = await manager.poll(job_id)
        assert first.polling_recommendation is not None and not first.rate_limited
        clock.step(-HOUR)
        clock.advance(1.0)  # the agent reads again when told
        again = await manager.poll(job_id)
        assert not again.rate_limited, "told to wait an hour, each read refused meanwhile"
        reco = again.polling_recommendation
        assert reco is not None and reco.interval == 2000 and reco.next_check_time == manager.now() + 2000


# -- leases: a step forward on a store the processes of one machine share -----------------------


class Ticks:
    """The monotonic clock (`JobManager(ticks=...)`): seconds that only go on, never stepped."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _store(kind: str, tmp_path: Path, memory: MemoryStore) -> JobStore:
    return memory if kind == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_step_forward_does_not_take_a_live_processs_running_job(kind: str, tmp_path: Path) -> None:
    """Two servers on one job file (the default one is every program's of its user); the machine's clock steps
    an hour forward (a VM resumed, NTP). Every lease looks an hour expired: the first recovery pass after the step
    took the other server's running job for an orphan's and failed it as interrupted, while it ran."""
    clock, ticks, gate, started = SteppedClock(), Ticks(), anyio.Event(), anyio.Event()

    async def work(job: JobContext) -> str:
        started.set()
        await gate.wait()
        return "done"

    spec = make_spec(work, name="work")
    memory = MemoryStore()
    here = JobManager(_store(kind, tmp_path, memory), Settings(), clock=clock, ticks=ticks, owner="here")
    there = JobManager(_store(kind, tmp_path, memory), Settings(), clock=clock, ticks=ticks, owner="there")
    LocalSource(here, {"work": spec})
    recovering = LocalSource(there, {"work": spec})
    async with here, there:
        job_id = await here.create_job("work")
        with anyio.fail_after(5):
            await started.wait()
        clock.step(HOUR)
        assert await recovering.recover() == 0
        rec = await there.get_record(job_id)
        assert (rec.status, rec.owner) == (JobStatus.RUNNING, "here"), rec.result
        # the live process renews under the new time within a third of its lease: its job stays its own
        clock.advance(10)
        ticks.advance(10)
        await here.renew_lease()
        clock.advance(25)
        ticks.advance(25)
        await recovering.recover()
        assert (await there.get_record(job_id)).owner == "here"
        # one that renews no more is recovered, a lease after the step was seen: not kept for ever
        clock.advance(30)
        ticks.advance(30)
        await recovering.recover()
        rec = await there.get_record(job_id)
        assert (rec.owner, rec.status) == ("there", JobStatus.FAILED)
        gate.set()


# -- durations: a job that ends after the clock went back ----------------------------------------


async def test_a_job_finished_after_a_step_back_has_no_negative_duration(make_manager: ManagerFactory) -> None:
    """Started, then the clock went back an hour, then finished: its finish was stamped before its start, and its
    duration (metrics, statistics, the /metrics histogram, the learned run time polling uses) was minus an hour."""
    clock = SteppedClock()
    manager: JobManager = make_manager(clock=clock)
    async with manager:
        for _ in range(3):  # three runs teach a tool's duration
            job_id = await manager.create_job("stepped", task=TaskSpec(estimated_duration=1000))
            await manager.start_job(job_id)
            clock.advance(2.0)
            clock.step(-HOUR)
            rec = await manager.set_job_result(job_id, text_result("done"))
            assert rec.finished_at is not None and rec.started_at is not None
            assert rec.finished_at >= rec.started_at
            metrics = await manager.get_metrics(job_id)
            assert metrics.duration is not None and metrics.duration >= 0 and metrics.performance_score >= 0
        stats = await manager.statistics()
        group = stats.by_tool["stepped"]
        assert group.p50_duration_ms is not None and group.p50_duration_ms >= 0
        assert stats.learned_durations["stepped"]["typicalMs"] >= 0
        learned = manager.durations.estimate("stepped")
        assert learned is not None and learned >= 0
        assert manager.stats.counters.duration["stepped"].total >= 0


def test_the_dashboard_shows_no_negative_duration() -> None:
    assert duration(-3_600_000) == "0 ms"


# -- deadlines: absolute times, kept by timers on the loop's clock ------------------------------


async def test_deadlines_follow_the_clock_through_a_step_back(make_manager: ManagerFactory) -> None:
    """A deadline is an epoch time; its timers run on the loop's clock for the time left when armed. After the
    clock went back an hour, they failed a pending job as "deadline passed" and cancelled a running one an hour
    before the deadline by the clock. The timers are fired here as the loop's clock would fire them (as of a time
    ahead), not waited for."""
    clock, gate = SteppedClock(), anyio.Event()

    async def work(job: JobContext) -> str:
        await gate.wait()
        return "done"

    manager: JobManager = make_manager(clock=clock)
    sched = LocalSource(manager, {"work": make_spec(work, name="work")})
    timers = sched.executor.timers
    async with manager:
        deadline = clock.ms() + 10_000
        running = await manager.create_job("work", task=TaskSpec(deadline=deadline))
        waiting = await manager.create_job("work", task=TaskSpec(dependencies=[running], deadline=deadline))
        with anyio.fail_after(5):
            while running not in sched.executor.running:
                await manager.wait(running, 5, stop=lambda r: r.status is JobStatus.RUNNING)
        clock.step(-HOUR)
        timers._fire_due(anyio.current_time() + 11)  # the loop's clock reaches the deadlines
        assert len(sched.executor.runs) == 1, "an expiry was started an hour early"  # the running job's run only
        assert sched.executor.running[running].ctx.cancel_reason is None
        assert (await manager.get_record(waiting)).status is JobStatus.PENDING
        # the clock reaches the deadline (stepped forward past it): both end within a minute of the loop's clock
        clock.step(HOUR + 11)
        timers._fire_due(anyio.current_time() + 11 + 61)
        ended = await manager.wait(waiting, 5)
        assert ended.status is JobStatus.FAILED and "deadline passed" in (ended.progress_message or "")
        ended = await manager.wait(running, 5)
        assert ended.status is JobStatus.CANCELLED, ended.progress_message


# -- retries: a backoff is a delay, not a time of day -----------------------------------------


async def test_a_retry_after_a_step_back_waits_its_backoff_not_the_step(make_manager: ManagerFactory) -> None:
    """A retry is written as due at now + its backoff (0.2 s here). The clock then went back an hour: the job
    waited pending for the hour ("retry 1/1 in 0.2 s"). A user's runAt is a time of day and follows the clock;
    a backoff is a delay and is kept by the monotonic clock (`ticks`)."""
    clock, ticks, attempts = SteppedClock(), Ticks(), []

    async def flaky(job: JobContext) -> str:
        attempts.append(job.attempt)
        if len(attempts) == 1:
            raise RuntimeError("flaky")
        return "done"

    backoff = RetryPolicy(max_retries=1, initial_delay_ms=200, jitter=0)
    manager: JobManager = make_manager(clock=clock, ticks=ticks)
    sched = LocalSource(manager, {"flaky": make_spec(flaky, name="flaky", retry_safe=True, retry=backoff)})
    async with manager:
        job_id = await manager.create_job("flaky")
        with manager.subscribe(job_id) as events, anyio.fail_after(5):
            async for event in events:
                if event.type is EventType.RETRIED:
                    break
        clock.step(-HOUR)
        ticks.advance(0.1)
        sched.pump()
        assert (await manager.get_record(job_id)).status is JobStatus.PENDING, "retried before its backoff"
        ticks.advance(0.1)
        clock.advance(0.2)
        sched.pump()  # the backoff has passed, by the monotonic clock: due now
        ended = await manager.wait(job_id, 5)
        assert ended.status is JobStatus.COMPLETED, ended.progress_message
        assert attempts == [1, 2]


# -- retention: finished jobs are kept `max_retention_ms` of time that passed ---------------------


async def test_a_step_forward_does_not_delete_a_job_that_just_finished(make_manager: ManagerFactory) -> None:
    """A job finished a second ago; the clock then stepped a day forward (a machine with no real-time clock
    booted with a stale time, then NTP): the next clean-up deleted it, and the agent about to read its result
    was told no such job exists. It is kept for the retention, as time passes, then deleted."""
    clock, ticks = SteppedClock(), Ticks()
    manager: JobManager = make_manager(clock=clock, ticks=ticks)
    retention = manager.settings.max_retention_ms / 1000
    async with manager:
        job_id = await manager.create_job("done")
        await manager.start_job(job_id)
        await manager.set_job_result(job_id, text_result("done"))
        clock.advance(1)
        ticks.advance(1)
        clock.step(24 * HOUR)
        assert await manager.cleanup() == 0
        assert (await manager.poll(job_id)).result is not None
        clock.advance(retention)
        ticks.advance(retention)
        assert await manager.cleanup() == 1


async def test_clean_up_comes_every_interval_of_time_passed_after_a_step_back(make_manager: ManagerFactory) -> None:
    """The next clean-up was due at a time by the clock: an hour's step back put it off for the hour (finished
    jobs past their retention were kept that long). It is due after the interval of time passed."""
    clock, ticks = SteppedClock(), Ticks()
    settings = Settings(lease_ms=150, cleanup_interval_ms=1000, max_retention_ms=1000)  # a beat every 50 ms
    manager: JobManager = make_manager(clock=clock, ticks=ticks, settings=settings)
    async with manager:
        await anyio.wait_all_tasks_blocked()  # the maintenance loop waits for its first beat
        clock.step(-HOUR)
        job_id = await manager.create_job("done")
        await manager.start_job(job_id)
        await manager.set_job_result(job_id, text_result("done"))
        with manager.subscribe(job_id) as events:
            clock.advance(2)
            ticks.advance(2)
            with anyio.fail_after(5):
                async for event in events:
                    if event.type is EventType.EXPIRED:
                        break


async def test_the_oldest_pending_age_is_not_negative_after_a_step_back(make_manager: ManagerFactory) -> None:
    """A job waiting since before an hour's step back was shown as waiting minus an hour (statistics, the
    dashboard, /metrics)."""
    clock, gate = SteppedClock(), anyio.Event()

    async def work(job: JobContext) -> str:
        await gate.wait()
        return "done"

    manager: JobManager = make_manager(clock=clock)
    LocalSource(manager, {"work": make_spec(work, name="work")})
    async with manager:
        first = await manager.create_job("work")
        await manager.create_job("work", task=TaskSpec(dependencies=[first]))
        clock.step(-HOUR)
        stats = await manager.statistics()
        assert stats.oldest_pending_age_ms is not None and stats.oldest_pending_age_ms >= 0
        gate.set()


# -- the reservation window: how long small jobs may pass a large one waiting at the head ------------

backend = test_scheduler.backend  # every store, with the scheduler a deployment on it uses


@on_stores()
async def test_a_step_back_does_not_stretch_the_reservation_window(backend: Backend) -> None:
    """The head of the queue (900 of 1000 MB) has waited since a time by the clock; small jobs backfill past it
    for 5 s. After an hour's step back the window lasted the hour too, and small jobs kept the large one waiting."""
    gates, clock, ticks = Gates(), SteppedClock(), Ticks()
    settings = Settings(max_concurrent=10, queue=limits(memory=1000))
    small, large = task(Priority.LOW, needs=needs(memory=300)), task(Priority.HIGH, needs=needs(memory=900))
    async with backend.running([gated_tool(gates)], settings, clock, ticks, reservation_ms=5000) as (m, s):
        ids = {k: await m.create_job("gated", {"key": k}, task=small) for k in ("s1", "s2", "s3")}
        await gates.wait_count(3)
        ids["L"] = await m.create_job("gated", {"key": "L"}, task=large)
        for k in ("s4", "s5"):
            ids[k] = await m.create_job("gated", {"key": k}, task=small)
        gates.open("s1")  # the head does not fit; s4 backfills inside the window
        await gates.wait_started("s4")
        clock.step(-HOUR)
        clock.advance(6)
        ticks.advance(6)  # past the window, as time passes
        await decide_now(s)
        for k in ("s2", "s3", "s4"):
            gates.open(k)
            await finished(m, ids[k])
            await decide_now(s)
            assert await status(m, ids["s5"]) is JobStatus.PENDING, "a small job passed the head past its window"
        await gates.wait_count(5)
        assert gates.order == ["s1", "s2", "s3", "s4", "L"]
        gates.open("L", "s5")
        for job_id in ids.values():
            assert (await finished(m, job_id)).status is JobStatus.COMPLETED


# -- schedules: no tick fires twice --------------------------------------------------------------


async def test_a_schedule_resumed_after_a_step_back_fires_no_tick_again(make_manager: ManagerFactory) -> None:
    """Every 10 minutes for three hours; the clock then went back two hours, and the schedule was paused and
    resumed: it resumed from the clock, at ticks it had fired two hours before, whose keys (kept an hour) were
    gone, and fired each of them again. It resumes after its last tick (and fires nothing until the clock is back
    there: the limit of a step back)."""
    clock = SteppedClock()
    manager: JobManager = make_manager(clock=clock)
    t = ticker_of(manager)
    sch = await create_schedule(t, everySeconds=600)
    for _ in range(18):
        clock.advance(600)
        await t.tick()
        await t.prune()
    clock.step(-2 * HOUR)
    await t.schedules.pause(sch.schedule_id)
    resumed = await t.schedules.resume(sch.schedule_id)
    for _ in range(15):
        clock.advance(600)
        await t.tick()
        await t.prune()
    fired = await ticks(manager.store)
    assert len(fired) == len(set(fired)) == 21, fired  # 18, then 3 once the clock is past the last again
    assert resumed.next_fire_at == fired[17] + 600_000


async def test_a_code_schedule_changed_after_a_step_back_fires_no_tick_again(make_manager: ManagerFactory) -> None:
    """A schedule declared in code (`@job_tool(schedule=...)`) fired every 10 minutes for three hours; the server
    then started again with its clock two hours behind (a board that booted with a stale clock) and a changed
    definition (every 5 minutes): the change restarted it from the clock, at ticks it had fired two hours before,
    whose keys (kept an hour) were gone, and fired each of them again. As a resumed one, it goes on after its
    last tick."""
    clock = SteppedClock()
    manager: JobManager = make_manager(clock=clock)
    t = ticker_of(manager)
    code = {"tool": "echo", "arguments": {"text": "hi"}, "scheduleId": "code:echo"}
    await t.schedules.declare(parse_spec({**code, "cron": "*/10 * * * *"}))
    for _ in range(18):
        clock.advance(600)
        await t.tick()
        await t.prune()
    before = await ticks(manager.store)
    clock.step(-2 * HOUR)
    changed = await t.schedules.declare(parse_spec({**code, "cron": "*/5 * * * *"}))
    assert changed.cron == "*/5 * * * *"
    for _ in range(30):
        clock.advance(300)
        await t.tick()
        await t.prune()
    fired = await ticks(manager.store)
    assert len(fired) == len(set(fired)), sorted(x for x in fired if fired.count(x) > 1)
    assert changed.next_fire_at == before[-1] + 300_000


async def test_tick_keys_are_pruned_every_interval_of_time_passed_after_a_step_back(
    make_manager: ManagerFactory,
) -> None:
    """The ticker's next pruning of (schedule, tick) keys was due at a time by the clock: a day's step back put it
    off for the day, and the keys of every firing meanwhile (a minutely schedule: 1,440) were kept. It is due
    after the interval of time passed, as the manager's clean-up is."""
    clock, ticks_ = SteppedClock(), Ticks()
    manager: JobManager = make_manager(clock=clock, ticks=ticks_)
    t = ticker_of(manager)
    assert await t.prune() == 0  # the first pruning: the next is due in PRUNE_EVERY_MS
    clock.step(-24 * HOUR)
    await create_schedule(t, everySeconds=60)
    pruned = 0
    for _ in range(120):  # two hours: the keys of the first hour's firings are past KEEP_TICKS_MS
        clock.advance(60)
        ticks_.advance(60)
        await t.tick()
        pruned += await t.prune()
    assert pruned > 0


async def test_a_retry_s_reader_is_not_told_to_wait_for_the_step(make_manager: ManagerFactory) -> None:
    """A pending retry is next read when its backoff ends (it cannot finish before). Read again after an hour's
    step back, that time was an hour ahead: the read was refused and told to wait the hour, while the retry ran
    after its backoff (kept by the monotonic clock)."""
    clock = SteppedClock()
    manager: JobManager = make_manager(clock=clock)
    async with manager:
        job_id = await manager.create_job("flaky")
        await manager.start_job(job_id)
        await manager.requeue(
            job_id, lambda r: {"status": JobStatus.PENDING, "retry_count": 1, "run_after": manager.now() + 2000}
        )
        first = await manager.poll(job_id)
        assert first.polling_recommendation is not None and first.polling_recommendation.interval == 2000
        clock.step(-HOUR)
        clock.advance(2)
        again = await manager.poll(job_id)
        assert not again.rate_limited
        assert again.polling_recommendation is not None and again.polling_recommendation.interval <= 2000


def test_clock_steps_forgive_a_forward_step_for_the_window_and_a_correction_cancels_it() -> None:
    steps, now, ticks = ClockSteps(1_000_000, 100.0), 1_000_000, 100.0
    now, ticks = now + 3_600_000 + 1000, ticks + 1  # an hour forward, and a second passing
    assert steps.judged(now, ticks, 30_000) == now - 3_600_000
    now, ticks = now + 29_000, ticks + 29  # within the window: still forgiven
    assert steps.judged(now, ticks, 30_000) == now - 3_600_000
    assert steps.judged(now, ticks, 1000) == now  # a shorter window has passed
    now, ticks = now + 1000, ticks + 1
    assert steps.judged(now, ticks, 30_000) == now  # the window has passed
    now, ticks = now + 3_600_000, ticks  # forward again, then back (the correction's correction)
    assert steps.judged(now, ticks, 30_000) == now - 3_600_000
    now = now - 3_600_000
    assert steps.judged(now, ticks, 30_000) == now
    now = now - 3_600_000  # back alone: nothing to forgive
    assert steps.judged(now, ticks, 30_000) == now


# -- health: the last five minutes ------------------------------------------------------------------


@on_stores()
async def test_failures_before_a_step_back_do_not_count_as_recent_for_the_step(backend: Backend) -> None:
    """Two jobs failed; the clock then went back an hour. Their finishes lay ahead of the clock, so for the whole
    hour they counted as "the last 5 minutes": error rate 100%, health degraded, long after the failures."""

    async def boom() -> str:
        raise RuntimeError("boom")

    clock = SteppedClock()
    async with backend.running([make_spec(boom, name="boom")], Settings(), clock) as (m, _):
        for _ in range(2):
            assert (await finished(m, await m.create_job("boom"))).status is JobStatus.FAILED
        assert (await m.statistics()).error_rate_5m == 1.0
        clock.step(-HOUR)
        clock.advance(6 * 60)
        stats = await m.statistics()
        assert stats.error_rate_5m is None, stats.health
        assert not any("error rate" in reason for reason in stats.health.reasons)


# -- health and the dashboard: how long ago, by time passed ------------------------------------------------


async def test_a_store_failure_is_reported_for_its_time_whatever_the_clock_steps(make_manager: ManagerFactory) -> None:
    """Health names a store failure (damage: no write clears it) for 5 minutes. Its age was read by the clock: a
    step back of an hour named it for an hour and 5 minutes ('failed 0 s ago' all along), and a step forward
    dropped it at once, the store damaged still."""
    clock, ticks = SteppedClock(), Ticks()
    manager: JobManager = make_manager(clock=clock, ticks=ticks)

    async def reasons() -> list[str]:
        return [r for r in (await manager.statistics()).health.reasons if "the job store failed" in r]

    async with manager:
        manager.store_failed(StoreError("disk I/O error"))
        clock.step(HOUR)
        assert await reasons(), "a step forward is no time passed: the failure is still recent"
        clock.step(-2 * HOUR)
        clock.advance(60)
        ticks.advance(60)
        assert await reasons() == ["the job store failed 60 s ago: StoreError: disk I/O error"]
        clock.advance(5 * 60)
        ticks.advance(5 * 60)
        assert await reasons() == [], "reported past its 5 minutes, an hour behind the clock"


async def test_the_dashboard_s_figures_are_fresh_after_a_step_back(make_manager: ManagerFactory) -> None:
    """The pages share one statistics snapshot a second: its age was read by the clock, so after an hour's step back
    the page header showed the figures from before the step for the whole hour."""
    import httpx2 as httpx
    from starlette.applications import Starlette

    from vibe_jobs.server.http.dashboard import Dashboard

    clock, ticks = SteppedClock(), Ticks()
    manager: JobManager = make_manager(clock=clock, ticks=ticks)
    app = Starlette(routes=Dashboard(manager).routes())
    async with manager, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:

        async def queue_depth() -> str:
            page = (await http.get("/")).text
            return page.split('id="fig-queue">', 1)[1].split("<", 1)[0]

        await manager.create_job("t", {})
        assert await queue_depth() == "1"
        clock.step(-HOUR)
        await manager.create_job("t", {})
        clock.advance(2)
        ticks.advance(2)
        assert await queue_depth() == "2", "the snapshot from before the step, an hour 'young'"


async def test_failures_just_before_a_step_forward_still_count_as_the_last_5_minutes(
    make_manager: ManagerFactory,
) -> None:
    """The error rate and throughput are of the finishes of the last 5 minutes: kept by the second of the clock they
    were stamped at, an hour's step forward made every one of them an hour old at once (error rate 100% -> none,
    health healthy again, throughput 0) seconds after the failures."""

    async def boom() -> str:
        raise RuntimeError("boom")

    clock, ticks = SteppedClock(), Ticks()
    manager: JobManager = make_manager(clock=clock, ticks=ticks)
    LocalSource(manager, {"boom": make_spec(boom, name="boom")})
    async with manager:
        for _ in range(2):
            assert (await finished(manager, await manager.create_job("boom"))).status is JobStatus.FAILED
        clock.step(HOUR)
        clock.advance(1)
        ticks.advance(1)
        stats = await manager.statistics()
        assert (stats.error_rate_5m, stats.throughput_per_minute) == (1.0, 2), stats.health
        clock.advance(5 * 60)
        ticks.advance(5 * 60)
        assert (await manager.statistics()).error_rate_5m is None


async def test_a_step_forward_does_not_age_the_pending_jobs_by_the_step(make_manager: ManagerFactory) -> None:
    """A job waiting a second when the clock stepped an hour forward was shown as waiting an hour (statistics,
    /metrics, the dashboard) and health said degraded ('oldest pending job waited 3601000 ms, over 300000 ms')
    for as long as it waited. The age is judged at the time less a step seen within health's threshold."""
    clock, ticks, gate = SteppedClock(), Ticks(), anyio.Event()

    async def work(job: JobContext) -> str:
        await gate.wait()
        return "done"

    manager: JobManager = make_manager(clock=clock, ticks=ticks)
    LocalSource(manager, {"work": make_spec(work, name="work")})
    async with manager:
        first = await manager.create_job("work")
        await manager.create_job("work", task=TaskSpec(dependencies=[first]))
        await manager.statistics()  # a reading of the clock before the step
        clock.advance(1)
        ticks.advance(1)
        clock.step(HOUR)
        stats = await manager.statistics()
        assert stats.oldest_pending_age_ms == 1000, stats.health
        assert stats.health.status == "healthy", stats.health
        gate.set()
