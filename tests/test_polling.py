"""The polling rule (docs/architecture.md, "Polling"), as pure tables and through the manager."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.manager import JobManager
from vibe_jobs.models import TaskSpec
from vibe_jobs.polling import PollDecision, PollingPolicy, decide, estimate_remaining
from vibe_jobs.results import text_result
from vibe_jobs.settings import Settings

pytestmark = pytest.mark.every_store  # the tests through the manager run on every store

POLICY = PollingPolicy()  # base 1000 ms, factor 2, max 30000 ms, tolerance 100 ms
NOW = 1_000_000


def test_default_policy_matches_the_design() -> None:
    assert (POLICY.base_ms, POLICY.factor, POLICY.max_ms, POLICY.tolerance_ms) == (1000, 2.0, 30_000, 100)
    assert Settings().polling == PollingPolicy(1000, 2.0, 30_000)


# -- PollingPolicy.backoff / interval -------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "reads", "expected"),
    [
        (POLICY, 0, 1000),
        (POLICY, 1, 1000),
        (POLICY, 2, 2000),
        (POLICY, 3, 4000),
        (POLICY, 4, 8000),
        (POLICY, 5, 16_000),
        (POLICY, 6, 30_000),  # 32 s capped at the max
        (POLICY, 7, 30_000),
        (POLICY, 10_000, 30_000),  # huge read counts neither overflow nor exceed the max
        (PollingPolicy(base_ms=500, factor=3, max_ms=10_000), 3, 4500),
        (PollingPolicy(base_ms=500, factor=3, max_ms=10_000), 4, 10_000),
        (PollingPolicy(base_ms=5000, max_ms=2000), 1, 2000),  # a base above the max is capped too
        (PollingPolicy(factor=1), 9, 1000),  # factor 1: a fixed interval
    ],
)
def test_backoff(policy: PollingPolicy, reads: int, expected: int) -> None:
    assert policy.backoff(reads) == expected


@pytest.mark.parametrize(
    ("reads", "remaining", "expected"),
    [
        (3, None, 4000),  # no estimate: the backoff
        (3, 2500.0, 2500),  # the estimate is sooner: follow it
        (3, 4000.0, 4000),
        (3, 90_000.0, 4000),  # never above the backoff
        (3, 200.0, 1000),  # never below the base
        (3, 0.0, 1000),
        (7, 12_345.6, 12_345),
        (1, 50.0, 1000),
    ],
)
def test_interval_clamps_to_the_remaining_estimate(reads: int, remaining: float | None, expected: int) -> None:
    interval = POLICY.interval(reads, remaining)
    assert interval == expected
    assert POLICY.base_ms <= interval <= POLICY.backoff(reads)


# -- decide ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    finished: bool = False
    reads: int = 0
    next_check_time: int | None = None
    remaining_ms: float | None = None
    long_poll: bool = False


def counted(interval: int) -> PollDecision:
    return PollDecision(rate_limited=False, counted=True, interval=interval, next_check_time=NOW + interval)


def limited(next_check_time: int) -> PollDecision:
    return PollDecision(True, False, next_check_time - NOW, next_check_time)


FINISHED = PollDecision(rate_limited=False, counted=True, interval=None, next_check_time=None)

DECIDE_TABLE = {
    "first read": (Read(), counted(1000)),
    "first read is free even with a schedule in the future": (
        Read(reads=0, next_check_time=NOW + 5000),
        counted(1000),
    ),
    "second read on time": (Read(reads=1, next_check_time=NOW), counted(2000)),
    "third read late": (Read(reads=2, next_check_time=NOW - 60_000), counted(4000)),
    "4th": (Read(reads=3, next_check_time=NOW), counted(8000)),
    "5th": (Read(reads=4, next_check_time=NOW), counted(16_000)),
    "6th capped": (Read(reads=5, next_check_time=NOW), counted(30_000)),
    "7th capped": (Read(reads=6, next_check_time=NOW), counted(30_000)),
    "counted read with no schedule": (Read(reads=4, next_check_time=None), counted(16_000)),
    "too early: limited, same nextCheckTime": (Read(reads=1, next_check_time=NOW + 1000), limited(NOW + 1000)),
    "too early by one ms past the tolerance": (Read(reads=3, next_check_time=NOW + 101), limited(NOW + 101)),
    "early within the tolerance is counted": (Read(reads=3, next_check_time=NOW + 100), counted(8000)),
    "early within the tolerance (50 ms)": (Read(reads=1, next_check_time=NOW + 50), counted(2000)),
    "estimate sooner than backoff": (
        Read(reads=3, next_check_time=NOW, remaining_ms=2500.0),
        counted(2500),
    ),
    "estimate later than backoff": (Read(reads=3, next_check_time=NOW, remaining_ms=1e9), counted(8000)),
    "estimate below base": (Read(reads=3, next_check_time=NOW, remaining_ms=10.0), counted(1000)),
    "first read with an estimate": (Read(remaining_ms=300.0), counted(1000)),
    "estimate does not lift a too-early read": (
        Read(reads=2, next_check_time=NOW + 3000, remaining_ms=10.0),
        limited(NOW + 3000),
    ),
    "long poll is never limited": (
        Read(reads=5, next_check_time=NOW + 20_000, long_poll=True),
        counted(30_000),
    ),
    "long poll first read": (Read(long_poll=True), counted(1000)),
    "finished: no recommendation": (Read(finished=True, reads=0), FINISHED),
    "finished is never limited": (Read(finished=True, reads=9, next_check_time=NOW + 30_000), FINISHED),
    "finished with an estimate": (Read(finished=True, reads=1, remaining_ms=5.0), FINISHED),
}


@pytest.mark.parametrize(("read", "expected"), list(DECIDE_TABLE.values()), ids=list(DECIDE_TABLE))
def test_decide(read: Read, expected: PollDecision) -> None:
    got = decide(
        POLICY,
        now=NOW,
        finished=read.finished,
        reads=read.reads,
        next_check_time=read.next_check_time,
        remaining_ms=read.remaining_ms,
        long_poll=read.long_poll,
    )
    assert got == expected


def test_following_the_recommendation_is_never_limited() -> None:
    now, reads, nct = NOW, 0, None
    intervals = []
    for _ in range(9):
        d = decide(POLICY, now=now, finished=False, reads=reads, next_check_time=nct)
        assert not d.rate_limited and d.counted
        assert d.interval is not None and d.next_check_time == now + d.interval
        intervals.append(d.interval)
        reads, nct, now = reads + 1, d.next_check_time, d.next_check_time
    assert intervals == [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]


# -- estimate_remaining ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started_at", "progress", "estimated", "expected"),
    [
        (None, 50.0, 10_000, None),  # not started: no estimate
        (NOW - 10_000, 50.0, None, 10_000.0),  # by progress rate: half done in 10 s
        (NOW - 10_000, 25.0, 999_999, 30_000.0),  # the progress rate wins over the estimate
        (NOW - 10_000, 0.0, 15_000, 5000.0),  # no progress yet: by the estimated duration
        (NOW - 10_000, 100.0, 15_000, 5000.0),  # 100 %: by the estimated duration
        (NOW - 10_000, None, 15_000, 5000.0),
        (NOW, 50.0, 15_000, 15_000.0),  # no time elapsed: no rate yet
        (NOW - 20_000, None, 15_000, 5000.0),  # 5 s past its estimate: about as long again, not 0 (base reads)
        (NOW - 15_000, None, 15_000, 0.0),  # due now
        (NOW + 5000, 50.0, 15_000, 15_000.0),  # a start in the future counts as just started
        (NOW - 10_000, None, None, None),  # nothing to go by
        (NOW - 10_000, 0.0, None, None),
    ],
)
def test_estimate_remaining(
    started_at: int | None, progress: float | None, estimated: int | None, expected: float | None
) -> None:
    got = estimate_remaining(now=NOW, started_at=started_at, progress=progress, estimated_duration=estimated)
    assert got == expected


# -- through the manager --------------------------------------------------------------------


async def test_poll_follows_the_rule(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo", {"x": 1})

    first = await manager.poll(job_id)
    assert not first.rate_limited
    assert first.access_count == 1
    assert first.polling_recommendation is not None
    nct = first.polling_recommendation.next_check_time
    assert first.polling_recommendation.interval == 1000
    assert nct == clock.ms + 1000
    assert first.result is None

    again = await manager.poll(job_id)  # at once: too early
    assert again.rate_limited
    assert again.status == "pending"
    assert again.polling_recommendation is not None
    assert again.polling_recommendation.next_check_time == nct
    assert again.access_count == 1
    rec = await manager.get_record(job_id)
    assert (rec.access_count, rec.last_access_time, rec.next_check_time) == (1, nct - 1000, nct)  # no trace

    clock.advance(0.5)  # still too early; the schedule does not move
    assert (await manager.poll(job_id)).rate_limited
    assert (await manager.get_record(job_id)).next_check_time == nct

    clock.advance(0.5)  # now at nextCheckTime
    assert clock.ms == nct
    second = await manager.poll(job_id)
    assert not second.rate_limited
    assert second.access_count == 2
    assert second.polling_recommendation is not None
    assert second.polling_recommendation.interval == 2000
    assert second.polling_recommendation.next_check_time == nct + 2000
    rec = await manager.get_record(job_id)
    assert (rec.access_count, rec.last_access_time, rec.next_check_time) == (2, nct, nct + 2000)


async def test_poll_tolerates_a_slightly_early_read(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo")
    await manager.poll(job_id)
    clock.advance(0.95)  # 50 ms early: within the tolerance
    msg = await manager.poll(job_id)
    assert not msg.rate_limited
    assert msg.access_count == 2


async def test_following_recommendations_through_the_manager(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo")
    intervals = []
    for n in range(1, 8):
        msg = await manager.poll(job_id)
        assert not msg.rate_limited
        assert msg.access_count == n
        assert msg.polling_recommendation is not None
        intervals.append(msg.polling_recommendation.interval)
        clock.advance(msg.polling_recommendation.next_check_time / 1000 - clock())
    assert intervals == [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]


async def test_long_poll_is_never_limited(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.poll(job_id)
    msg = await manager.poll(job_id, long_poll=True)
    assert not msg.rate_limited
    assert msg.access_count == 2
    assert (await manager.get_record(job_id)).access_count == 2


async def test_finished_job_is_never_limited_and_has_its_result(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.poll(job_id)
    await manager.start_job(job_id)
    await manager.set_job_result(job_id, text_result("hello", structured={"n": 1}))
    for n in (2, 3):  # immediately after a counted read, twice
        msg = await manager.poll(job_id)
        assert not msg.rate_limited
        assert msg.status == "completed"
        assert msg.polling_recommendation is None
        assert msg.access_count == n
        assert msg.result == text_result("hello", structured={"n": 1})
        wire = msg.wire()
        assert "pollingRecommendation" not in wire
        assert wire["result"]["structuredContent"] == {"n": 1}
        assert wire["progress"] == 100


async def test_poll_interval_follows_the_estimated_duration(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("slow", task=TaskSpec(estimated_duration=2500))
    await manager.start_job(job_id)
    intervals = []
    for _ in range(4):
        msg = await manager.poll(job_id)
        assert not msg.rate_limited
        assert msg.polling_recommendation is not None
        intervals.append(msg.polling_recommendation.interval)
        clock.advance(msg.polling_recommendation.interval / 1000)
    # read 1: backoff 1 s; read 2: 1.5 s left < 2 s backoff; then overdue: the base, not 4 or 8 s
    assert intervals == [1000, 1500, 1000, 1000]


async def test_poll_interval_follows_the_progress_rate(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("slow")
    await manager.start_job(job_id)
    for _ in range(4):  # 1 + 2 + 4 + 8 s, no estimate yet
        msg = await manager.poll(job_id)
        assert msg.polling_recommendation is not None
        clock.advance(msg.polling_recommendation.interval / 1000)
    await manager.update_progress(job_id, 90, "nearly there")
    msg = await manager.poll(job_id)
    # 90 % in 15 s: about 1.67 s left, sooner than the 16 s backoff
    assert msg.polling_recommendation is not None
    assert msg.polling_recommendation.interval == 1666
    assert msg.progress == 90
    assert msg.message == "nearly there"


async def test_wire_uses_camel_case(manager: JobManager) -> None:
    job_id = await manager.create_job("echo", {"someParam": 1})
    wire = (await manager.poll(job_id)).wire()
    assert wire["jobId"] == job_id
    assert wire["toolName"] == "echo"
    assert wire["status"] == "pending"
    assert wire["rateLimited"] is False
    assert wire["accessCount"] == 1
    assert set(wire["pollingRecommendation"]) == {"interval", "nextCheckTime"}
    assert isinstance(wire["timestamp"], int)
    assert "createdAt" in wire and "updatedAt" in wire
    assert set(wire["details"]) == {"diagnostics", "metadata"}
    assert not any("_" in key for key in wire)
    limited_wire = (await manager.poll(job_id)).wire()
    assert limited_wire["rateLimited"] is True
    assert limited_wire["pollingRecommendation"]["nextCheckTime"] == wire["pollingRecommendation"]["nextCheckTime"]


async def test_poll_without_details(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    assert "details" not in (await manager.poll(job_id, include_details=False)).wire()


async def test_custom_policy_from_settings(make_manager: ManagerFactory) -> None:
    manager = make_manager(settings=Settings(poll_base_ms=250, poll_factor=3, poll_max_ms=5000))
    job_id = await manager.create_job("echo")
    msg = await manager.poll(job_id)
    assert msg.polling_recommendation is not None
    assert msg.polling_recommendation.interval == 250


@pytest.mark.parametrize(
    ("runnable_at", "expected_next"),
    [
        (1_000 + 3_600_000, 1_000 + 3_600_000),  # deferred an hour: nothing to read before it runs
        (1_500, 2_000),  # runs before the backoff's next read anyway: the backoff stands
        (500, 2_000),  # its runAt passed: an ordinary pending job
        (None, 2_000),
    ],
)
def test_a_deferred_job_is_not_read_before_it_may_run(runnable_at: int | None, expected_next: int) -> None:
    """A job with runAt an hour ahead was read every 1, 2, 4 ... 30 s for an hour, each read saying "queued"."""
    d = decide(PollingPolicy(), now=1_000, finished=False, reads=0, next_check_time=None, runnable_at=runnable_at)
    assert d.next_check_time == expected_next and d.interval == expected_next - 1_000 and not d.rate_limited
