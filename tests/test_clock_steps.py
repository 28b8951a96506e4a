"""Wall-clock steps: an NTP correction or a resumed VM moves `time.time()` back or forward by minutes or hours
while the server runs. The manager's clock is injected (`SteppedClock` steps both ways, as a wall clock does;
`Ticks` stands for the monotonic clock, which never steps), on every store where the rule is the store's."""

from __future__ import annotations

import pytest

from tests.conftest import ManagerFactory
from vibe_jobs.manager import JobManager
from vibe_jobs.polling import PollingPolicy, decide

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
