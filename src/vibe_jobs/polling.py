"""The polling rule: when an agent should read a job again, and which reads are too early.

Pure functions of (policy, job facts, now). The rule (docs/architecture.md, "Polling"):
- the first read of a job is never limited;
- after the n-th counted read of an unfinished job the interval is min(base * factor^(n-1), max),
  clamped to a remaining-time estimate when one exists: max(base, min(backoff, remaining));
- a read before nextCheckTime (less a small tolerance) is rate-limited: answered, not counted,
  and the schedule does not move;
- finished jobs and long-polls are never limited;
- a job deferred to a time (runAt) cannot finish before it: the next read is recommended no earlier.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    base_ms: int = 1000
    factor: float = 2.0
    max_ms: int = 30_000
    tolerance_ms: int = 100

    def backoff(self, reads: int) -> int:
        """The interval after the `reads`-th counted read (reads >= 1)."""
        if reads <= 1:
            return min(self.base_ms, self.max_ms)
        # cap the exponent so huge read counts cannot overflow a float
        exponent = min(reads - 1, 64)
        return int(min(self.base_ms * self.factor**exponent, self.max_ms))

    def interval(self, reads: int, remaining_ms: float | None) -> int:
        backoff = self.backoff(reads)
        if remaining_ms is None:
            return backoff
        return int(max(self.base_ms, min(backoff, remaining_ms)))


@dataclass(frozen=True, slots=True)
class PollDecision:
    """What a read gets: whether it was limited or counted, and the next recommended read."""

    rate_limited: bool
    counted: bool
    interval: int | None
    next_check_time: int | None


def decide(
    policy: PollingPolicy,
    *,
    now: int,
    finished: bool,
    reads: int,
    next_check_time: int | None,
    remaining_ms: float | None = None,
    long_poll: bool = False,
    runnable_at: int | None = None,
) -> PollDecision:
    """Decide one read of a job that has had `reads` counted reads so far (`runnable_at`: a pending job's
    runAt, when it is still ahead)."""
    if finished:
        return PollDecision(rate_limited=False, counted=True, interval=None, next_check_time=None)
    too_early = next_check_time is not None and now < next_check_time - policy.tolerance_ms
    if (
        reads > 0
        and too_early
        and not long_poll
        and not _set_by_a_clock_ahead(policy, now, next_check_time, runnable_at)
    ):
        assert next_check_time is not None
        return PollDecision(True, False, max(0, next_check_time - now), next_check_time)
    interval = policy.interval(reads + 1, remaining_ms)
    if runnable_at is not None and now + interval < runnable_at:
        interval = runnable_at - now
    return PollDecision(rate_limited=False, counted=True, interval=interval, next_check_time=now + interval)


def _set_by_a_clock_ahead(
    policy: PollingPolicy, now: int, next_check_time: int | None, runnable_at: int | None
) -> bool:
    """`next_check_time` lies further ahead than this rule ever sets it from `now` (the longest interval, or a
    runAt): it was set before the clock was stepped back (NTP, a VM resumed). Limited by it, every read would be
    refused, and told to wait, for as long as the step: the read is counted and the schedule set again instead."""
    if next_check_time is None:
        return False
    furthest = max(now + max(policy.base_ms, policy.max_ms), runnable_at or 0) + policy.tolerance_ms
    return next_check_time > furthest


def estimate_remaining(
    *,
    now: int,
    started_at: int | None,
    progress: float | None,
    estimated_duration: int | None,
) -> float | None:
    """Milliseconds left by the progress rate, else by the estimated duration; None when unknown. A run past its
    estimated duration is expected to need about as long again as it overran (it was not 0: every read past the
    estimate was then recommended at the base interval, to the end of a run however long)."""
    if started_at is None:
        return None
    elapsed = max(0, now - started_at)
    if progress is not None and 0 < progress < 100 and elapsed > 0:
        return elapsed * (100 - progress) / progress
    if estimated_duration is not None:
        return float(abs(estimated_duration - elapsed))
    return None
