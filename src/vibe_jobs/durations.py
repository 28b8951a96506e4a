"""Learned durations: per tool (and tool + operation type), how long completed runs take.

Each key keeps an exponentially weighted mean (`ewma_ms`, the typical run) and the last RECENT run
times, whose nearest-rank 90th percentile (`high_ms`) is the estimate polling uses for a job that gave
no `estimatedDuration`: a job rarely outruns it, so the polling recommendation clamps to the expected
finish; one that does is expected to need about as long again as it overran (`polling.estimate_remaining`).
Rows are persisted in the store (`durations` table) by the manager's maintenance; each process keeps learning
from its own completions and the last writer of a key wins (a cluster converges on the most recent learner's
view).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ALPHA = 0.2  # weight of the newest run in the mean
RECENT = 50  # run times kept per key for the high quantile
HIGH_PCT = 90
MIN_RUNS = 3  # fewer completed runs teach nothing yet


@dataclass(slots=True)
class Learned:
    """One key's figures. `add` only appends (it runs once per completed job); `fold` brings the mean, the
    recent window and the high quantile up to date when they are read."""

    count: int = 0
    ewma_ms: float = 0.0
    recent: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    high: int = 0

    def add(self, ms: int) -> None:
        self.pending.append(ms)

    def fold(self) -> Learned:
        if self.pending:
            ewma, count = self.ewma_ms, self.count
            for ms in self.pending:
                count += 1
                ewma = float(ms) if count == 1 else ewma + ALPHA * (ms - ewma)
            self.count, self.ewma_ms = count, ewma
            self.recent = (self.recent + self.pending)[-RECENT:]
            self.pending = []
            self.high = _high(self.recent)
        return self

    @property
    def high_ms(self) -> int:
        return self.fold().high

    @property
    def estimate_ms(self) -> int | None:
        """The estimate polling uses, once enough runs were seen."""
        self.fold()
        return self.high if self.count >= MIN_RUNS else None

    def row(self) -> tuple[int, float, str]:
        self.fold()
        return self.count, self.ewma_ms, json.dumps(self.recent)

    @classmethod
    def from_row(cls, count: int, ewma_ms: float, recent: str) -> Learned:
        window = [int(x) for x in json.loads(recent or "[]")][-RECENT:]
        return cls(int(count), float(ewma_ms), window, [], _high(window))


def _high(window: list[int]) -> int:
    """Nearest-rank HIGH_PCT percentile."""
    ordered = sorted(window)
    rank = max(1, -(-len(ordered) * HIGH_PCT // 100))
    return ordered[rank - 1] if ordered else 0


def key_of(tool: str, operation_type: str | None = None) -> str:
    return f"{tool}|{operation_type}" if operation_type else tool


class Durations:
    """The learned durations of this process, and which keys changed since they were last saved."""

    def __init__(self) -> None:
        self.by_key: dict[str, Learned] = {}
        self.dirty: set[str] = set()

    def add(self, tool: str, operation_type: str | None, ms: int) -> None:
        self._add(tool, ms)
        if operation_type:
            self._add(key_of(tool, operation_type), ms)

    def _add(self, key: str, ms: int) -> None:
        learned = self.by_key.get(key)
        if learned is None:
            learned = self.by_key[key] = Learned()
        learned.pending.append(ms)
        self.dirty.add(key)

    def estimate(self, tool: str, operation_type: str | None = None) -> int | None:
        """The tool's learned estimate (of its operation type when known), in ms; None without history."""
        learned = self.by_key.get(key_of(tool, operation_type)) if operation_type else None
        if learned is not None and (ms := learned.estimate_ms) is not None:
            return ms
        learned = self.by_key.get(tool)
        return learned.estimate_ms if learned is not None else None

    def take_dirty(self) -> dict[str, tuple[int, float, str]]:
        rows = {key: self.by_key[key].row() for key in self.dirty}
        self.dirty.clear()
        return rows

    def load(self, rows: dict[str, tuple[int, float, str]]) -> None:
        """Rows from the store, under what this process learned since (which is newer)."""
        for key, row in rows.items():
            if key not in self.dirty:
                self.by_key[key] = Learned.from_row(*row)

    def summary(self) -> dict[str, dict[str, float | int]]:
        """{key: {runs, typicalMs, highMs}} for job-stats and the dashboard."""
        return {
            key: {"runs": v.count, "typicalMs": round(v.ewma_ms), "highMs": v.high}
            for key, v in sorted(self.by_key.items())
            if v.fold()
        }
