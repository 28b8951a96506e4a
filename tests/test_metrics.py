"""Per-job metrics: measured times, the performance score, and their place in the status message."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock
from vibe_jobs import JobManager, JobStatus, TaskSpec
from vibe_jobs.metrics import STORE_CALM_MS, StatsCollector, performance_score

OK = {"content": [{"type": "text", "text": "ok"}], "isError": False}


@pytest.mark.parametrize(
    ("duration", "estimate", "errors", "retries", "score"),
    [
        (1000, None, 0, 0, 100.0),
        (1000, 2000, 0, 0, 100.0),
        (2000, 1000, 0, 0, 50.0),
        (1000, None, 1, 0, 50.0),
        (1000, None, 0, 2, 50.0),
        (4000, 1000, 1, 2, 8.33),
    ],
)
def test_performance_score(duration: int, estimate: int | None, errors: int, retries: int, score: float) -> None:
    assert performance_score(duration, estimate, errors, retries) == score


async def test_metrics_come_from_the_job_record(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("t", {}, task=TaskSpec(estimated_duration=1000))
    await manager.update_job_status(job_id, JobStatus.RUNNING)
    clock.advance(2.0)
    await manager.set_job_result(job_id, OK)
    metrics = await manager.get_metrics(job_id)
    assert metrics.duration == 2000 and metrics.error_count == 0
    assert metrics.performance_score == 50.0
    message = await manager.poll(job_id)
    assert message.metrics is not None and message.metrics["duration"] == 2000
    assert "performanceScore" in message.metrics


def test_a_transient_store_failure_is_reported_until_the_store_has_worked_for_the_calm_period() -> None:
    now = [1000.0]
    stats = StatsCollector(ticks=lambda: now[0])

    def reasons() -> list[str]:
        return stats.snapshot({}, 0).health.reasons

    stats.store_failed("StoreLocked: the database is locked", transient=True)
    now[0] += STORE_CALM_MS / 1000 - 1
    stats.store_worked()  # too soon: still reported
    assert reasons() == [f"the job store failed {STORE_CALM_MS // 1000 - 1} s ago: StoreLocked: the database is locked"]
    stats.store_failed("StoreLocked: again", transient=True)  # failing again starts the calm period again
    now[0] += STORE_CALM_MS / 1000 - 1
    stats.store_worked()
    assert reasons() and "again" in reasons()[0]
    now[0] += 1
    stats.store_worked()  # worked the whole calm period after the last failure: over
    assert reasons() == []
    stats.store_failed("StoreCorrupt: damaged", transient=False)
    now[0] += STORE_CALM_MS / 1000
    stats.store_worked()  # damage is not cleared by a write
    assert reasons() and "damaged" in reasons()[0]
