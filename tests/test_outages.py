"""The one rule for background work while the store fails (vibe_jobs/outages.py): a store failure is
retried after a backoff and never escapes, even when concurrent steps report it as an exception group;
anything else escapes at once; a write gives up on a failure that is not transient."""

from __future__ import annotations

import anyio
import pytest

from vibe_jobs.errors import StoreCorrupt, StoreError, StoreLocked, StoreUnavailable
from vibe_jobs.outages import StoreRetry, store_failure


def test_a_group_of_store_errors_is_a_store_failure_and_a_mixed_group_is_not() -> None:
    down = StoreUnavailable("down")
    assert store_failure(down) is down
    assert store_failure(ExceptionGroup("adopting", [down, StoreLocked("busy")])) is down
    assert store_failure(ExceptionGroup("outer", [ExceptionGroup("inner", [down])])) is down
    assert store_failure(ExceptionGroup("adopting", [down, KeyError("a bug")])) is None
    assert store_failure(KeyError("a bug")) is None


async def concurrently_failing() -> None:
    async with anyio.create_task_group() as tg:  # as recovery adopts orphans: one task per job
        for _ in range(3):
            tg.start_soon(raising, StoreUnavailable("the database restarts"))


async def raising(exc: Exception) -> None:
    raise exc


async def test_a_loop_step_backs_off_and_goes_on_through_store_failures() -> None:
    seen: list[StoreError] = []
    retry = StoreRetry("test.failed", first=0.001, most=0.004, on_failure=seen.append)
    assert [await retry.attempt(concurrently_failing) for _ in range(4)] == [False] * 4
    assert len(seen) == 4 and retry.failures == 4
    assert await retry.attempt(anyio.lowlevel.checkpoint)
    assert retry.failures == 0
    with pytest.raises(KeyError):
        await retry.attempt(lambda: raising(KeyError("a bug")))


async def test_a_write_is_retried_while_the_failure_is_transient_and_given_up_when_it_is_not() -> None:
    failures: list[Exception] = [StoreLocked("busy"), StoreUnavailable("restarting")]
    done: list[int] = []

    async def write() -> None:
        if failures:
            raise failures.pop(0)
        done.append(1)

    assert await StoreRetry("test.write", first=0.001).until_done(write)
    assert done == [1]
    assert not await StoreRetry("test.write", first=0.001).until_done(lambda: raising(StoreCorrupt("damaged")))
