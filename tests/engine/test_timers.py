"""Timers: the one task that serves every running job's time-out stages."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import anyio
import anyio.lowlevel

from vibe_jobs.engine.timers import Timers


async def test_timers_fire_in_deadline_order_and_cancelled_ones_never_fire() -> None:
    timers, fired = Timers(), list[str]()
    done = anyio.Event()

    def last() -> None:
        fired.append("late")
        done.set()

    async with anyio.create_task_group() as tg:
        now = anyio.current_time()
        timers.call_at(now + 0.03, last, tg)
        skipped = timers.call_at(now + 0.01, lambda: fired.append("cancelled"), tg)
        timers.call_at(now + 0.02, lambda: fired.append("early"), tg)
        timers.call_at(now, lambda: fired.append("due"), tg)
        timers.cancel(skipped)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    assert fired == ["due", "early", "late"]


async def test_an_earlier_timer_wakes_a_server_sleeping_on_a_later_one() -> None:
    timers, done = Timers(), anyio.Event()
    async with anyio.create_task_group() as tg:
        timers.call_at(anyio.current_time() + 3600, lambda: None, tg)
        await anyio.lowlevel.checkpoint()  # the serving task now sleeps until the hour-long deadline
        timers.call_at(anyio.current_time(), done.set, tg)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()


async def test_cancelled_timers_do_not_pile_up() -> None:
    # a finished job cancels its time-out: with long time-outs and many jobs the heap must not grow
    timers = Timers()
    async with anyio.create_task_group() as tg:
        far = anyio.current_time() + 3600
        for _ in range(10_000):
            timers.cancel(timers.call_at(far, lambda: None, tg))
        assert len(timers) <= 200
        tg.cancel_scope.cancel()


async def test_a_cancelled_timer_lets_go_of_what_its_callback_holds() -> None:
    """A job's time-out is cancelled when the job ends, but the timer stays in the heap until its hour
    comes up: it must not keep the job's run (its records, its result) alive until then."""

    class Held:
        pass

    def holding(obj: Held) -> Callable[[], None]:
        return lambda: print(obj)

    timers, held = Timers(), Held()
    ref = weakref.ref(held)
    async with anyio.create_task_group() as tg:
        timer = timers.call_at(anyio.current_time() + 3600, holding(held), tg)
        del held
        assert ref() is not None  # the timer's callback holds it
        timers.cancel(timer)
        assert len(timers) == 1 and ref() is None
        tg.cancel_scope.cancel()


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    timers, done = Timers(), anyio.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        now = anyio.current_time()
        timers.call_at(now, boom, tg)
        timers.call_at(now, done.set, tg)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
