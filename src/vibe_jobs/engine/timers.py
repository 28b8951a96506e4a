"""Timers: one task calls back at deadlines, so a running job needs no watcher task of its own.

`call_at` is cheap (a heap push); a cancelled timer is skipped when it comes up and the heap is
rebuilt once cancelled entries outnumber the live ones, so finished jobs with long time-outs do
not pile up. Callbacks are plain functions run in the timer task: they must not block (start a
task for anything that awaits).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.engine.timers")


def _nothing() -> None:
    return None


class Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False


class Timers:
    """Deadlines on the event loop's clock (`anyio.current_time()`), served by one task."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled_hint = 0
        self._wake = anyio.Event()
        self._running = False

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None], tg: TaskGroup) -> Timer:
        """Call `callback()` at loop time `when` (the serving task is started in `tg` when needed)."""
        timer = Timer(when, callback)
        if self._heap and self._cancelled_hint > 64 and self._cancelled_hint * 2 > len(self._heap):
            self._compact()
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if not self._running:
            self._running = True
            tg.start_soon(self._serve)
        elif when < earliest:
            self._wake.set()
        return timer

    def call_later(self, delay: float, callback: Callable[[], None], tg: TaskGroup) -> Timer:
        """`call_at` `delay` seconds from now (the loop's clock read directly: this runs for every job)."""
        return self.call_at(asyncio.get_running_loop().time() + delay, callback, tg)

    def cancel(self, timer: Timer | None) -> None:
        """The timer will not fire. It stays in the heap until it comes up or the heap is compacted, but
        lets go of its callback now (and of what the callback holds: a job's run, its records)."""
        if timer is not None and not timer.cancelled:
            timer.cancelled = True
            timer.callback = _nothing
            self._cancelled_hint += 1

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if not item[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled_hint = 0

    async def _serve(self) -> None:
        try:
            while True:
                self._fire_due(anyio.current_time())
                wait = self._heap[0][0] - anyio.current_time() if self._heap else math.inf
                with anyio.move_on_after(max(0.0, wait)):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self._running = False

    def _fire_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                self._cancelled_hint = max(0, self._cancelled_hint - 1)
                continue
            timer.cancelled = True  # fired: a later cancel is a no-op
            try:
                timer.callback()
            except Exception:  # a faulty callback must not stop every other job's time-out
                log.exception("timer.callback_failed")
