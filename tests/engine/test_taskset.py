"""TaskSet: cheap per-job tasks that still end with the task group that holds them."""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskGroup
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


async def test_with_a_grace_a_task_that_ignores_its_cancellation_is_left_behind_and_named() -> None:
    """A job that catches its cancellation and goes on held the holding group's stop (a server's) for ever."""
    release, started, ended, told = anyio.Event(), anyio.Event(), anyio.Event(), list[list[str]]()
    tasks = TaskSet(grace=0.2, left_behind=told.append)

    async def swallows() -> None:
        started.set()
        try:
            while not release.is_set():
                try:
                    await anyio.sleep(0.01)
                except BaseException:  # hostile on purpose
                    pass
        finally:
            ended.set()

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tasks.spawn(tg, swallows, name="the swallower")
                await started.wait()
                tg.cancel_scope.cancel()
        assert told == [["the swallower"]] and len(tasks) == 1
    finally:
        release.set()  # the task ends, and the test's loop with it
    with anyio.fail_after(5):
        await ended.wait()


async def test_a_second_life_after_a_stop_has_a_grace_of_its_own() -> None:
    """The grace's end (which a sync tool's thread is given at a process's exit) was that of the set's first stop
    for ever: a set used again after a stop (a server served twice in one process) gave its next stop no grace."""
    tasks = TaskSet(grace=30.0)
    ends = []
    for _ in range(2):
        async with anyio.create_task_group() as tg:
            tasks.spawn(tg, anyio.sleep_forever)
            await anyio.lowlevel.checkpoint()
            stopped = anyio.current_time()
            tg.cancel_scope.cancel()
        assert tasks.grace_ends is not None and tasks.grace_ends >= stopped + 30.0
        ends.append(tasks.grace_ends)
    assert ends[1] > ends[0]


async def test_a_task_spawned_during_a_stop_does_not_move_that_stops_grace() -> None:
    """A run ending during the stop may spawn (a failed job's dependents are failed by a task of the set): that
    spawn started a new life inside the stop, which reset the grace's end to its own, later, so a sync tool's
    thread was given more than the one grace of the stop."""
    tasks = TaskSet(grace=30.0)

    async def slow_to_stop(tg: TaskGroup) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.3)  # its own work on the way out, as a run writing its outcome
            tasks.spawn(tg, anyio.sleep, 0)

    async with anyio.create_task_group() as tg:
        tasks.spawn(tg, slow_to_stop, tg)
        await anyio.lowlevel.checkpoint()
        stopped = anyio.current_time()
        tg.cancel_scope.cancel()
    assert tasks.grace_ends is not None and tasks.grace_ends < stopped + 30.2, (tasks.grace_ends, stopped)
