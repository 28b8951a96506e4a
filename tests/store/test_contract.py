"""The JobStore contract: one suite, run against every store (a store that passes it is a store).

To add a store, add a kind to `STORE_KINDS` and a branch to `make_store`. PostgreSQL (`POSTGRES`) runs
in a fresh schema per test against VIBE_JOBS_TEST_POSTGRES_URL; it skips with a reason when that is
unset (and fails instead when VIBE_JOBS_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.pg import postgres_url, with_new_schema
from vibe_jobs.errors import DuplicateJob, StoreError
from vibe_jobs.models import (
    JobRecord,
    Priority,
    ResourceRequirements,
    TaskMetadata,
    TaskSpec,
)
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore, open_store
from vibe_jobs.store.base import UPDATABLE, Guard, JobQuery, QueueReading, waits_since
from vibe_jobs.store.sqlite import SQLiteStore

P, R, C, F, X = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED,
                 JobStatus.CANCELLED)  # fmt: skip

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
STORE_KINDS: list[Any] = ["memory", "sqlite", POSTGRES]


def make_store(kind: str, tmp_path: Path) -> JobStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    if kind == "postgres":
        # every test gets a schema of its own (dropped afterwards), so runs never collide
        return open_store(with_new_schema(postgres_url("the contract against PostgreSQL"), "vj_test"))
    raise AssertionError(f"unknown store kind {kind}")


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    s = make_store(request.param, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        if request.param == "postgres":
            await s.drop_schema()  # type: ignore[attr-defined]


_seq = iter(range(1_000_000))


def record(job_id: str | None = None, *, created_at: int = 1_000, status: JobStatus = P, **fields: Any) -> JobRecord:
    """A minimal record; `fields` set any other JobRecord field."""
    rec = JobRecord(
        id=job_id or f"job-{next(_seq):06d}-{os.urandom(3).hex()}", tool_name=fields.pop("tool_name", "echo"),
        params=fields.pop("params", {}), status=status, created_at=created_at,
        updated_at=fields.pop("updated_at", created_at),
    )  # fmt: skip
    for key, value in fields.items():
        setattr(rec, key, value)
    return rec


def full_record() -> JobRecord:
    """Every field set to a non-default value, with unicode and nested JSON."""
    task = TaskSpec(
        task_id="t-1", project_id="p-ü", operation_type="analysis", priority=Priority.HIGH,
        estimated_duration=1234, resource_requirements=ResourceRequirements(memory_mb=512, cpu_weight=2.5),
        dependencies=["a", "b"], metadata=TaskMetadata(session_id="s", retry_count=1, max_retries=3),
        timeout_seconds=9.5,
    )  # fmt: skip
    return JobRecord(
        id="job-full", tool_name="outil-é", params={"text": "héllo ✓ 日本", "n": [1, 2.5, None, True]},
        status=R, created_at=1_700_000_000_123, updated_at=1_700_000_000_456, version=3,
        progress_message="half way ½", progress_percentage=50.25,
        result={"content": [{"type": "text", "text": "ok ✓"}], "isError": False}, current_stage="stage 2",
        sub_progress=12.5, diagnostics=["d1", "d2 ü"], detail_metadata={"k": {"nested": [1, "x"]}},
        last_access_time=1_700_000_000_789, access_count=4, next_check_time=1_700_000_001_000, task=task,
        priority=2, dedupe_key="dk", owner="host:1:ab", attempt=2, retry_count=1, error_count=1,
        run_after=1_700_000_000_900, started_at=1_700_000_000_200, finished_at=None,
        cancel_requested="user asked", cpu_seconds=0.125, peak_memory_mb=33.5,
        waiting_for={"id": "q1", "method": "elicitation/create", "params": {"message": "Sûr ?"}, "askedAt": 5},
    )  # fmt: skip


# -- insert / get ---------------------------------------------------------------------------


async def test_insert_get_roundtrip_every_field(store: JobStore) -> None:
    rec = full_record()
    await store.insert(rec)
    assert await store.get(rec.id) == full_record()


async def test_insert_get_roundtrip_defaults(store: JobStore) -> None:
    rec = record("job-min", params={})
    await store.insert(rec)
    assert await store.get("job-min") == record("job-min", params={})


async def test_get_unknown_is_none(store: JobStore) -> None:
    assert await store.get("nope") is None


async def test_get_many_reads_the_jobs_given_whole_as_get_does(store: JobStore) -> None:
    """One read of many jobs by id (a list of schedules' last jobs): each job as `get` answers it, the ids not
    stored left out, an id given twice answered once, none given answered {}."""
    await insert_all(store, [full_record(), record("b", created_at=2, principal="bob"), record("c", created_at=3)])
    got = await store.get_many(["c", "job-full", "nope", "b", "c", "x\x00y"])
    assert got == {"job-full": full_record(), "b": await store.get("b"), "c": await store.get("c")}
    assert await store.get_many([]) == {} and await store.get_many({"nope"}) == {}
    many = [*(f"n{i}" for i in range(1500)), "c"]  # past a statement's parameters, were they one an id
    assert set(await store.get_many(many)) == {"c"}


async def test_get_many_of_a_principal_never_answers_another_principal_s_job(store: JobStore) -> None:
    """`principal` given: another principal's job is left out as an unknown one (a principal's list of its
    schedules reads their last jobs through it)."""
    await insert_all(store, [record("a1", principal="alice"), record("b1", principal="bob"), record("l1")])
    assert set(await store.get_many(["a1", "b1", "l1", "nope"], "alice")) == {"a1"}
    assert set(await store.get_many(["a1", "b1"], "bob")) == {"b1"}
    assert await store.get_many(["a1", "b1"], "carol") == {}
    assert await store.get_many(["a1"], "alice\x00") == {}
    assert set(await store.get_many(["a1", "b1", "l1"])) == {"a1", "b1", "l1"}  # no principal: any


async def test_get_many_views_leave_out_results_and_params_and_keep_the_jobs_whole(store: JobStore) -> None:
    """`whole` False: views without results and params, as `query`'s (a list of schedules shows only each last job's
    status); the jobs keep their results and params, and a view is never the base of a job's next version."""
    await insert_all(store, [full_record(), record("p", created_at=5, params={"blob": "x" * 10_000})])
    whole = await store.get_many(["job-full", "p"])
    views = await store.get_many(["job-full", "p"], whole=False)
    assert views == {k: replace(w, result=None, params={}) for k, w in whole.items()}
    changed = await store.update("job-full", {"progress_message": "later"})
    assert changed is not None and (changed.result, changed.params) == (full_record().result, full_record().params)


