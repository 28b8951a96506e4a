"""Many long-polls of one job: each progress report woke every waiter and each read the job again (a store read per
waiter per report: 1,000 long-polls of a job reporting 100 times a second took more than a core; on SQLite and
PostgreSQL each read a round trip). A change published here carries the record it stored, and the waiters judge the
job by it. The long-polls still return when they did: not on progress, at once on a question the caller cannot
answer, at the job's end; another principal's job still answers as an unknown one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import ManagerFactory
from vibe_jobs.errors import JobNotFound
from vibe_jobs.identity import Viewer
from vibe_jobs.manager import JobManager
from vibe_jobs.questions import elicit_request
from vibe_jobs.results import text_result
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.control import ControlTools
from vibe_jobs.settings import Settings
from vibe_jobs.store import JobStore
from vibe_jobs.testing.counting import CountingMemory, CountingSQLite

pytestmark = pytest.mark.every_store

WAITERS, REPORTS = 20, 30


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[JobStore]:
    s: JobStore = CountingMemory() if store_kind == "memory" else CountingSQLite(f"sqlite:///{tmp_path / 'jobs.db'}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class Callers:
    """get-job-result calls' contexts as `_long_poll` uses them: 2025-11-25 callers that cannot be asked questions on
    their call, whose progress notifications are kept in `told`; `began` is set once `waiters` of them were told
    where the job stands (each wait's first notification)."""

    def __init__(self, waiters: int) -> None:
        self.waiters, self.told, self.began = waiters, list[str | None](), anyio.Event()

    def ctx(self) -> Any:
        async def report_progress(progress: float, total: float | None = None, message: str | None = None) -> None:
            self.told.append(message)
            if len(self.told) == self.waiters:
                self.began.set()

        session = SimpleNamespace(can_send_request=False)
        rc = SimpleNamespace(protocol_version="2025-11-25", session=session)
        return cast(Any, SimpleNamespace(request_context=rc, report_progress=report_progress))


async def running_job(manager: JobManager, viewer: Viewer | None = None) -> str:
    job_id = await manager.create_job("build", viewer=viewer)
    await manager.start_job(job_id)
    await manager.update_progress(job_id, 0, "starting")  # the long-polls' first notification tells it
    return job_id


async def test_many_long_polls_of_a_reporting_job_do_not_read_it_at_each_report(
    make_manager: ManagerFactory, store: CountingMemory | CountingSQLite
) -> None:
    manager = make_manager(settings=Settings(progress_keepalive_ms=600_000))
    job_id = await running_job(manager)
    identity = Identity()
    control = ControlTools(manager, {}, identity)
    callers, returned = Callers(WAITERS), [0]

    async def long_poll() -> None:
        assert await control._long_poll(callers.ctx(), job_id, 60, identity.viewer()) is None
        returned[0] += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(WAITERS):
                tg.start_soon(long_poll)
            await callers.began.wait()
            reads = store.reads
            for r in range(1, REPORTS + 1):
                await manager.update_progress(job_id, r, f"step {r}")
                await anyio.lowlevel.checkpoint()  # the waiters the report woke take their step before this task
                assert returned[0] == 0, "a long-poll returned on progress"
            await manager.set_job_result(job_id, text_result("built"))
        reads = store.reads - reads
    assert returned[0] == WAITERS
    # before: a read per waiter per report (600 here) and one more each at the end; now a re-read a second at most
    assert reads <= 2 * WAITERS, f"{reads} reads of the job by {WAITERS} long-polls across {REPORTS} reports"


@pytest.mark.parametrize("ending", ["question", "finish"])
async def test_a_long_poll_returns_on_a_question_and_at_the_end_not_on_progress(
    make_manager: ManagerFactory, ending: str
) -> None:
    manager = make_manager(settings=Settings(progress_keepalive_ms=600_000))
    identity = Identity()
    control = ControlTools(manager, {}, identity)
    job_id = await running_job(manager)
    callers, done = Callers(1), anyio.Event()

    async def long_poll() -> None:
        await control._long_poll(callers.ctx(), job_id, 60, identity.viewer())
        done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(long_poll)
            await callers.began.wait()
            for r in range(1, 4):
                await manager.update_progress(job_id, r * 10, f"step {r}")
                await anyio.lowlevel.checkpoint()  # the long-poll the report woke takes its step first
                assert not done.is_set(), "a long-poll returned on progress"
            if ending == "question":
                await manager.ask(job_id, elicit_request("Go on?", {"type": "object", "properties": {}}))
            else:
                await manager.set_job_result(job_id, text_result("built"))
            await done.wait()  # at once: not after its 60 seconds (fail_after)
    rec = await manager.get_record(job_id)
    assert rec.finished if ending == "finish" else rec.waiting_for is not None
    assert callers.told[0] == "starting"


async def test_another_principal_s_job_answers_a_long_poll_as_unknown(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    job_id = await running_job(manager, Viewer("alice"))
    identity = Identity()
    control = ControlTools(manager, {}, identity)
    with pytest.raises(JobNotFound), anyio.fail_after(10):
        await control._long_poll(Callers(1).ctx(), job_id, 60, Viewer("bob"))
    with anyio.fail_after(10):
        assert await manager.wait(job_id, 0.01, viewer=Viewer("alice")) is not None
    with pytest.raises(JobNotFound):
        await manager.wait(job_id, 60, viewer=Viewer("bob"))


async def test_a_wait_sees_a_change_made_elsewhere_by_reading_the_job_again(make_manager: ManagerFactory) -> None:
    """A change another process made publishes nothing here: the wait reads the job again every `refresh` seconds,
    also while the job keeps reporting here (each report's event carries a record, none is read for it)."""
    here, elsewhere = make_manager(), make_manager()  # one store, a bus each: as two processes
    job_id = await running_job(here)
    done = anyio.Event()

    async def waiter() -> None:
        rec = await here.wait(job_id, 30, refresh=0.05)
        assert rec.finished
        done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await here.update_progress(job_id, 50, "half")
            await anyio.lowlevel.checkpoint()
            await elsewhere.set_job_result(job_id, text_result("built"))
            await done.wait()


async def test_the_record_goes_to_the_job_s_subscribers_only(manager: JobManager) -> None:
    """A subscriber of every job buffers events of every job (up to 1,024 when slow): with their records, results
    and all, it would hold as many records; a subscriber of the job is the one that judges the job by them."""
    job_id = await running_job(manager)
    with manager.subscribe() as every, manager.subscribe(job_id) as one:
        await manager.set_job_result(job_id, text_result("x" * 10_000))
        seen_by_every, seen_by_one = await every.__anext__(), await one.__anext__()
    assert seen_by_every == seen_by_one and seen_by_every.record is None
    assert seen_by_one.record is not None and seen_by_one.record.finished
