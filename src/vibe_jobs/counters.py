"""Monotonic counters and fixed-bucket histograms of this process: what /metrics exports.

Plain data, no exporter: the manager and the engine count here as jobs are created, started, retried,
timed out, finished and read; `server/http/prom.py` turns a snapshot into Prometheus families. Labels are
bounded by construction: tool names (registered tools), statuses, priorities, poll outcomes, store ops.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Seconds. Jobs run from milliseconds to hours; a store operation from microseconds to seconds.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
STORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
POLL_OUTCOMES = ("served", "rate_limited", "long_poll")


@dataclass(slots=True)
class Histogram:
    """Counts per upper bound (the last slot is +Inf), their sum and total; cumulative when exported."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), +Inf last: Prometheus's `le` buckets."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Counters:
    """The process's counters; every method is O(1) and allocation-free once a label was seen."""

    def __init__(self) -> None:
        self.created: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.timed_out: Counter[str] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()  # (tool, status)
        self.polls: Counter[str] = Counter(dict.fromkeys(POLL_OUTCOMES, 0))
        self.duration: dict[str, Histogram] = {}
        self.queue_wait: dict[str, Histogram] = {}
        self.store_ops: dict[str, Histogram] = {}

    def finish(self, tool: str, status: str, duration_ms: int | None) -> None:
        self.finished[tool, status] += 1
        if duration_ms is not None:
            _hist(self.duration, tool, JOB_BUCKETS).observe(duration_ms / 1000)

    def started(self, tool: str, waited_ms: int) -> None:
        _hist(self.queue_wait, tool, JOB_BUCKETS).observe(max(0, waited_ms) / 1000)

    def store_op(self, op: str, seconds: float) -> None:
        _hist(self.store_ops, op, STORE_BUCKETS).observe(seconds)


def _hist(table: dict[str, Histogram], key: str, bounds: tuple[float, ...]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(bounds)
    return hist