async def test_a_record_get_many_returned_never_changes_afterwards(store: JobStore) -> None:
    """The records rule of `store.base` holds for `get_many`'s records too."""
    await store.insert(record("snap", diagnostics=["first"]))
    got = (await store.get_many(["snap"]))["snap"]
    kept = copy.deepcopy(got)
    running = await store.update("snap", {"status": R, "attempt": 1, "diagnostics": ["first", "second"]})
    assert running is not None and running.version == 2
    assert got == kept and (got.status, got.version) == (P, 1)


async def test_duplicate_insert_refused(store: JobStore) -> None:
    await store.insert(record("dup", tool_name="first"))
    with pytest.raises(DuplicateJob, match="a job with id 'dup' exists already") as info:
        await store.insert(record("dup", tool_name="second"))
    assert info.value.job_id == "dup" and not info.value.transient  # inserting it again would fail again
    found = await store.get("dup")
    assert found is not None and found.tool_name == "first"
    got = await store.get("dup")
    assert got is not None and got.tool_name == "first"


# -- update (compare-and-set) ---------------------------------------------------------------


async def test_update_applies_changes_and_bumps_version(store: JobStore) -> None:
    await store.insert(record("u"))
    new = await store.update("u", {"status": R, "started_at": 5, "progress_percentage": 10.0, "owner": "me"})
    assert new is not None
    assert (new.status, new.started_at, new.progress_percentage, new.owner, new.version) == (R, 5, 10.0, "me", 2)
    got = await store.get("u")
    assert got is not None and got.version == 2 and got.status is R


async def test_update_json_fields(store: JobStore) -> None:
    await store.insert(record("j"))
    result = {"content": [{"type": "text", "text": "fini ✓"}], "isError": False}
    changes = {"result": result, "diagnostics": ["a", "b"], "detail_metadata": {"x": [1, {"y": None}]}}
    await store.update("j", changes)
    got = await store.get("j")
    assert got is not None
    assert (got.result, got.diagnostics, got.detail_metadata) == (result, ["a", "b"], {"x": [1, {"y": None}]})


