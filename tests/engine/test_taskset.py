"""TaskSet: cheap per-job tasks that still end with the task group that holds them."""

from __future__ import annotations

from typing import Any

import anyio
from structlog.testing import capture_logs

from vibe_jobs.engine.taskset import TaskSet


async def test_tasks_are_cancelled_and_awaited_when_the_holding_group_stops() -> None:
    tasks, started, ended = TaskSet(), anyio.Event(), list[str]()

    async def forever() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # cleanup that awaits still completes
                ended.append("cleaned up")

    async with anyio.create_task_group() as tg:
        tasks.spawn(tg, forever)
        await started.wait()
        assert len(tasks) == 1
        tg.cancel_scope.cancel()
    assert ended == ["cleaned up"] and len(tasks) == 0


async def test_a_failing_task_is_logged_and_neither_the_group_nor_other_tasks_stop() -> None:
    tasks, done = TaskSet(), anyio.Event()

    async def boom() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        await anyio.lowlevel.checkpoint()
        done.set()

    with capture_logs() as logs:
        await run_both(tasks, boom, fine, done)
    assert [e["error"] for e in logs if e["event"] == "task.failed"] == ["RuntimeError: boom"]


async def run_both(tasks: TaskSet, boom: Any, fine: Any, done: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:
        tasks.spawn(tg, boom)
        tasks.spawn(tg, fine)
        with anyio.fail_after(5):
            await done.wait()
        while len(tasks):
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
