"""TaskSet: many short child tasks (one per job run) at the cost of a bare asyncio task.

An anyio task group's `start_soon` builds a task handle, a cancel scope, an event and a wrapper
coroutine per task, several times the cost of `asyncio.create_task` (bench/MEASUREMENTS.md): too much
when every job runs in a task of its own. A TaskSet keeps the structure that matters: its tasks
are cancelled and awaited when the task group that holds its guardian stops (a server shutting
down), and a task that fails is logged instead of tearing down the server.

With a `grace`, a task that ignores its cancellation (a job catching it and going on) is awaited that
long, then left behind: `left_behind` is told the names of those still running, and the stop goes on.
Awaited for ever, such a task held the server's stop (only a third signal ended the process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.engine.taskset")


class TaskSet:
    def __init__(self, grace: float | None = None, left_behind: Callable[[list[str]], None] | None = None) -> None:
        self._tasks: dict[asyncio.Task[Any], anyio.CancelScope] = {}
        self._guarded = False
        self.grace, self._left_behind = grace, left_behind
        self.grace_ends: float | None = None  # the loop's time the grace of this life's first `aclose` ends

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, tg: TaskGroup, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        """Run `fn(*args)` now; its lifetime is bounded by `tg` (the guardian is started there). `name`: what
        `left_behind` is told of it."""
        if not self._guarded:  # a new life (a first, or one after a stop): its stop has a grace of its own
            self._guarded, self.grace_ends = True, None
            tg.start_soon(self._guard)
        scope = anyio.CancelScope()
        task = asyncio.get_running_loop().create_task(_within(scope, fn(*args)), name=name)
        self._tasks[task] = scope
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task.failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    async def _guard(self) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                left = await self.aclose()  # a task spawned meanwhile (a run's way out) is in this stop
            self._guarded = False
            if left and self._left_behind is not None:
                self._left_behind([task.get_name() for task in left])

    async def aclose(self) -> list[asyncio.Task[Any]]:
        """Cancel every task (as an anyio cancellation: shielded parts finish) and wait until all end, or for the
        grace at most: answers the tasks still running then (their cancellation stays asked: anyio's is asked
        again at each of their checkpoints)."""
        until = None if self.grace is None else asyncio.get_running_loop().time() + self.grace
        if self.grace_ends is None:
            self.grace_ends = until
        while self._tasks:
            pending = list(self._tasks.items())
            for _, scope in pending:
                scope.cancel()
            left = None if until is None else until - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                return [task for task, _ in pending]
            await asyncio.wait([task for task, _ in pending], timeout=left)
        return []


async def _within(scope: anyio.CancelScope, coro: Coroutine[Any, Any, Any]) -> Any:
    with scope:
        return await coro
