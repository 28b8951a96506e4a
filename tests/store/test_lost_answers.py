"""The SQLite store's server process dies after it committed a write and before its answer came back (killed,
out of memory). The write landed; the caller must be told so, not "unavailable": before, a claim so answered
was taken for a lost race and its job stayed running, owned by this live process, for ever; a failed run's
retry was never queued; a created job was reported failed but stored (review helper-50, F3).

The fault is real: the server process is killed (SIGKILL) once it has sent the answers of the batch holding
the write, and those answers are dropped unread, as they are when the process dies before writing them.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.store.test_contract import record
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.engine.sources import make_source
from vibe_jobs.errors import StoreUnavailable
from vibe_jobs.jobtool import JobToolSpec, make_spec
from vibe_jobs.models import JobQueueConfig, RetryPolicyConfig
from vibe_jobs.store.base import Guard
from vibe_jobs.store.sqlite import SQLiteStore
from vibe_jobs.store.sqlite.link import AnswerLost, statement
from vibe_jobs.store.sqlite.server import VACUUM

WAIT = 10.0
Pick = Callable[[str, Any], bool]


class LoseAnswer:
    """Arms the store's current server process to die once it has answered the batch that holds the first op
    `pick(sql, args)` matches: that answer, and any after it, are dropped unread."""

    def __init__(self, store: SQLiteStore, pick: Pick) -> None:
        link = store._link
        assert link is not None and link._proc is not None
        self.fired = anyio.Event()
        self.pid = link._proc.pid
        sent, answered, target = 0, 0, -1
        submit, answer, proc = link.submit, link._answer, link._proc

        def watched_submit(st: Any, args: Any, mode: int) -> Any:
            nonlocal sent, target
            future = submit(st, args, mode)
            if target < 0 and pick(st.sql, args):
                target = sent
            sent += 1
            return future

        def watched_answer(message: tuple[Any, Any]) -> None:
            nonlocal answered
            values = message[0]
            if self.fired.is_set():
                return  # the process is dead: nothing after it arrives
            if isinstance(values, list) and 0 <= target < answered + len(values):
                proc.kill()  # it committed the batch (answers follow the commit) and dies before we read them
                self.fired.set()
                return
            if isinstance(values, list):
                answered += len(values)
            answer(message)

        link.submit = watched_submit  # type: ignore[method-assign]
        link._answer = watched_answer  # type: ignore[method-assign]


def updating_to(status: JobStatus) -> Pick:
    return lambda sql, args: sql.lstrip().upper().startswith("UPDATE") and status.value in args


def inserting(sql: str, args: Any) -> bool:
    return sql.lstrip().upper().startswith("INSERT")


@asynccontextmanager
async def opened(tmp_path: Path, answer_timeout: float | None = None) -> AsyncIterator[SQLiteStore]:
    """A store on a new file; `answer_timeout`: how long its server process may be silent while ops wait."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}", answer_timeout=answer_timeout)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(tmp_path) as s:
        yield s


# -- the store ---------------------------------------------------------------------------------


async def test_an_update_that_landed_answers_the_record_it_made(store: SQLiteStore) -> None:
    await store.insert(record("a"))
    lost = LoseAnswer(store, updating_to(JobStatus.RUNNING))
    new = await store.update("a", {"status": JobStatus.RUNNING, "attempt": 1}, Guard(version=1))
    assert lost.fired.is_set()
    assert new is not None and (new.status, new.attempt, new.version) == (JobStatus.RUNNING, 1, 2)
    assert store._link is not None and store._link._proc is not None and store._link._proc.pid != lost.pid


async def test_an_update_that_another_write_beat_answers_none(store: SQLiteStore) -> None:
    """The guard failed in the server (another write came first): the read-back says so, as the answer would."""
    await store.insert(record("a"))
    await store.update("a", {"progress_message": "elsewhere"}, Guard(version=1))
    lost = LoseAnswer(store, updating_to(JobStatus.RUNNING))
    new = await store.update("a", {"status": JobStatus.RUNNING, "attempt": 1}, Guard(version=1))
    assert lost.fired.is_set() and new is None
    rec = await store.get("a")
    assert rec is not None and (rec.status, rec.version) == (JobStatus.PENDING, 2)