async def test_a_question_is_stored_and_cleared(store: JobStore) -> None:
    await store.insert(record("q", status=R))
    question = {"id": "k", "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}
    await store.update("q", {"waiting_for": question})
    got = await store.get("q")
    assert got is not None and got.waiting_for == question
    await store.update("q", {"waiting_for": None})
    got = await store.get("q")
    assert got is not None and got.waiting_for is None


async def test_every_updatable_field_can_be_set(store: JobStore) -> None:
    await store.insert(record("all"))
    values: dict[str, Any] = {
        "status": F, "updated_at": 9, "progress_message": "m", "progress_percentage": 1.5, "result": {"a": 1},
        "current_stage": "s", "sub_progress": 2.5, "diagnostics": ["d"], "detail_metadata": {"m": 1},
        "owner": "o", "attempt": 3, "retry_count": 2, "error_count": 1, "run_after": 7, "started_at": 6,
        "finished_at": 8, "cancel_requested": "why", "cpu_seconds": 0.5, "peak_memory_mb": 9.5, "priority": 3,
        "waiting_for": {"id": "q", "answer": {"action": "decline"}},
        "stage_history": [{"stage": "s", "at": 5, "progress": 1.5}],
    }  # fmt: skip
    assert set(values) == UPDATABLE
    await store.update("all", values)
    got = await store.get("all")
    assert got is not None
    assert {k: getattr(got, k) for k in values} == values


async def test_version_increments_on_every_update(store: JobStore) -> None:
    await store.insert(record("v"))
    for expected in range(2, 6):
        new = await store.update("v", {"progress_percentage": float(expected)})
        assert new is not None and new.version == expected


async def test_stale_version_loses(store: JobStore) -> None:
    await store.insert(record("cas"))
    assert await store.update("cas", {"progress_message": "first"}, Guard(version=1)) is not None
    assert await store.update("cas", {"progress_message": "stale"}, Guard(version=1)) is None
    got = await store.get("cas")
    assert got is not None and (got.progress_message, got.version) == ("first", 2)


async def test_attempt_guard(store: JobStore) -> None:
    await store.insert(record("att", attempt=2))
    assert await store.update("att", {"progress_message": "old"}, Guard(attempt=1)) is None
    new = await store.update("att", {"progress_message": "cur"}, Guard(attempt=2))
    assert new is not None and new.progress_message == "cur"


async def test_status_guard(store: JobStore) -> None:
    await store.insert(record("st"))
    assert await store.update("st", {"status": C}, Guard(statuses={R})) is None
    assert await store.update("st", {"status": R}, Guard(statuses={P, R})) is not None
    assert await store.update("st", {"status": C}, Guard(version=2, attempt=0, statuses=[R])) is not None
    assert await store.update("st", {"status": F}, Guard(statuses=())) is None
    got = await store.get("st")
    assert got is not None and (got.status, got.version) == (C, 3)


async def test_update_unknown_job_is_none(store: JobStore) -> None:
    assert await store.update("ghost", {"status": R}) is None
    assert await store.update("ghost", {"status": R}, Guard(version=1)) is None


@pytest.mark.parametrize("field", ["id", "version", "tool_name", "params", "created_at", "task", "dedupe_key"])
async def test_only_updatable_fields(store: JobStore, field: str) -> None:
    await store.insert(record("fixed"))
    before = await store.get("fixed")
    assert before is not None
    before_version = before.version
    for _ in range(2):  # refused again once the store has seen the shape (a store may keep work per shape)
        with pytest.raises(StoreError, match=f"'{field}' cannot be updated"):
            await store.update("fixed", {"progress_message": "half applied?", field: "x"})
    got = await store.get("fixed")
    assert got is not None and got.version == before_version == 1 and got.progress_message is None


async def test_concurrent_writers_one_winner(store: JobStore) -> None:
    await store.insert(record("race"))
    outcomes = await asyncio.gather(
        *(store.update("race", {"progress_message": f"w{i}"}, Guard(version=1)) for i in range(50))
    )
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1
    got = await store.get("race")
    assert got is not None and got.version == 2 and got.progress_message == winners[0].progress_message


async def test_a_returned_record_never_changes_afterwards(store: JobStore) -> None:
    """The records rule of `store.base`: what a store hands out is a snapshot, whatever happens next."""
    await store.insert(record("snap", owner="me", diagnostics=["first"]))
    got = await store.get("snap")
    assert got is not None
    kept = copy.deepcopy(got)
    running = await store.update("snap", {"status": R, "attempt": 1, "diagnostics": ["first", "second"]})
    assert running is not None
    kept_running = copy.deepcopy(running)
    listed = await store.query(JobQuery())
    await store.touch("snap", 3, 5_000, 6_000)
    done = await store.update("snap", {"status": C, "result": {"ok": True}}, Guard(version=running.version))
    assert done is not None and done.status is C and done.access_count == 3
    await store.delete_finished(before=10**15)
    assert (got, running, listed) == (kept, kept_running, [kept_running])  # none of them moved
    assert (got.status, got.version, got.diagnostics) == (P, 1, ["first"])


async def test_touch_records_access_without_version(store: JobStore) -> None:
    await store.insert(record("t"))
    await store.touch("t", 3, 1_234, 5_678)
    got = await store.get("t")
    assert got is not None
    assert (got.access_count, got.last_access_time, got.next_check_time, got.version) == (3, 1_234, 5_678, 1)
    await store.touch("t", 4, 1_300, None)
    got = await store.get("t")
    assert got is not None and (got.access_count, got.next_check_time, got.version) == (4, None, 1)
    assert await store.update("t", {"progress_message": "x"}, Guard(version=1)) is not None
    await store.touch("ghost", 1, 1, 1)  # an unknown job is ignored


# -- query ----------------------------------------------------------------------------------


async def insert_all(store: JobStore, recs: list[JobRecord]) -> None:
    for rec in recs:
        await store.insert(rec)


async def test_query_newest_first_with_filters(store: JobStore) -> None:
    await insert_all(store, [
        record("a", created_at=10, tool_name="x"), record("b", created_at=20, tool_name="y"),
        record("c", created_at=30, tool_name="x", status=C), record("d", created_at=40, tool_name="y", status=R),
    ])  # fmt: skip

    async def ids(**kw: Any) -> list[str]:
        return [r.id for r in await store.query(JobQuery(**kw))]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(limit=2) == ["d", "c"]
    assert await ids(status=P) == ["b", "a"]
    assert await ids(status=C) == ["c"]
    assert await ids(status=F) == []
    assert await ids(tool_name="x") == ["c", "a"]
    assert await ids(tool_name="y", status=R) == ["d"]
    assert await ids(tool_name="z") == []


async def test_query_follows_status_changes(store: JobStore) -> None:
    await insert_all(store, [record("a", created_at=1), record("b", created_at=2)])
    await store.update("a", {"status": R})
    await store.update("a", {"status": C, "finished_at": 5})
    assert [r.id for r in await store.query(JobQuery(status=P))] == ["b"]
    assert [r.id for r in await store.query(JobQuery(status=R))] == []
    assert [r.id for r in await store.query(JobQuery(status=C))] == ["a"]


async def test_a_query_without_results_leaves_them_out_and_keeps_the_jobs_whole(store: JobStore) -> None:
    """`with_result=False`, for lists that do not show results (a page of 500 with results of up to 4 MiB each
    was gigabytes to read): every other field as stored, the result None; such a view is never the base of a
    job's next version, so the job keeps its result."""
    result = {"content": [{"type": "text", "text": "x" * 100_000}], "isError": False}
    await insert_all(store, [full_record(), record("done", created_at=2_000_000_000_000, status=C, result=result)])
    views = await store.query(JobQuery(with_result=False))
    whole = await store.query(JobQuery())
    assert [v.id for v in views] == ["done", "job-full"] == [w.id for w in whole]
    assert views == [replace(w, result=None) for w in whole]
    assert [w.result for w in whole] == [result, full_record().result]
    changed = await store.update("job-full", {"progress_message": "later"})  # a running job that holds a result
    assert changed is not None and changed.result == full_record().result
    done = await store.get("done")
    assert done is not None and done.result == result


async def test_a_query_without_params_leaves_them_out_and_keeps_the_jobs_whole(store: JobStore) -> None:
    """`with_params=False`, for lists that show no arguments (the dashboard's 50 newest jobs, of up to 1 MiB of
    arguments each, were up to 50 MiB to read for a page that shows none): every other field as stored, the
    params {}; such a view is never the base of a job's next version, so the job keeps its params."""
    params = {"blob": "x" * 100_000}
    await insert_all(store, [full_record(), record("big", created_at=2_000_000_000_000, params=params)])
    views = await store.query(JobQuery(with_result=False, with_params=False))
    whole = await store.query(JobQuery())
    assert [v.id for v in views] == ["big", "job-full"] == [w.id for w in whole]
    assert views == [replace(w, params={}, result=None) for w in whole]
    changed = await store.update("big", {"progress_message": "later"})
    assert changed is not None and changed.params == params
    assert [v.params for v in await store.query(JobQuery(with_params=False))] == [{}, {}]


async def test_before_cursor_pages_are_stable(store: JobStore) -> None:
    # several jobs share a millisecond and are inserted out of id order: the cursor must still
    # give each job exactly once, in (created_at, id) descending order
    recs = [record(f"{os.urandom(4).hex()}-{i}", created_at=100 + i // 4) for i in range(30)]
    await insert_all(store, recs)
    expected = sorted(((r.created_at, r.id) for r in recs), reverse=True)
    seen: list[tuple[int, str]] = []
    before: tuple[int, str] | None = None
    while page := await store.query(JobQuery(limit=7, before=before)):
        seen += [(r.created_at, r.id) for r in page]
        before = seen[-1]
        await store.insert(record(created_at=10_000))  # newer jobs do not disturb later pages
    assert seen == expected


async def test_before_cursor_with_filters(store: JobStore) -> None:
    recs = [record(f"f{i:02d}", created_at=i, tool_name="x" if i % 2 else "y") for i in range(20)]
    await insert_all(store, recs)
    page1 = await store.query(JobQuery(tool_name="x", limit=3))
    page2 = await store.query(JobQuery(tool_name="x", limit=3, before=(page1[-1].created_at, page1[-1].id)))
    assert [r.id for r in page1 + page2] == ["f19", "f17", "f15", "f13", "f11", "f09"]
    page = await store.query(JobQuery(status=P, limit=2, before=(5, "f05")))
    assert [r.id for r in page] == ["f04", "f03"]


# -- active, dedupe, counts -----------------------------------------------------------------


async def test_find_active_only_while_active(store: JobStore) -> None:
    await store.insert(record("k1", dedupe_key="key"))
    await store.insert(record("other", dedupe_key="other-key"))
    found = await store.find_active("key")
    assert found is not None and found.id == "k1"
    await store.update("k1", {"status": R})
    found = await store.find_active("key")
    assert found is not None and found.id == "k1"
    await store.update("k1", {"status": C, "finished_at": 2})
    assert await store.find_active("key") is None
    await store.insert(record("k2", dedupe_key="key", created_at=2_000))
    found = await store.find_active("key")
    assert found is not None and found.id == "k2"
    assert await store.find_active("missing") is None


async def test_an_insert_whose_dedupe_key_an_active_job_holds_stores_nothing(store: JobStore) -> None:
    """One active job per dedupe key, kept by the insert itself: equal calls at once each found no job and each
    stored one, in one process and across processes (review helper-60 F4)."""
    assert await store.insert(record("first", dedupe_key="k"))
    assert not await store.insert(record("second", dedupe_key="k"))
    assert await store.get("second") is None and (await store.counts())[P] == 1
    assert await store.insert(record("finished", dedupe_key="k", status=C, finished_at=1))  # only active jobs count
    await store.update("first", {"status": C, "finished_at": 2})
    assert await store.insert(record("third", dedupe_key="k"))
    found = await store.find_active("k")
    assert found is not None and found.id == "third"
    with pytest.raises(DuplicateJob):  # a taken id is still an error
        await store.insert(record("third"))


async def test_find_active_ignores_finished_insert(store: JobStore) -> None:
    await store.insert(record("done", dedupe_key="k", status=C, finished_at=1))
    assert await store.find_active("k") is None


async def test_active_oldest_first_and_by_owner(store: JobStore) -> None:
    await insert_all(store, [
        record("a", created_at=3, owner="o1"), record("b", created_at=1, owner="o2"),
        record("c", created_at=2, owner="o1", status=R), record("d", created_at=4, owner="o1", status=C),
        record("e", created_at=5, owner=None),
    ])  # fmt: skip
    assert sorted(r.id for r in await store.active()) == ["a", "b", "c", "e"]
    assert sorted(r.id for r in await store.active("o1")) == ["a", "c"]
    assert [r.id for r in await store.active("o2")] == ["b"]
    assert await store.active("nobody") == []


async def test_active_of_one_principal(store: JobStore) -> None:
    """A principal's own pending and running jobs, and nobody else's (the params quota sums
    them on every create: another principal's jobs must not be read for it)."""
    await insert_all(store, [
        record("a", created_at=3, principal="alice"), record("b", created_at=1, principal="bob"),
        record("c", created_at=2, principal="alice", status=R), record("d", created_at=4, principal="alice", status=C),
        record("e", created_at=5),
    ])  # fmt: skip
    assert sorted(r.id for r in await store.active(principal="alice")) == ["a", "c"]
    assert [r.id for r in await store.active(principal="bob")] == ["b"]
    assert await store.active(principal="nobody") == []
    with pytest.raises(ValueError, match="not both"):
        await store.active("o1", principal="alice")


async def test_active_in_creation_order(store: JobStore) -> None:
    await insert_all(store, [record(f"n{i}", created_at=i, owner=f"o{i % 2}") for i in range(6)])
    assert [r.id for r in await store.active()] == [f"n{i}" for i in range(6)]
    assert [r.id for r in await store.active("o1")] == ["n1", "n3", "n5"]


async def test_counts(store: JobStore) -> None:
    assert await store.counts() == dict.fromkeys(JobStatus, 0)
    await insert_all(store, [record("a"), record("b"), record("c", status=C), record("d", status=X)])
    await store.update("a", {"status": R})
    await store.update("b", {"status": F})
    assert await store.counts() == {P: 0, R: 1, C: 1, F: 1, X: 1}


# -- retention ------------------------------------------------------------------------------


async def test_delete_finished_only_old_finished(store: JobStore) -> None:
    await insert_all(store, [
        record("old-done", status=C, finished_at=100), record("old-failed", status=F, finished_at=150),
        record("old-cancel", status=X, finished_at=None, updated_at=120),  # no finished_at: updated_at counts
        record("new-done", status=C, finished_at=500), record("old-pending", updated_at=10),
        record("old-running", status=R, updated_at=10),
    ])  # fmt: skip
    deleted = await store.delete_finished(before=200)
    assert sorted(deleted) == ["old-cancel", "old-done", "old-failed"]
    for job_id in deleted:
        assert await store.get(job_id) is None
    assert await store.get("new-done") is not None
    assert sorted(r.id for r in await store.active()) == ["old-pending", "old-running"]
    assert await store.counts() == {P: 1, R: 1, C: 1, F: 0, X: 0}
    assert await store.delete_finished(before=200) == []


async def test_delete_finished_keeps_what_a_pending_job_depends_on(store: JobStore) -> None:
    """A finished dependency of a pending job outlives the retention: deleted, the dependent failed with "dependency
    ... no longer exists" though it had completed (review helper-60 F2, a dependent deferred past the retention)."""
    waits = TaskSpec(dependencies=["dep-done", "dep-failed"])
    await insert_all(store, [
        record("dep-done", status=C, finished_at=100), record("dep-failed", status=F, finished_at=100),
        record("other", status=C, finished_at=100), record("needy", task=waits),
        record("ran", status=R, task=TaskSpec(dependencies=["dep-of-running"])),
        record("dep-of-running", status=C, finished_at=100),
    ])  # fmt: skip
    assert sorted(await store.delete_finished(before=200)) == ["dep-of-running", "other"]
    assert await store.get("dep-done") is not None and await store.get("dep-failed") is not None
    await store.update("needy", {"status": X, "finished_at": 150})  # it no longer waits: its dependencies may go
    assert sorted(await store.delete_finished(before=200)) == ["dep-done", "dep-failed", "needy"]


async def test_delete_finished_respects_limit(store: JobStore) -> None:
    await insert_all(store, [record(f"d{i}", status=C, finished_at=i + 1) for i in range(10)])
    first = await store.delete_finished(before=1_000, limit=4)
    second = await store.delete_finished(before=1_000, limit=100)
    assert len(first) == 4 and len(second) == 6
    assert sorted(first + second) == sorted(f"d{i}" for i in range(10))
    assert await store.query(JobQuery()) == []


# -- leases ---------------------------------------------------------------------------------


async def test_heartbeat_release_orphans(store: JobStore) -> None:
    await insert_all(store, [
        record("mine", owner="alive", created_at=1), record("lost", owner="dead", status=R, created_at=2),
        record("nobody", owner=None, created_at=3), record("done", owner="dead", status=C, created_at=4),
    ])  # fmt: skip
    await store.heartbeat("alive", expires_at=1_000)
    await store.heartbeat("dead", expires_at=500)
    assert [r.id for r in await store.orphans(now=600)] == ["lost", "nobody"]
    assert [r.id for r in await store.orphans(now=400)] == ["nobody"]
    await store.heartbeat("dead", expires_at=2_000)  # renewed
    assert [r.id for r in await store.orphans(now=600)] == ["nobody"]
    assert [r.id for r in await store.orphans(now=1_000)] == ["mine", "nobody"]  # expiry is exclusive
    await store.release("dead")
    assert [r.id for r in await store.orphans(now=600)] == ["lost", "nobody"]
    await store.release("never-seen")  # no error


async def test_orphans_of_some_tools_are_read_and_the_others_counted(store: JobStore) -> None:
    """Recovery reads only the orphans it adopts: those of its tools, and pending ones whose cancel was asked
    (any process ends them). The others wait for a process that has their tool and are only counted, by tool:
    a running one whose cancel was asked too (its tool ends what its run left), and not the caller's own."""
    await insert_all(store, [
        record("mine", tool_name="here", owner="dead", created_at=1),
        record("mine-running", tool_name="here", owner="dead", status=R, created_at=2),
        record("cancel-asked", tool_name="there", owner="dead", cancel_requested="stop", created_at=3),
        record("running-cancel-asked", tool_name="there", owner="dead", status=R, cancel_requested="stop",
               created_at=4),
        record("nobodys", tool_name="there", owner=None, created_at=5),
        record("other", tool_name="elsewhere", owner="dead", created_at=6),
        record("own", tool_name="elsewhere", owner="me", created_at=7),  # the caller's heartbeat came late
        record("alive", tool_name="there", owner="alive", created_at=8),
        record("done", tool_name="there", owner="dead", status=C, created_at=9),
    ])  # fmt: skip
    await store.heartbeat("alive", expires_at=1_000)
    many = ["here", *(f"tool-{i}" for i in range(20_000))]  # a proxy's tools: one parameter, however many
    for tools in (["here"], many):
        assert [r.id for r in await store.orphans(600, tools)] == ["mine", "mine-running", "cancel-asked"]
        assert await store.orphans_left(600, tools, "me") == {"there": 2, "elsewhere": 1}
    assert await store.orphans_left(600, ["here"], "someone") == {"there": 2, "elsewhere": 2}
    assert [r.id for r in await store.orphans(600, [])] == ["cancel-asked"]
    assert await store.orphans_left(600, ["here", "there", "elsewhere"], "me") == {}
    assert len(await store.orphans(600)) == 7  # no filter: every orphan, as before
    assert await store.orphans_left(1_000, ["here"], "me") == {"there": 3, "elsewhere": 1}  # alive's lease ended


async def test_the_queue_of_a_shared_store_is_read_by_priority_with_its_longest_wait(store: JobStore) -> None:
    """`pending_by_priority` (SQLite and PostgreSQL: the queue every process on the store feeds): pending jobs by
    rank, each rank's longest wait by `waits_since` (from creation or run_after, whichever is later; a job deferred
    past now waits not yet); running and finished jobs are no queue."""
    if not isinstance(store, QueueReading):
        pytest.skip("a store no process shares: the runner's own queue is the queue")
    await insert_all(store, [
        record("high-old", priority=3, created_at=100),
        record("high-new", priority=3, created_at=300),
        record("low-run-after", priority=1, created_at=50, run_after=400),
        record("low-deferred", priority=1, created_at=10, run_after=10_000),
        record("critical-deferred", priority=4, created_at=20, run_after=9_000),
        record("running", priority=2, status=R, created_at=1),
        record("done", priority=2, status=C, created_at=1),
    ])  # fmt: skip
    rows = {rank: (count, since) for rank, count, since in await store.pending_by_priority(1_000)}
    assert rows == {3: (2, 100), 1: (2, 400), 4: (1, None)}
    assert rows[1][1] == waits_since(50, 400, 1_000) and waits_since(10, 10_000, 1_000) is None


async def test_the_orphans_left_of_one_program_are_read_by_their_owner_ids(store: JobStore) -> None:
    """`orphans_of_program`: of the orphans `orphans_left` counts, those whose owner id starts `program@` (not a
    program whose name it only starts with, nor an owner id of no program), in creation order."""
    await insert_all(store, [
        record("mine", tool_name="gone", owner="prog@host:1:aa", created_at=1),
        record("mine-running", tool_name="gone", owner="prog@host:2:bb", status=R, created_at=2),
        record("mine-cancel-asked", tool_name="gone", owner="prog@host:1:aa", cancel_requested="stop", created_at=3),
        record("mine-of-a-tool-here", tool_name="here", owner="prog@host:1:aa", created_at=4),
        record("longer-program", tool_name="gone", owner="prog-2@host:1:aa", created_at=5),
        record("no-program", tool_name="gone", owner="prog", created_at=6),
        record("nobodys", tool_name="gone", owner=None, created_at=7),
        record("own", tool_name="gone", owner="prog@me", created_at=8),  # the caller's heartbeat came late
        record("alive", tool_name="gone", owner="prog@alive", created_at=9),
        record("done", tool_name="gone", owner="prog@host:1:aa", status=C, created_at=10),
    ])  # fmt: skip
    await store.heartbeat("prog@alive", expires_at=1_000)
    found = await store.orphans_of_program(600, ["here"], "prog@me", "prog")
    assert [r.id for r in found] == ["mine", "mine-running"]
    assert [r.id for r in await store.orphans_of_program(600, ["here"], "prog@me", "prog-2")] == ["longer-program"]
    assert await store.orphans_of_program(600, ["here", "gone"], "prog@me", "prog") == []


async def test_a_lease_never_moves_back(store: JobStore) -> None:
    """A process's renewals race (its maintenance beat and its claim round renew concurrently; a write
    retried across a reconnect commits late): one that lands after a later one must not set the lease
    back, or another process adopts jobs this one still holds (and starts) in the gap."""
    await insert_all(store, [record("held", owner="w", status=R)])
    await store.heartbeat("w", expires_at=2_000)
    await store.heartbeat("w", expires_at=1_000)  # the older renewal, committed last
    assert await store.orphans(now=1_500) == []
    assert [r.id for r in await store.orphans(now=2_000)] == ["held"]


# -- adopting pending orphans many at once ---------------------------------------------------


async def test_adopt_pending_adopts_the_pending_orphans_at_the_version_read(store: JobStore) -> None:
    await insert_all(store, [record(f"o{i}", owner="dead", created_at=i) for i in range(5)])
    await store.update("o3", {"progress_message": "moved once"}, Guard(version=1))  # read at version 2 below
    found = await store.orphans(now=600)
    adopted = await store.adopt_pending(list(reversed(found)), "me", 7_000)
    assert [r.id for r in adopted] == ["o4", "o3", "o2", "o1", "o0"]  # in the order given
    for rec, was in zip(adopted, reversed(found), strict=True):
        assert (rec.owner, rec.updated_at, rec.version, rec.status) == ("me", 7_000, was.version + 1, P)
        assert rec == replace(was, owner="me", updated_at=7_000, version=was.version + 1)  # nothing else changed
        assert await store.get(rec.id) == rec
    assert (await store.counts())[P] == 5
    await store.heartbeat("me", expires_at=1_000)
    assert await store.orphans(now=600) == []  # ours now


async def test_a_job_changed_since_it_was_read_is_not_adopted_nor_answered(store: JobStore) -> None:
    await insert_all(store, [record(f"o{i}", owner="dead", created_at=i) for i in range(4)])
    found = await store.orphans(now=600)
    other = await store.adopt_pending([found[1]], "another", 6_000)  # another process, first
    assert [r.id for r in other] == ["o1"]
    started = await store.update("o2", {"status": R, "attempt": 1, "owner": "claimer"}, Guard(version=1))
    assert started is not None
    adopted = await store.adopt_pending(found, "me", 7_000)
    assert [r.id for r in adopted] == ["o0", "o3"]
    o1, o2 = await store.get("o1"), await store.get("o2")
    assert o1 is not None and (o1.owner, o1.updated_at, o1.version) == ("another", 6_000, 2)  # left alone
    assert o2 == started


async def test_adopt_pending_takes_only_pending_jobs_without_a_cancel_each_once(store: JobStore) -> None:
    await insert_all(store, [
        record("p", owner="dead"), record("r", owner="dead", status=R),
        record("c", owner="dead", cancel_requested="stop"),
    ])  # fmt: skip
    by_id = {rec.id: rec for rec in await store.orphans(now=600)}
    p, r, c = by_id["p"], by_id["r"], by_id["c"]
    for bad in ([p, r], [c], [p, p]):
        with pytest.raises(ValueError, match="adopt_pending"):
            await store.adopt_pending(bad, "me", 7_000)
    assert [(j.owner, j.version) for j in await store.orphans(now=600)] == [("dead", 1)] * 3  # nothing changed
    assert await store.adopt_pending([], "me", 7_000) == []
    gone = record("never-stored")
    assert await store.adopt_pending([gone], "me", 7_000) == []


async def test_two_adopters_at_once_adopt_each_job_exactly_once(store: JobStore) -> None:
    """Two processes recover the same orphans at the same moment, each given them in another order (on
    PostgreSQL its own pool and transactions, on SQLite its own server process): every job is adopted by one of
    them, once (its version moved by one), and each answers exactly the jobs it won."""
    twin = await another_on(store)
    try:
        await insert_all(store, [record(f"o{i:04d}", owner="dead", created_at=i) for i in range(600)])
        found = await store.orphans(now=600)
        assert found == await twin.orphans(now=600)
        a, b = await asyncio.gather(
            store.adopt_pending(found, "a", 7_000), twin.adopt_pending(list(reversed(found)), "b", 7_001)
        )
        won = {rec.id: "a" for rec in a} | {rec.id: "b" for rec in b}
        assert len(won) == len(a) + len(b) == 600  # no job adopted twice, none left
        for rec in await store.active():
            assert (rec.owner, rec.version) == (won[rec.id], 2)
    finally:
        if twin is not store:
            await twin.close()


async def another_on(store: JobStore) -> JobStore:
    """Another store on the same jobs, as another process opens it (the memory store: itself)."""
    if isinstance(store, MemoryStore):
        return store
    twin = open_store(store.url)
    await twin.open()
    return twin


async def test_learned_durations_are_saved_and_replaced_by_key(store: JobStore) -> None:
    assert await store.load_durations() == {}
    await store.save_durations({"echo": (3, 120.5, "[100, 120, 140]"), "echo|analysis": (1, 9.0, "[9]")}, 1_000)
    await store.save_durations({"echo": (4, 130.0, "[100, 120, 140, 160]")}, 2_000)
    assert await store.load_durations() == {
        "echo": (4, 130.0, "[100, 120, 140, 160]"),
        "echo|analysis": (1, 9.0, "[9]"),
    }
