"""JobManager: creating, updating, finishing, listing, cancelling and counting jobs (every store, fake clock)."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, ManagerFactory, stored_ids
from vibe_jobs.errors import (
    InvalidParams,
    InvalidTask,
    InvalidTransition,
    JobNotFound,
    ParamsTooLarge,
    UnknownDependency,
)
from vibe_jobs.manager import MAX_DIAGNOSTICS, JobManager
from vibe_jobs.models import TaskSpec
from vibe_jobs.results import canonical_json, json_size, text_result
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore, open_store

pytestmark = pytest.mark.every_store

HEX128 = re.compile(r"[0-9a-f]{32}")


# -- creation --------------------------------------------------------------------------------


async def test_create_job_stores_a_pending_job(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo", {"text": "hi"})
    job = await manager.get_job(job_id)
    assert job.id == job_id
    assert (job.tool_name, job.params, job.status) == ("echo", {"text": "hi"}, JobStatus.PENDING)
    assert job.created_at == job.updated_at == clock.ms
    assert (job.access_count, job.result, job.progress_percentage) == (0, None, None)


async def test_job_ids_are_128_bit_hex_and_unique(manager: JobManager) -> None:
    ids = [await manager.create_job("echo", {"same": "params"}) for _ in range(500)]
    assert all(HEX128.fullmatch(job_id) for job_id in ids)
    assert len(set(ids)) == 500


async def test_params_are_copied(manager: JobManager) -> None:
    params: dict[str, Any] = {"a": 1}
    job_id = await manager.create_job("echo", params)
    params["a"] = 2
    assert (await manager.get_job(job_id)).params == {"a": 1}


async def test_no_params_is_an_empty_object(manager: JobManager) -> None:
    assert (await manager.get_job(await manager.create_job("echo"))).params == {}


def _circular() -> dict[str, Any]:
    params: dict[str, Any] = {"a": []}
    params["a"].append(params)
    return params


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"when": object()}, "JSON-serialisable"),
        ({"tags": {"a", "b"}}, "JSON-serialisable"),
        ({"x": math.nan}, "JSON-serialisable"),
        ({"x": math.inf}, "JSON-serialisable"),
        ({"raw": b"bytes"}, "JSON-serialisable"),
        (_circular(), "JSON-serialisable: Circular reference"),
        ({"s": "\ud800"}, "JSON-serialisable"),  # a lone surrogate has no UTF-8 form
        # where, once nested (a NaN in a pydantic model argument's float field was named nowhere: helper-113)
        ({"shape": {"x": math.nan}}, r"Out of range float values .* \(at params\.shape\.x\)$"),
        ({"a": [1, {"b": "\ud800"}]}, r"surrogates not allowed \(at params\.a\[1\]\.b\)$"),
        ({"k": {1: 2, "z": object()}}, r"not JSON serializable \(at params\.k\.z\)$"),
        ([1, 2, 3], "params must be an object, not list"),
        ("text", "params must be an object, not str"),
    ],
)
async def test_params_must_be_a_json_object(manager: JobManager, store: JobStore, params: Any, words: str) -> None:
    with pytest.raises(InvalidParams, match=words) as info:
        await manager.create_job("echo", params)
    assert info.value.code == "invalid_params"
    assert await stored_ids(store) == []


@pytest.mark.parametrize("tool_name", ["", None, 42])
async def test_tool_name_must_be_a_non_empty_string(manager: JobManager, tool_name: Any) -> None:
    with pytest.raises(InvalidParams, match="tool_name"):
        await manager.create_job(tool_name, {})


async def test_oversized_params_are_refused_with_size_and_limit(make_manager: ManagerFactory) -> None:
    manager = make_manager(settings=Settings(max_params_bytes=64))
    fits = {"x": "a" * 56}
    assert len(canonical_json(fits).encode()) == 64
    await manager.create_job("echo", fits)  # exactly the limit is fine

    big = {"x": "é" * 40}  # counted in UTF-8 bytes: 8 + 80 = 88
    with pytest.raises(ParamsTooLarge) as info:
        await manager.create_job("echo", big)
    err = info.value
    assert (err.size, err.limit) == (88, 64)
    assert "88" in str(err) and "64" in str(err)
    assert str(err) == "params are 88 bytes serialised; the limit is 64 bytes"
    assert isinstance(err, InvalidParams) and err.code == "params_too_large"
    assert len(await stored_ids(manager.store)) == 1


def _encoded_size(value: Any) -> int:
    return len(canonical_json(value).encode())


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"i": 1},
        {"a": "text", "b": -12, "c": True, "d": False, "e": None},
        {"quote": 'say "hi"\\ \n\t\x01\x7f', 'key "\\\n': "v"},  # escapes: measured as written
        {"big": 10**40, "zero": 0},
        {"f": 1.5, "u": "é", "é": 1, 1: "an int key", "n": [1, {"a": None}], "s": JobStatus.RUNNING},
        {f"k{i}": i for i in range(20)},  # past the flat fast path
        [1, "two"],
        "text",
    ],
)
def test_json_size_is_the_utf8_size_of_the_canonical_json(value: Any) -> None:
    assert json_size(value) == _encoded_size(value)


@pytest.mark.parametrize(
    "value", [{"x": math.nan}, {"x": object()}, {"s": "\ud800"}, {"k\ud800": 1}, {"x": 10**5000}, _circular()]
)
def test_json_size_refuses_what_the_encoder_refuses(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        _encoded_size(value)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        json_size(value)


async def test_params_one_byte_over_the_limit_are_refused(make_manager: ManagerFactory) -> None:
    manager = make_manager(settings=Settings(max_params_bytes=64))
    with pytest.raises(ParamsTooLarge, match="params are 65 bytes serialised; the limit is 64 bytes"):
        await manager.create_job("echo", {"x": "a" * 57})  # measured without being encoded


async def test_unknown_dependency_is_refused(manager: JobManager, store: JobStore) -> None:
    first = await manager.create_job("echo")
    ok = await manager.create_job("echo", task=TaskSpec(dependencies=[first]))
    assert (await manager.get_job(ok)).dependencies == [first]
    with pytest.raises(UnknownDependency, match="'nope' names no known job"):
        await manager.create_job("echo", task=TaskSpec(dependencies=[first, "nope"]))
    assert len(await stored_ids(store)) == 2


async def test_task_fields_are_kept(manager: JobManager) -> None:
    spec = TaskSpec.model_validate({"priority": "critical", "operationType": "analysis", "estimatedDuration": 9})
    job = await manager.get_job(await manager.create_job("analyse", {"p": 1}, task=spec))
    assert (job.priority, job.operation_type, job.estimated_duration) == ("critical", "analysis", 9)
    assert (await manager.get_record(job.id)).priority == 3


async def test_create_task_job_is_the_issues_name_for_a_task_job(manager: JobManager) -> None:
    """Issue 4 names `JobManager.create_task_job(tool_name, params, spec)`: the same job as create_job(task=)."""
    spec = TaskSpec.model_validate({"priority": "high", "taskId": "t-7", "dependencies": []})
    job = await manager.get_job(await manager.create_task_job("analyse", {"p": 1}, spec))
    assert (job.tool_name, job.params, job.priority, job.task_id) == ("analyse", {"p": 1}, "high", "t-7")


async def test_a_task_job_spec_may_be_the_specifications_mapping(manager: JobManager) -> None:
    """The specification creates a task job with a plain object of TaskJob fields (camelCase); issue 4's
    `create_task_job(tool_name, params, spec)` and issue 2's `create_job(..., task=)` take that mapping too (it
    raised AttributeError: 'dict' object has no attribute 'deadline'), snake_case keys as well; a bad value is
    refused naming its field, and no job is stored."""
    dep = await manager.create_job("setup", {})
    spec = {
        "taskId": "TSK-001",
        "projectId": "PRJ-001",
        "operationType": "decomposition",
        "priority": "high",
        "estimatedDuration": 300000,
        "resourceRequirements": {"memoryMB": 512, "cpuWeight": 2},
        "dependencies": [dep],
        "metadata": {"sessionId": "session-123", "retryCount": 0, "maxRetries": 3},
    }
    job = await manager.get_job(await manager.create_task_job("vibe-task-manager", {"a": 1}, spec))
    wire = job.wire()
    assert {k: wire[k] for k in ("taskId", "projectId", "operationType", "priority", "estimatedDuration")} == {
        "taskId": "TSK-001",
        "projectId": "PRJ-001",
        "operationType": "decomposition",
        "priority": "high",
        "estimatedDuration": 300000,
    }
    assert (wire["resourceRequirements"]["memoryMB"], wire["resourceRequirements"]["cpuWeight"]) == (512, 2)
    meta = wire["metadata"]
    assert (wire["dependencies"], meta["sessionId"], meta["maxRetries"]) == ([dep], "session-123", 3)

    snake = await manager.get_job(await manager.create_job("x", {}, task={"priority": "critical", "task_id": "t-9"}))
    assert (snake.priority, snake.task_id) == ("critical", "t-9")

    before = await stored_ids(manager.store)
    with pytest.raises(ValueError, match="priority"):
        await manager.create_task_job("x", {}, {"priority": "urgent"})
    assert await stored_ids(manager.store) == before


async def test_the_settings_store_url_is_the_managers_store(tmp_path: Path) -> None:
    """Issue 2's settings carry VIBE_JOBS_STORE, issue 5 makes SQLite the default: a JobManager given only settings
    keeps its jobs in the store they name (it kept them in memory, lost at exit); no settings: memory."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with JobManager(settings=Settings.from_env({"VIBE_JOBS_STORE": url})) as first:
        job_id = await first.create_job("echo", {"text": "kept"})
    async with JobManager(open_store(url)) as second:
        assert (await second.get_job(job_id)).params == {"text": "kept"}
    assert isinstance(JobManager().store, MemoryStore)


