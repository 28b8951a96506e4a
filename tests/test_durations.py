"""Learned durations: the estimate per tool, its use by polling, its persistence and its report (fake clock)."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.durations import MIN_RUNS, Durations, Learned
from vibe_jobs.models import TaskSpec
from vibe_jobs.results import text_result


def test_a_tool_teaches_nothing_before_a_few_runs_then_its_high_quantile() -> None:
    d = Durations()
    for ms in (100, 200)[: MIN_RUNS - 1]:
        d.add("t", None, ms)
    assert d.estimate("t") is None
    for ms in [300, 400, 500, 600, 700, 800, 900, 1000]:
        d.add("t", None, ms)
    assert d.estimate("t") == 900  # nearest-rank p90 of 100..1000
    assert d.summary()["t"]["runs"] == 10


def test_the_operation_type_is_preferred_when_it_has_history() -> None:
    d = Durations()
    for _ in range(MIN_RUNS):
        d.add("t", "analysis", 5_000)
    for _ in range(30):
        d.add("t", None, 100)
    assert d.estimate("t", "analysis") == 5_000
    assert d.estimate("t", "validation") == 100  # no history of that type: the tool's (its p90 of 33 runs)
    assert d.estimate("t") == 100


def test_the_mean_weights_recent_runs_and_rows_round_trip() -> None:
    learned = Learned()
    for ms in (1000, 1000, 2000):
        learned.add(ms)
    assert learned.fold().ewma_ms == pytest.approx(1200.0)
    assert Learned.from_row(*learned.row()) == learned


async def run_once(manager_: object, clock: FakeClock, tool: str, seconds: float) -> str:
    from vibe_jobs.manager import JobManager

    assert isinstance(manager_, JobManager)
    job_id = await manager_.create_job(tool, {})
    await manager_.start_job(job_id)
    clock.advance(seconds)
    await manager_.set_job_result(job_id, text_result("done"))
    return job_id


@pytest.mark.every_store
async def test_polling_clamps_to_the_learned_finish_and_the_learning_survives_a_restart(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    async with make_manager() as m:
        for _ in range(MIN_RUNS):
            await run_once(m, clock, "slow-tool", 20)
        stats = await m.statistics()
        assert stats.wire()["learnedDurations"]["slow-tool"] == {"runs": 3, "typicalMs": 20_000, "highMs": 20_000}
    async with make_manager() as again:  # a new process on the same store
        job_id = await again.create_job("slow-tool", {})
        other = await again.create_job("new-tool", {})
        await again.start_job(job_id)
        await again.start_job(other)
        clock.advance(15)
        await again.poll(job_id)  # first reads: base interval
        await again.poll(other)
        clock.advance(1)
        for _ in range(3):  # the backoff grows; only the learned estimate caps it at the expected finish
            clock.advance(2)
            learned = await again.poll(job_id, long_poll=True)
            blind = await again.poll(other, long_poll=True)
        assert learned.polling_recommendation is not None and blind.polling_recommendation is not None
        # 22 s of 20 expected: about as long again as it overran (2 s), not the backoff
        assert learned.polling_recommendation.interval == 2000
        assert blind.polling_recommendation.interval > learned.polling_recommendation.interval


async def test_a_jobs_own_estimate_wins_over_the_learned_one(make_manager: ManagerFactory, clock: FakeClock) -> None:
    async with make_manager() as m:
        for _ in range(MIN_RUNS):
            await run_once(m, clock, "tool", 1)
        rec = await m.get_record(await m.create_job("tool", {}, task=TaskSpec(estimated_duration=60_000)))
        assert m.expected_duration(rec) == 60_000
        rec = await m.get_record(await m.create_job("tool", {}))
        assert m.expected_duration(rec) == 1_000
