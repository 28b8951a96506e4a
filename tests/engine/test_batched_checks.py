"""The local engine's checks every timer round (CANCEL_CHECK_SECONDS: 0.5 s) read the jobs they look at with one
store call, not one each: the running jobs (a cancel or a takeover written elsewhere) and the dependencies another
process runs. On the real SQLite store, its calls counted (`vibe_jobs.testing.counting`)."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.engine.test_scheduler import WAIT, Backend, Gates, gated_tool, limits
from vibe_jobs import JobManager, JobStatus, Settings, TaskSpec
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.store import open_store
from vibe_jobs.testing.counting import CountingSQLite

JOBS = 20


async def test_the_running_jobs_are_checked_with_one_store_call_and_a_cancel_elsewhere_is_still_seen(
    tmp_path: Path,
) -> None:
    """20 running jobs were 20 store reads every half second (40 a second for as long as they run)."""
    store = CountingSQLite(f"sqlite:///{tmp_path / 'jobs.db'}")
    gates = Gates()
    async with Backend("sqlite", store).running([gated_tool(gates)], Settings(max_concurrent=JOBS, queue=limits())) as (
        m,
        sched,
    ):
        assert isinstance(sched, LocalSource)
        ids = [await m.create_job("gated", {"key": str(i)}) for i in range(JOBS)]
        await gates.wait_count(JOBS)
        store.calls = 0
        await sched.executor.check_running()
        assert store.calls <= 2, store.calls  # this check's, and a timer round's that may fall within it
        await m.store.update(ids[3], {"cancel_requested": "asked elsewhere"})  # as another process writes it
        await sched.executor.check_running()
        with anyio.fail_after(WAIT):
            assert (await m.wait(ids[3], WAIT)).status is JobStatus.CANCELLED
        gates.open(*(str(i) for i in range(JOBS)))
        with anyio.fail_after(WAIT):
            await sched.drained()


async def test_dependencies_run_elsewhere_are_checked_with_one_store_call(tmp_path: Path) -> None:
    """A job waiting on 20 jobs that another process runs (a tool this one lacks) read each of them every half
    second; when they end elsewhere it still runs."""
    store = CountingSQLite(f"sqlite:///{tmp_path / 'jobs.db'}")
    gates = Gates()
    async with Backend("sqlite", store).running([gated_tool(gates)]) as (m, sched):
        assert isinstance(sched, LocalSource)
        async with JobManager(open_store(store.url)) as other:  # a process that has the tool "elsewhere"
            deps = [await other.create_job("elsewhere", {"i": i}) for i in range(JOBS)]
        waiting = await m.create_job("gated", {"key": "w"}, task=TaskSpec(dependencies=deps))
        store.calls = 0
        await sched._check_foreign_dependencies()
        assert store.calls <= 2, store.calls  # this check's, and a timer round's that may fall within it
        for dep in deps:  # run and completed by the process that has the tool
            await m.store.update(dep, {"status": JobStatus.COMPLETED, "finished_at": m.now()})
        await gates.wait_started("w")
        gates.open("w")
        assert (await m.wait(waiting, WAIT)).status is JobStatus.COMPLETED