# -- dedupe ----------------------------------------------------------------------------------


async def test_dedupe_returns_the_active_job(manager: JobManager) -> None:
    first = await manager.create_job("echo", {"a": 1, "b": [1, 2]}, dedupe=True)
    same = await manager.create_job("echo", {"b": [1, 2], "a": 1}, dedupe=True)  # key order does not matter
    assert same == first
    await manager.start_job(first)
    assert await manager.create_job("echo", {"a": 1, "b": [1, 2]}, dedupe=True) == first  # still while running

    assert await manager.create_job("echo", {"a": 2, "b": [1, 2]}, dedupe=True) != first
    assert await manager.create_job("other", {"a": 1, "b": [1, 2]}, dedupe=True) != first
    assert await manager.create_job("echo", {"a": 1, "b": [1, 2]}) != first  # dedupe is opt-in


async def test_equal_calls_at_once_share_one_job(make_manager: ManagerFactory, store: JobStore) -> None:
    """Two managers on one store (two processes), ten equal calls each at once: one job. Before, each call found no
    job and each stored one (review helper-60 F4: 15 of 20 pairs across two servers made two active jobs)."""
    managers = (make_manager(), make_manager())
    ids = await asyncio.gather(*(m.create_job("echo", {"a": 1}, dedupe=True) for m in managers for _ in range(10)))
    assert len(set(ids)) == 1
    assert [rec.id for rec in await store.active()] == [ids[0]]


