"""Two processes' managers on one store: a manager's remembered copy of a job it wrote never loses
another process's change (compare-and-set turns a stale copy into a re-read)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.store.test_contract import store  # noqa: F401  (the fixture)
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.errors import InvalidTransition, StaleWrite
from vibe_jobs.store import JobStore, open_store
from vibe_jobs.store.base import Guard

OK = {"content": [{"type": "text", "text": "ok"}], "isError": False}


@pytest.fixture
async def pair(store: JobStore) -> AsyncIterator[tuple[JobManager, JobManager]]:  # noqa: F811
    if store.url.startswith("memory"):
        pytest.skip("memory stores are not shared between processes")
    other = open_store(store.url)
    await other.open()
    try:
        yield JobManager(store, Settings(), owner="a"), JobManager(other, Settings(), owner="b")
    finally:
        await other.close()


async def test_a_change_made_elsewhere_is_kept_when_this_process_writes_next(
    pair: tuple[JobManager, JobManager],
) -> None:
    a, b = pair
    job_id = await a.create_job("echo", {"x": 1})
    await a.update_job_status(job_id, JobStatus.RUNNING)  # a remembers its running copy
    await b.add_diagnostic(job_id, "from b")  # b changes the job: a's copy is stale now
    await a.update_progress(job_id, 50, "half way", diagnostic="from a")
    rec = await a.set_job_result(job_id, OK, diagnostics=["done"])
    assert rec.diagnostics == ["from b", "from a", "done"]
    assert (await b.get_record(job_id)).diagnostics == ["from b", "from a", "done"]


async def test_a_job_finished_elsewhere_is_refused_here_not_overwritten(pair: tuple[JobManager, JobManager]) -> None:
    a, b = pair
    job_id = await a.create_job("echo")
    await a.update_job_status(job_id, JobStatus.RUNNING)
    await b.fail_job(job_id, "failed by b")
    with pytest.raises(InvalidTransition):
        await a.update_progress(job_id, 10)
    rec = await a.get_record(job_id)
    assert rec.status is JobStatus.FAILED and rec.progress_message == "Job failed: failed by b"


async def test_an_attempt_fence_holds_against_a_remembered_copy(pair: tuple[JobManager, JobManager]) -> None:
    a, b = pair
    job_id = await a.create_job("echo")
    await a.start_job(job_id)  # attempt 1 here, remembered
    await b.update_job_status(job_id, JobStatus.PENDING)  # requeued elsewhere ...
    assert (await b.start_job(job_id)).attempt == 2  # ... and claimed there as attempt 2
    # the remembered copy (attempt 1) must not refuse the running attempt's write ...
    assert (await a.update_progress(job_id, 50, attempt=2)).progress_percentage == 50
    # ... nor let the old attempt's write through
    with pytest.raises(StaleWrite):
        await a.set_job_result(job_id, OK, attempt=1)
    assert (await a.set_job_result(job_id, OK, attempt=2)).status is JobStatus.COMPLETED


async def test_two_claims_of_one_job_the_older_claimers_start_is_refused(pair: tuple[JobManager, JobManager]) -> None:
    """a claimed the job (attempt 1) but stalled past its lease; b adopted it, queued it again and claimed it
    (attempt 2). Whatever a then does with its stale claim is refused, whichever copy of the job it plans on:
    claiming it to start (the job is running, and b's), giving it back to the queue (fenced by attempt 1:
    what a late claimer writes instead of starting), reporting progress or an outcome as attempt 1."""
    a, b = pair
    job_id = await a.create_job("echo")
    assert (await a.start_job(job_id, owned=True)).attempt == 1  # a's claim, remembered by a
    await b.mutate(job_id, lambda rec: {"status": JobStatus.PENDING, "owner": "b"})  # b adopts it ...
    assert (await b.start_job(job_id, owned=True)).attempt == 2  # ... and claims it again
    with pytest.raises((InvalidTransition, StaleWrite)):
        await a.start_job(job_id, owned=True)
    attempt_1 = Guard(attempt=1, statuses=(JobStatus.RUNNING,))
    with pytest.raises(StaleWrite):
        await a.requeue(job_id, lambda rec: {"status": JobStatus.PENDING}, attempt_1)
    with pytest.raises(StaleWrite):
        await a.update_progress(job_id, 1, "tok:stale", attempt=1)
    with pytest.raises(StaleWrite):
        await a.set_job_result(job_id, OK, attempt=1)
    rec = await b.get_record(job_id)
    assert (rec.status, rec.owner, rec.attempt, rec.progress_message) == (JobStatus.RUNNING, "b", 2, None)
