"""The transition table: every one of the 25 (from, to) pairs, allowed or refused, and through the manager."""

from __future__ import annotations

import itertools

import pytest

from vibe_jobs.errors import InvalidParams, InvalidTransition, JobError, ResultAlreadySet
from vibe_jobs.manager import JobManager
from vibe_jobs.results import text_result
from vibe_jobs.states import ACTIVE, FINAL, TRANSITIONS, JobStatus, can_transition, check_transition

P, R, C, F, X = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)

# The specification of the state machine, written out independently of states.py.
ALLOWED = {
    (P, R),  # a worker picks the job up
    (P, X),  # cancelled before it ran
    (P, F),  # failed before it ran (dependency failed, timed out in the queue)
    (R, C),
    (R, F),
    (R, X),
    (R, P),  # a retry, or a requeue after a lost worker
}
ALL_PAIRS = list(itertools.product(JobStatus, repeat=2))


def test_the_pairs_cover_every_status_twice() -> None:
    assert len(ALL_PAIRS) == 25
    assert set(TRANSITIONS) == set(JobStatus)


def test_final_and_active_partition_the_statuses() -> None:
    assert set(JobStatus) == FINAL | ACTIVE
    assert not FINAL & ACTIVE
    assert [s for s in JobStatus if s.finished] == [C, F, X]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_transition(current: JobStatus, target: JobStatus) -> None:
    allowed = (current, target) in ALLOWED
    assert can_transition(current, target) is allowed
    if allowed:
        assert check_transition("job-1", current, target) is target
        return
    with pytest.raises(InvalidTransition) as info:
        check_transition("job-1", current, target)
    err = info.value
    assert err.code == "invalid_transition"
    assert err.job_id == "job-1"
    assert (err.current, err.target) == (current.value, target.value)
    assert str(err).startswith(f"Job 'job-1' cannot go from {current.value} to {target.value}")
    assert ("the job is finished" in str(err)) is current.finished


def test_invalid_transition_is_a_job_error() -> None:
    with pytest.raises(JobError):
        check_transition("j", C, R)


# -- through the manager --------------------------------------------------------------------


async def _job_in(manager: JobManager, status: JobStatus) -> str:
    job_id = await manager.create_job("echo", {"n": 1})
    if status is P:
        return job_id
    await manager.start_job(job_id)
    if status is C:
        await manager.set_job_result(job_id, text_result("done"))
    elif status is F:
        await manager.set_job_result(job_id, text_result("boom", is_error=True))
    elif status is X:
        await manager.cancel_job(job_id)
    return job_id


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
async def test_update_job_status_follows_the_table(manager: JobManager, current: JobStatus, target: JobStatus) -> None:
    job_id = await _job_in(manager, current)
    assert (await manager.get_record(job_id)).status is current
    if (current, target) in ALLOWED or (current is target and current in ACTIVE):
        # moving to the same active status is a progress update
        rec = await manager.update_job_status(job_id, target, "moved")
        assert rec.status is target
        assert rec.progress_message == "moved"
        return
    before = await manager.get_record(job_id)
    version, message = before.version, before.progress_message
    with pytest.raises(InvalidTransition) as info:
        await manager.update_job_status(job_id, target, "moved")
    assert job_id in str(info.value)
    assert current.value in str(info.value) and target.value in str(info.value)
    after = await manager.get_record(job_id)
    assert (after.status, after.version, after.progress_message) == (current, version, message)


@pytest.mark.parametrize("final", [C, F, X])
async def test_a_finished_job_cannot_go_back_to_running(manager: JobManager, final: JobStatus) -> None:
    job_id = await _job_in(manager, final)
    with pytest.raises(InvalidTransition, match=f"cannot go from {final.value} to running"):
        await manager.start_job(job_id)
    assert (await manager.get_job(job_id)).status is final


async def test_the_first_result_wins(manager: JobManager) -> None:
    job_id = await _job_in(manager, R)
    await manager.set_job_result(job_id, text_result("first"))
    with pytest.raises(ResultAlreadySet) as info:
        await manager.set_job_result(job_id, text_result("second", is_error=True))
    assert info.value.code == "result_already_set"
    assert info.value.job_id == job_id
    job = await manager.get_job(job_id)
    assert job.status is C
    assert job.result == text_result("first")


async def test_a_cancelled_job_keeps_its_cancellation_result(manager: JobManager) -> None:
    job_id = await _job_in(manager, X)
    with pytest.raises(ResultAlreadySet):
        await manager.set_job_result(job_id, text_result("late"))
    job = await manager.get_job(job_id)
    assert job.status is X
    assert job.result is not None and job.result["isError"] is True


@pytest.mark.parametrize("final", [C, F, X])
async def test_progress_on_a_finished_job_is_refused(manager: JobManager, final: JobStatus) -> None:
    job_id = await _job_in(manager, final)
    before = await manager.get_job(job_id)
    with pytest.raises(InvalidTransition, match="the job is finished"):
        await manager.update_progress(job_id, 10, "still going", stage="late", diagnostic="x")
    with pytest.raises(InvalidTransition):
        await manager.update_job_status(job_id, final, "again")
    assert await manager.get_job(job_id) == before


async def test_progress_must_be_a_percentage(manager: JobManager) -> None:
    job_id = await _job_in(manager, R)
    with pytest.raises(InvalidParams, match="progress must be between 0 and 100, got 101"):
        await manager.update_progress(job_id, 101)
    with pytest.raises(InvalidParams, match="sub_progress"):
        await manager.update_progress(job_id, 5, sub_progress=-1)
    with pytest.raises(InvalidParams, match="progress"):
        await manager.update_job_status(job_id, R, "x", progress=-0.5)
    assert (await manager.get_record(job_id)).progress_percentage is None
