"""Clocks: a shared store's time, carried on by a clock that never steps, and the steps of this machine's clock.

The wall clock may step (NTP, a VM resumed): every time a job keeps is wall-clock epoch milliseconds, shared with
other processes through the store, so a step cannot be undone; what can be is judged here. `StoreClock` keeps a
shared store's time between measures without following this machine's steps; `ClockSteps` tells a judge of times
other processes wrote (a lease's expiry, a job's finish) the forward steps it should forgive (README, "Clock
steps").
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vibe_jobs.errors import StoreError
from vibe_jobs.logs import get_logger
from vibe_jobs.store.base import JobStore, SharedJobStore

log = get_logger("vibe_jobs.clocks")
CLOCK_SKEW_WARN_S = 1.0  # a machine's clock this far from the shared store's is named in the log
CLOCK_STEP_MS = 1000  # the wall clock moving this much more (or less) than the monotonic one: a step
MAX_STEPS = 16  # clock steps remembered (`ClockSteps`)


def _since_boot() -> float:
    """Seconds by a clock that is never stepped and counts a suspended machine's sleep (Linux's CLOCK_BOOTTIME);
    elsewhere the wall clock (steps and all: README, "Clock steps")."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class StoreClock:
    """A shared store's time (`SharedJobStore.clock_ms`), as last measured, carried on by a clock that is never
    stepped: a step of this machine's wall clock (NTP, a VM resumed) between two measures does not move it (it
    did: renewed then, this process's lease was written as far ahead as the step, and a lease never moves back,
    so the jobs of a worker that died next were kept from recovery for as long as the step). `offset`: the
    store's time less this machine's wall clock, as last measured (named in the log when they differ)."""

    def __init__(self, wall: Callable[[], float] | None = None, ticks: Callable[[], float] | None = None) -> None:
        self.offset = 0.0
        self._wall = wall = wall or time.time
        self._ticks = ticks or (_since_boot if hasattr(time, "CLOCK_BOOTTIME") else wall)
        self._base = wall() - self._ticks()  # the store's time less `ticks`

    def __call__(self) -> float:
        return self._ticks() + self._base

    async def measure(self, store: JobStore) -> bool:
        """Measure the store's time again (half a round trip off at most); False when it cannot be read."""
        if not isinstance(store, SharedJobStore):
            return False
        try:
            before, wall = self._ticks(), self._wall()
            theirs = await store.clock_ms() / 1000
            base = theirs - (before + self._ticks()) / 2
        except StoreError as exc:
            log.warning("clock.unread", error=str(exc), why="the time measured last is kept")
            return False
        offset = theirs - wall
        if abs(offset - self.offset) >= CLOCK_SKEW_WARN_S:
            log.warning("clock.skewed", seconds=round(offset, 3), why="times are the database's, this machine's differ")
        self.offset, self._base = offset, base
        return True


class ClockSteps:
    """Steps of a wall clock, seen against one that never steps (the monotonic clock) between two readings. A
    judge of times other processes wrote (a lease's expiry, a job's finish) forgives the forward steps seen within
    its window: it judges at now less them, until the window has passed since each was seen. A step back is
    counted only against a forward one (a correction of a correction): on its own, times judged at an earlier time
    only look younger, for as long as the step (the limit: README, "Clock steps")."""

    def __init__(self, now_ms: int, ticks: float) -> None:
        self._seen = (now_ms, ticks)
        self._steps: list[tuple[float, int]] = []  # (ticks when seen, ms: + forward, - back), the last MAX_STEPS

    def judged(self, now_ms: int, ticks: float, window_ms: int) -> int:
        last_ms, last_ticks = self._seen
        self._seen = (now_ms, ticks)
        step = (now_ms - last_ms) - round((ticks - last_ticks) * 1000)
        if abs(step) >= CLOCK_STEP_MS:
            self._steps = [*self._steps[1 - MAX_STEPS :], (ticks, step)]
        window = window_ms / 1000
        ahead = sum(ms for at, ms in self._steps if ticks - at < window)
        return now_ms - ahead if ahead > 0 else now_ms  # (a step back, then forward again: the two cancel)
