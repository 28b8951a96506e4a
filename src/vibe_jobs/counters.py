"""Monotonic counters and fixed-bucket histograms of this process: what /metrics exports.

Plain data, no exporter: the manager and the engine count here as jobs are created, started, retried,
timed out, finished and read; `server/http/prom.py` turns a snapshot into Prometheus families. Labels are
bounded by construction: tool names (registered tools), statuses, priorities, poll outcomes, store ops.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

# Seconds. Jobs run from milliseconds to hours; a store operation from microseconds to seconds.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
STORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
POLL_OUTCOMES = ("served", "rate_limited", "long_poll")
PENDING_MAX = 4096  # observations a histogram holds before it folds them into its counts


@dataclass(slots=True)
class Histogram:
    """Observations counted per upper bound, their sum and total.

    `observe` only appends (it runs once or twice per job): the values are folded into the counts in
    batches, sorted once and cut at each bound, when read or when PENDING_MAX are waiting.
    """

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # cumulative: observations <= each bound, +Inf last
    total: float = 0.0
    count: int = 0
    pending: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        pending = self.pending
        pending.append(value)
        if len(pending) > PENDING_MAX:
            self.fold()

    def fold(self) -> None:
        batch = sorted(self.pending)
        self.pending = []
        if not batch:
            return
        counts = self.counts
        for i, bound in enumerate(self.bounds):
            counts[i] += bisect_right(batch, bound)
        counts[-1] += len(batch)
        self.total += sum(batch)
        self.count += len(batch)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), +Inf last: Prometheus's `le` buckets."""
        self.fold()
        return list(zip((*self.bounds, float("inf")), self.counts, strict=True))


class Counters:
    """The process's counters. What runs per job only increments or appends; `finished` counts by tool
    and status come from the statistics' per-tool groups (`StatsCollector.by_tool`), counted there already."""

    def __init__(self) -> None:
        self.created: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.timed_out: Counter[str] = Counter()
        self.polls: Counter[str] = Counter(dict.fromkeys(POLL_OUTCOMES, 0))
        self.duration: dict[str, Histogram] = {}
        self.queue_wait: dict[str, Histogram] = {}
        self.store_ops: dict[str, Histogram] = {}

    def finished(self, tool: str, duration_ms: int) -> None:
        hist = self.duration.get(tool)
        if hist is None:
            hist = self.duration[tool] = Histogram(JOB_BUCKETS)
        hist.observe(duration_ms / 1000)

    def started(self, tool: str, waited_ms: int) -> None:
        hist = self.queue_wait.get(tool)
        if hist is None:
            hist = self.queue_wait[tool] = Histogram(JOB_BUCKETS)
        hist.observe(waited_ms / 1000 if waited_ms > 0 else 0.0)

    def store_op(self, op: str, seconds: float) -> None:
        _hist(self.store_ops, op, STORE_BUCKETS).observe(seconds)


def _hist(table: dict[str, Histogram], key: str, bounds: tuple[float, ...]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(bounds)
    return hist
