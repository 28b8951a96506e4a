"""One call at a time, shared by the callers that ask while it waits (`vibe_jobs.shared`), and the manager's
server-wide figures (/health, /metrics) built on it: a flood of probes costs the store one count at a time."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import anyio
import pytest

from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import Statistics
from vibe_jobs.server.http.prom import instrument_store
from vibe_jobs.shared import SharedCall
from vibe_jobs.store.sqlite import SQLiteStore


class Gated:
    """A call that waits for its gate to open and answers its own number."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = anyio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        number = self.calls
        await self.gate.wait()
        return number

    def open(self) -> None:
        self.gate.set()
        self.gate = anyio.Event()


async def test_callers_who_ask_while_a_call_runs_share_the_next_call_not_the_running_one() -> None:
    fn = Gated()
    shared = SharedCall(fn)
    answers: dict[str, int] = {}

    async def ask(name: str) -> None:
        answers[name] = await shared()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, "first")
        await anyio.wait_all_tasks_blocked()  # the first call runs, its gate shut
        for i in range(20):
            tg.start_soon(ask, f"later {i}")
        await anyio.wait_all_tasks_blocked()  # all twenty wait behind it
        fn.open()
        await anyio.wait_all_tasks_blocked()  # the second call (theirs) began
        fn.open()
    assert fn.calls == 2
    assert answers.pop("first") == 1
    assert set(answers.values()) == {2}  # never the first call's answer: it began before they asked


async def test_a_caller_after_the_last_call_ended_gets_a_call_of_its_own() -> None:
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        return calls

    shared = SharedCall(fn)
    assert [await shared(), await shared(), await shared()] == [1, 2, 3]


async def test_those_who_asked_while_a_call_failed_share_the_next_call() -> None:
    gate = anyio.Event()
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            raise RuntimeError("the store failed")
        return calls

    shared = SharedCall(fn)
    outcomes: list[object] = []

    async def ask() -> None:
        try:
            outcomes.append(await shared())
        except RuntimeError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(ask)
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert outcomes == ["the store failed", 2, 2]
    assert calls == 2


async def test_a_failed_calls_error_goes_to_every_caller_it_was_made_for() -> None:
    """Ten probes at once while the store was down took ten failures in turn (each caller in line called
    again), ten times the failure's time-out; the call made for all of them fails all of them, once."""
    gate = anyio.Event()
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("the store failed")

    shared = SharedCall(fn)
    outcomes: list[str] = []

    async def ask() -> None:
        with pytest.raises(RuntimeError) as failed:
            await shared()
        outcomes.append(str(failed.value))

    async with anyio.create_task_group() as tg:
        for _ in range(10):  # all ask before the call begins: it is made for all of them
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert outcomes == ["the store failed"] * 10
    assert calls == 1


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
async def test_many_asking_for_the_figures_at_once_cost_the_sqlite_store_two_counts() -> None:
    """The store stopped mid-count (its process SIGSTOPped): 30 callers of `statistics()` pile up; once it
    goes on, the first caller's count and one shared by the other 29 are all the store is asked."""
    with tempfile.TemporaryDirectory(prefix="vj-shared-") as tmp:
        store = SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}")
        async with JobManager(store) as manager:
            await manager.create_job("noop", {})
            instrument_store(store, manager.stats.counters)
            counted = manager.stats.counters.store_ops
            assert store._link is not None and store._link._proc is not None
            pid = store._link._proc.pid
            answers: list[Statistics] = []

            async def ask() -> None:
                answers.append(await manager.statistics())

            os.kill(pid, signal.SIGSTOP)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    await anyio.wait_all_tasks_blocked()  # its count sent, not answered
                    for _ in range(29):
                        tg.start_soon(ask)
                    await anyio.wait_all_tasks_blocked()  # 29 callers in line behind it
                    os.kill(pid, signal.SIGCONT)
            finally:
                os.kill(pid, signal.SIGCONT)
            await manager.create_job("noop", {})
            fresh = await manager.statistics()
    assert counted["counts"].cumulative()[-1][1] == 3  # the first's, one shared by the 29, one after the insert
    assert len(answers) == 30 and all(a.queue_depth == 1 for a in answers)
    assert fresh.queue_depth == 2  # asked after the second job was stored: it sees it