async def test_an_update_that_landed_with_values_read_back_changed_still_answers_that_it_landed(
    store: SQLiteStore,
) -> None:
    """A stage from a file name that is not UTF-8 (a lone surrogate) is stored as sent but read back made
    JSON-safe: compared decoded, the update was taken for a lost race, and the manager applied it again
    (review helper-52 F1)."""
    await store.insert(record("a"))
    lost = LoseAnswer(store, lambda sql, args: sql.lstrip().upper().startswith("UPDATE"))
    history = [{"stage": "file-\udcff.txt", "at": 1}]
    new = await store.update("a", {"current_stage": "x", "stage_history": history}, Guard(version=1))
    assert lost.fired.is_set()
    assert new is not None and new.version == 2


async def test_of_two_writes_alike_whose_answers_were_lost_one_is_told_it_won(store: SQLiteStore) -> None:
    """Both were sent at one version; exactly one matched in the server (review helper-52 F2)."""
    await store.insert(record("a"))
    lost = LoseAnswer(store, updating_to(JobStatus.RUNNING))
    claim = {"status": JobStatus.RUNNING, "attempt": 1, "owner": "me", "updated_at": 123}
    answers: list[Any] = []

    async def write() -> None:
        answers.append(await store.update("a", dict(claim), Guard(version=1)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        tg.start_soon(write)
    assert lost.fired.is_set()
    assert sorted(a is None for a in answers) == [False, True], answers


async def test_an_adoption_that_landed_answers_the_jobs_it_adopted(store: SQLiteStore) -> None:
    """Pending orphans adopted many at once (`adopt_pending`), the answer lost with the server process: the jobs
    it adopted are read back as ours and answered, and one another write had moved on is not."""
    for i in range(4):
        await store.insert(record(f"o{i}", owner="dead", created_at=i))
    found = await store.orphans(now=600)
    await store.update("o2", {"progress_message": "elsewhere"}, Guard(version=1))
    lost = LoseAnswer(store, lambda sql, args: sql.lstrip().startswith("UPDATE jobs SET owner"))
    adopted = await store.adopt_pending(found, "me", 7_000)
    assert lost.fired.is_set()
    assert [(r.id, r.owner, r.version) for r in adopted] == [("o0", "me", 2), ("o1", "me", 2), ("o3", "me", 2)]
    assert [await store.get(r.id) for r in adopted] == adopted
    o2 = await store.get("o2")
    assert o2 is not None and (o2.owner, o2.version) == ("dead", 2)


async def test_an_insert_that_landed_returns(store: SQLiteStore) -> None:
    """(One that did not land fails as before: test_sqlite.py's killed-server test.)"""
    lost = LoseAnswer(store, inserting)
    await store.insert(record("landed"))
    assert lost.fired.is_set() and await store.get("landed") is not None


async def test_an_update_sent_to_a_dead_process_still_fails_unavailable(store: SQLiteStore) -> None:
    """Sent, never read (the process was gone): not committed, so the caller is told, as for any failed write."""
    await store.insert(record("a"))
    link = store._link
    assert link is not None and link._proc is not None
    link._proc.kill()
    pending = store.update("a", {"progress_message": "x"}, Guard(version=1))
    with pytest.raises(AnswerLost):
        await pending
    rec = await store.get("a")
    assert rec is not None and (rec.version, rec.progress_message) == (1, None)


# -- what it cost the jobs ---------------------------------------------------------------------


@asynccontextmanager
async def serving(
    store: SQLiteStore, *tools: JobToolSpec, settings: Settings | None = None
) -> AsyncIterator[JobManager]:
    manager = JobManager(store, settings or Settings())
    make_source(manager, {spec.name: spec for spec in tools})
    async with manager:
        yield manager


def counting_tool(fail_first: bool = False) -> tuple[JobToolSpec, list[int]]:
    runs: list[int] = []

    async def work(job: JobContext) -> str:
        runs.append(job.attempt)
        if fail_first and len(runs) == 1:
            raise RuntimeError("first run fails")
        return "done"

    return make_spec(work, name="work", retry_safe=True, max_retries=2), runs


async def finished(manager: JobManager, job_id: str) -> Any:
    try:
        rec = await manager.wait(job_id, WAIT)
    except StoreUnavailable:  # a poll that the kill failed (the code before this fix): a caller polls again
        rec = await manager.wait(job_id, WAIT)
    assert rec.finished, f"the job is still {rec.status.value}, owned by {rec.owner}: {rec.progress_message}"
    return rec


async def test_a_claim_whose_answer_died_with_the_server_runs_its_job(store: SQLiteStore) -> None:
    spec, runs = counting_tool()
    async with serving(store, spec) as manager:
        lost = LoseAnswer(store, updating_to(JobStatus.RUNNING))
        job_id = await manager.create_job("work")
        rec = await finished(manager, job_id)
    assert lost.fired.is_set()
    assert (rec.status, runs, rec.attempt) == (JobStatus.COMPLETED, [1], 1)


async def test_a_retry_whose_answer_died_with_the_server_is_run(store: SQLiteStore) -> None:
    spec, runs = counting_tool(fail_first=True)
    fast = Settings(queue=JobQueueConfig(retry_policy=RetryPolicyConfig(initial_delay_ms=1, jitter=0)))
    async with serving(store, spec, settings=fast) as manager:
        lost = LoseAnswer(store, updating_to(JobStatus.PENDING))
        job_id = await manager.create_job("work")
        rec = await finished(manager, job_id)
    assert lost.fired.is_set()
    assert (rec.status, runs, rec.retry_count) == (JobStatus.COMPLETED, [1, 2], 1)


async def test_a_created_job_whose_insert_answer_died_is_created_and_runs(store: SQLiteStore) -> None:
    spec, runs = counting_tool()
    async with serving(store, spec) as manager:
        lost = LoseAnswer(store, inserting)
        job_id = await manager.create_job("work")  # before: StoreUnavailable, and the job stored, never run
        rec = await finished(manager, job_id)
    assert lost.fired.is_set()
    assert (rec.status, runs) == (JobStatus.COMPLETED, [1])


# -- a server that hangs ------------------------------------------------------------------------


def freeze(store: SQLiteStore) -> asyncio.subprocess.Process:
    """Stop (SIGSTOP) the store's current server process, as a debugger, a frozen container or a deadlock does."""
    link = store._link
    assert link is not None and link._proc is not None
    os.kill(link._proc.pid, signal.SIGSTOP)
    return link._proc


async def test_a_hung_server_process_is_replaced_and_no_call_waits_for_ever(tmp_path: Path) -> None:
    """Every call waited for ever before, a tool call and a poll alike. Now the process that answers nothing for
    the answer time-out is killed, and the calls are answered by the next one: a read at once, a write by what
    it did."""
    async with opened(tmp_path, 0.5) as store:
        await store.insert(record("a"))
        hung = freeze(store)
        with anyio.fail_after(WAIT):
            read = await store.get("a")
            again = freeze(store)
            with pytest.raises(AnswerLost):  # sent to the stopped process: never committed, so it fails
                await store.update("a", {"progress_message": "during"}, Guard(version=1))
            written = await store.update("a", {"progress_message": "after"}, Guard(version=1))
        assert read is not None and read.id == "a"
        assert written is not None and written.progress_message == "after"
        assert hung.returncode is not None and again.returncode is not None, "the hung processes are gone"


async def test_a_store_whose_server_hangs_still_closes(tmp_path: Path) -> None:
    async with opened(tmp_path, 0.5) as store:
        hung = freeze(store)
        with anyio.fail_after(WAIT):
            await store.close()
    assert hung.returncode is not None


async def test_a_server_hung_during_a_vacuum_is_replaced_after_ten_answer_time_outs(tmp_path: Path) -> None:
    """A VACUUM may be silent for long, but not for ever (review helper-52 F3: it turned the watch off)."""
    async with opened(tmp_path, 0.2) as store:
        await store.insert(record("a"))
        assert store._link is not None
        vacuum = store._link.submit(statement("VACUUM", False), (), VACUUM)  # what delete_finished sends
        hung = freeze(store)
        with anyio.fail_after(WAIT):
            assert await store.get("a") is not None
            with pytest.raises(AnswerLost):
                await vacuum
        assert hung.returncode is not None


def test_the_answer_time_out_outlasts_the_busy_time_out() -> None:
    """A write waiting out another process's lock is not a hang (the busy time-out, up to an hour)."""
    assert SQLiteStore("sqlite:///x.db").answer_timeout == 60
    assert SQLiteStore("sqlite:///x.db?busy_timeout=600").answer_timeout == 1210
    assert SQLiteStore("sqlite:///x.db?answer_timeout=900").answer_timeout == 900  # a huge file's VACUUM