@pytest.mark.parametrize("finish", ["completed", "failed", "cancelled"])
async def test_dedupe_gives_a_new_job_once_the_old_one_finished(manager: JobManager, finish: str) -> None:
    first = await manager.create_job("echo", {"a": 1}, dedupe=True)
    await manager.start_job(first)
    if finish == "cancelled":
        await manager.cancel_job(first)
    else:
        await manager.set_job_result(first, text_result("x", is_error=finish == "failed"))
    second = await manager.create_job("echo", {"a": 1}, dedupe=True)
    assert second != first
    assert (await manager.get_job(second)).status is JobStatus.PENDING
    assert await manager.create_job("echo", {"a": 1}, dedupe=True) == second


# -- updates ---------------------------------------------------------------------------------


async def test_update_job_status_starts_and_reports_progress(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo")
    clock.advance(2)
    rec = await manager.update_job_status(job_id, "running", "warming up", progress=5)
    assert (rec.status, rec.progress_message, rec.progress_percentage) == (JobStatus.RUNNING, "warming up", 5.0)
    assert rec.started_at == rec.updated_at == clock.ms
    assert rec.attempt == 1
    clock.advance(1)
    rec = await manager.update_job_status(job_id, JobStatus.RUNNING, progress=40)
    assert (rec.progress_message, rec.progress_percentage) == ("warming up", 40.0)  # message kept
    assert rec.started_at == clock.ms - 1000 and rec.updated_at == clock.ms
    assert rec.attempt == 1  # a progress update is not a new attempt


async def test_get_job_result_always_says_progress_from_0_to_100(manager: JobManager) -> None:
    """DESIGN.md's JobStatusMessage has `progress (0-100)`: it was left out until the job first reported one, and a
    reader of `msg["progress"]` on a pending or quiet running job got a KeyError."""
    job_id = await manager.create_job("echo")
    seen = [(await manager.poll(job_id)).model_dump(by_alias=True, exclude_none=True)["progress"]]
    await manager.update_job_status(job_id, "running")
    seen.append((await manager.status_message(job_id)).model_dump(by_alias=True, exclude_none=True)["progress"])
    await manager.set_job_result(job_id, {"content": [], "isError": False})
    seen.append((await manager.status_message(job_id)).model_dump(by_alias=True, exclude_none=True)["progress"])
    assert seen == [0, 0, 100]


async def test_update_progress_details(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    await manager.update_progress(job_id, 10, "step 1", stage="parse", sub_progress=50, metadata={"files": 3})
    await manager.update_progress(job_id, 20, stage="index", diagnostic="slow disk", metadata={"lines": 9})
    await manager.update_progress(job_id, None, sub_progress=0, metadata={"files": 4})
    job = await manager.get_job(job_id)
    assert job.progress_percentage == 20 and job.progress_message == "step 1"
    assert job.details is not None
    assert job.details.current_stage == "index"
    assert job.details.sub_progress == 0
    assert job.details.diagnostics == ["slow disk"]
    assert job.details.metadata == {"files": 4, "lines": 9}  # merged, later values win
    wire = job.wire()["details"]
    assert wire == {
        "currentStage": "index",
        "diagnostics": ["slow disk"],
        "subProgress": 0.0,
        "metadata": {"files": 4, "lines": 9},
    }


async def test_a_completed_job_is_done_with_its_last_stage_a_failed_one_stays_where_it_stopped(
    manager: JobManager,
) -> None:
    """A finished map-codebase job read `currentStage: render, subProgress: 0`, as if stuck at its last stage."""
    staged, failed, plain = [await manager.create_job("echo") for _ in range(3)]
    for job_id in (staged, failed, plain):
        await manager.start_job(job_id)
    for job_id in (staged, failed):
        await manager.update_progress(job_id, 97, "rendering", stage="render", sub_progress=0)
    await manager.set_job_result(staged, {"content": [], "isError": False})
    await manager.set_job_result(failed, {"content": [], "isError": True})
    await manager.set_job_result(plain, {"content": [], "isError": False})
    done, stopped, bare = [(await manager.get_job(j)).details for j in (staged, failed, plain)]
    assert done is not None and (done.current_stage, done.sub_progress) == ("render", 100)
    assert stopped is not None and (stopped.current_stage, stopped.sub_progress) == ("render", 0)
    assert bare is None or bare.sub_progress is None  # no stage reported: none made up


async def test_diagnostics_are_appended_and_bounded(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    for i in range(MAX_DIAGNOSTICS + 25):
        await manager.add_diagnostic(job_id, f"d{i}")
    diagnostics = (await manager.get_record(job_id)).diagnostics
    assert diagnostics is not None
    assert len(diagnostics) == MAX_DIAGNOSTICS == 100
    assert diagnostics[0] == "d25" and diagnostics[-1] == f"d{MAX_DIAGNOSTICS + 24}"  # the newest are kept


async def test_every_stored_change_bumps_the_version(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    versions = [(await manager.get_record(job_id)).version]
    for change in (
        manager.start_job(job_id),
        manager.update_progress(job_id, 50),
        manager.set_job_result(job_id, text_result("ok")),
    ):
        versions.append((await change).version)
    assert versions == [1, 2, 3, 4]


# -- results ---------------------------------------------------------------------------------


async def test_set_job_result_completes(manager: JobManager, clock: FakeClock) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    await manager.update_progress(job_id, 30, "working")
    clock.advance(3)
    result = text_result("hello", structured={"greeting": "hello"})
    rec = await manager.set_job_result(job_id, result)
    assert rec.status is JobStatus.COMPLETED
    assert rec.result == result
    assert (rec.progress_percentage, rec.progress_message) == (100.0, "Job completed")
    assert rec.finished_at == clock.ms and rec.finished_at - (rec.started_at or 0) == 3000


async def test_set_job_result_with_is_error_fails(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    await manager.update_progress(job_id, 30)
    rec = await manager.set_job_result(job_id, text_result("disk full", is_error=True))
    assert rec.status is JobStatus.FAILED
    assert rec.result == text_result("disk full", is_error=True)
    assert rec.progress_message == "Job failed: disk full"
    assert rec.progress_percentage == 30  # a failure does not claim 100 %
    assert rec.finished_at is not None


async def test_a_pending_job_can_fail_but_not_complete(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    with pytest.raises(InvalidTransition, match="cannot go from pending to completed"):
        await manager.set_job_result(job_id, text_result("too soon"))
    assert (await manager.get_record(job_id)).result is None
    rec = await manager.set_job_result(job_id, {"content": [], "isError": True})
    assert rec.status is JobStatus.FAILED
    assert rec.progress_message == "Job failed: the tool reported an error"


async def test_fail_job_adds_diagnostics(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    await manager.add_diagnostic(job_id, "first")
    rec = await manager.fail_job(job_id, "gave up", diagnostics=["trace 1", "trace 2"])
    assert rec.status is JobStatus.FAILED
    assert rec.diagnostics == ["first", "trace 1", "trace 2"]
    assert rec.result == text_result("gave up", is_error=True)


async def test_fail_job_keeps_the_newest_diagnostics(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    for i in range(MAX_DIAGNOSTICS - 1):
        await manager.add_diagnostic(job_id, f"d{i}")
    rec = await manager.fail_job(job_id, "gave up", diagnostics=["last 1", "last 2"])
    assert rec.diagnostics is not None and len(rec.diagnostics) == MAX_DIAGNOSTICS
    assert rec.diagnostics[0] == "d1" and rec.diagnostics[-2:] == ["last 1", "last 2"]


async def test_a_result_must_be_call_tool_result_shaped(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    with pytest.raises(TypeError, match="CallToolResult or a dict"):
        await manager.set_job_result(job_id, "just text")
    with pytest.raises(TypeError, match="'content' must be a list"):
        await manager.set_job_result(job_id, {"content": "x"})
    assert (await manager.get_record(job_id)).status is JobStatus.RUNNING


# -- unknown ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    ["get_job", "poll", "start_job", "update_job_status", "update_progress", "set_job_result", "cancel_job"],
)
async def test_unknown_ids_are_job_not_found(manager: JobManager, call: str) -> None:
    args: dict[str, tuple[Any, ...]] = {
        "update_job_status": (JobStatus.RUNNING,),
        "update_progress": (10,),
        "set_job_result": (text_result("x"),),
    }
    with pytest.raises(JobNotFound) as info:
        await getattr(manager, call)("no-such-job", *args.get(call, ()))
    assert str(info.value) == "No job with id 'no-such-job'"
    assert info.value.job_id == "no-such-job"
    assert info.value.code == "job_not_found"


# -- listing ---------------------------------------------------------------------------------


async def test_list_jobs_newest_first_with_filters(manager: JobManager, clock: FakeClock) -> None:
    ids = []
    for i in range(6):
        ids.append(await manager.create_job("even" if i % 2 == 0 else "odd", {"i": i}))
        clock.advance(1)
    await manager.start_job(ids[0])
    await manager.start_job(ids[3])
    await manager.set_job_result(ids[3], text_result("ok"))

    page = await manager.list_jobs()
    assert [j.id for j in page.jobs] == ids[::-1]
    assert page.next_cursor is None
    assert [j.id for j in (await manager.list_jobs(tool_name="even")).jobs] == [ids[4], ids[2], ids[0]]
    assert [j.id for j in (await manager.list_jobs(status="pending")).jobs] == [ids[5], ids[4], ids[2], ids[1]]
    assert [j.id for j in (await manager.list_jobs(status=JobStatus.RUNNING)).jobs] == [ids[0]]
    assert [j.id for j in (await manager.list_jobs(status="pending", tool_name="odd")).jobs] == [ids[5], ids[1]]
    assert (await manager.list_jobs(tool_name="nothing")).jobs == []


async def _all_pages(
    manager: JobManager, limit: int, between: int = 0, clock: FakeClock | None = None, **filters: Any
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await manager.list_jobs(limit=limit, cursor=cursor, **filters)
        pages.append([j.id for j in page.jobs])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        if clock is not None:
            clock.advance(0.001)  # the next page is asked for a moment later
        for i in range(between):  # newer jobs arrive while the client pages
            await manager.create_job("echo", {"late": i})


@pytest.mark.parametrize("tick_every", [1, 3, 10**9], ids=["distinct-times", "some-equal-times", "all-equal-times"])
async def test_cursor_pagination_is_stable(manager: JobManager, clock: FakeClock, tick_every: int) -> None:
    ids = []
    for i in range(120):
        ids.append(await manager.create_job("echo", {"i": i}))
        if (i + 1) % tick_every == 0:
            clock.advance(0.001)
    expected = [j.id for j in (await manager.list_jobs(limit=500)).jobs]
    assert set(expected) == set(ids)

    pages = await _all_pages(manager, limit=50, between=7, clock=clock)
    assert [len(p) for p in pages] == [50, 50, 20]
    listed = [job_id for page in pages for job_id in page]
    assert listed == expected  # no duplicates, no gaps, same order, newer jobs not mixed in


async def test_pagination_with_a_filter(manager: JobManager, clock: FakeClock) -> None:
    for i in range(120):
        job_id = await manager.create_job("echo", {"i": i})
        if i % 2:
            await manager.cancel_job(job_id)
        if i % 5 == 0:
            clock.advance(0.001)
    pages = await _all_pages(manager, limit=25, status="cancelled")
    listed = [job_id for page in pages for job_id in page]
    assert [len(p) for p in pages] == [25, 25, 10]
    assert len(set(listed)) == 60
    assert listed == [j.id for j in (await manager.list_jobs(status="cancelled", limit=100)).jobs]


async def test_a_full_last_page_has_no_cursor(manager: JobManager) -> None:
    for i in range(10):
        await manager.create_job("echo", {"i": i})
    page = await manager.list_jobs(limit=10)
    assert len(page.jobs) == 10 and page.next_cursor is None


@pytest.mark.parametrize("limit", [0, -1, 501])
async def test_an_invalid_limit_is_refused(manager: JobManager, limit: int) -> None:
    with pytest.raises(InvalidParams, match=f"limit must be between 1 and 500, got {limit}"):
        await manager.list_jobs(limit=limit)


@pytest.mark.parametrize("cursor", ["garbage!", "bm90LWEtY3Vyc29y", "Zm9vOmJhcg", "%%%"])
async def test_an_invalid_cursor_is_refused(manager: JobManager, cursor: str) -> None:
    with pytest.raises(InvalidParams, match="is not a cursor this server gave out"):
        await manager.list_jobs(cursor=cursor)


@pytest.mark.parametrize(
    ("task", "named"),
    [({"priorty": "high"}, "priorty: Extra inputs are not permitted"), ({"priority": "urgent"}, "priority: Input")],
)
async def test_a_task_mapping_that_is_no_task_is_refused_naming_the_field(
    manager: JobManager, task: dict[str, Any], named: str
) -> None:
    """A library caller's `task={...}` with a misspelt or bad field raised pydantic's ValidationError (quoting the
    input, not a JobError): InvalidParams naming the field (a ValueError still, as before), and no job."""
    with pytest.raises(InvalidTask, match=f"^task: {named}") as refused:
        await manager.create_job("echo", {}, task=task)
    assert isinstance(refused.value, InvalidParams) and isinstance(refused.value, ValueError)
    assert (await manager.list_jobs()).jobs == []


async def test_an_invalid_status_filter_is_refused(manager: JobManager) -> None:
    with pytest.raises(ValueError, match="'done' is not a valid JobStatus"):
        await manager.list_jobs(status="done")


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_a_pending_job(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    rec = await manager.cancel_job(job_id, "changed my mind")
    assert rec.status is JobStatus.CANCELLED
    assert rec.cancel_requested == "changed my mind"
    assert rec.progress_message == "Job cancelled: changed my mind"
    assert rec.result == text_result("Job cancelled: changed my mind", is_error=True)
    assert rec.finished_at is not None and rec.started_at is None
    with pytest.raises(InvalidTransition):  # it never runs
        await manager.start_job(job_id)
    assert (await manager.get_record(job_id)).attempt == 0


async def test_cancelling_a_running_job_of_this_process(manager: JobManager) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    rec = await manager.cancel_job(job_id)
    assert rec.status is JobStatus.CANCELLED
    assert rec.progress_message == "Job cancelled: cancelled by request"


async def test_cancelling_a_job_running_elsewhere_asks_its_owner(make_manager: ManagerFactory, store: JobStore) -> None:
    worker = make_manager(store=store)
    here = make_manager(store=store)
    job_id = await here.create_job("echo")
    await worker.start_job(job_id)
    rec = await here.cancel_job(job_id, "stop")
    assert (rec.status, rec.cancel_requested) == (JobStatus.RUNNING, "stop")
    rec = await worker.finish_cancelled(job_id, "stop", attempt=1)
    assert rec.status is JobStatus.CANCELLED


@pytest.mark.parametrize("finish", ["completed", "failed", "cancelled"])
async def test_cancelling_a_finished_job_is_refused(manager: JobManager, finish: str) -> None:
    job_id = await manager.create_job("echo")
    await manager.start_job(job_id)
    if finish == "cancelled":
        await manager.cancel_job(job_id)
    else:
        await manager.set_job_result(job_id, text_result("x", is_error=finish == "failed"))
    before = await manager.get_job(job_id)
    with pytest.raises(InvalidTransition, match=f"cannot go from {finish} to cancelled: the job is finished"):
        await manager.cancel_job(job_id)
    assert await manager.get_job(job_id) == before


# -- statistics ------------------------------------------------------------------------------


async def test_statistics_counts(manager: JobManager, clock: FakeClock) -> None:
    empty = await manager.statistics()
    assert empty.total == 0 and empty.counts == dict.fromkeys(
        ["pending", "running", "completed", "failed", "cancelled"], 0
    )

    ids = [await manager.create_job("a" if i < 4 else "b", {"i": i}) for i in range(7)]
    for job_id in ids[:5]:
        await manager.start_job(job_id)
    clock.advance(2)
    await manager.set_job_result(ids[0], text_result("ok"))
    await manager.set_job_result(ids[1], text_result("ok"))
    await manager.set_job_result(ids[2], text_result("no", is_error=True))
    await manager.set_job_result(ids[4], text_result("ok"))
    await manager.cancel_job(ids[5])

    stats = await manager.statistics()
    assert stats.counts == {"pending": 1, "running": 1, "completed": 3, "failed": 1, "cancelled": 1}
    assert (stats.total, stats.running, stats.queue_depth) == (7, 1, 1)
    a = stats.by_tool["a"]
    assert (a.completed, a.failed, a.cancelled) == (2, 1, 0)
    assert a.success_rate == pytest.approx(2 / 3)
    assert a.p50_duration_ms == 2000
    b = stats.by_tool["b"]
    assert (b.completed, b.failed, b.cancelled, b.success_rate) == (1, 0, 1, 1.0)
    assert stats.throughput_per_minute == 4
    assert stats.error_rate_5m == pytest.approx(1 / 4)
    assert stats.health.status == "healthy"
    wire = stats.wire()
    assert wire["queueDepth"] == 1 and wire["byTool"]["a"]["successRate"] == pytest.approx(2 / 3)
    assert wire["errorRate5m"] == pytest.approx(0.25)
