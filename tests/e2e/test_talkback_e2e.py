"""Jobs that talk back, against the real `vibe-jobs serve` with the real MCP client, in both eras.

A job asks a yes/no question (`confirm` in sample_tools) or samples three times (`ask_model`); the answer
reaches it by the best way the client has: the long-poll's own elicitation/sampling request (2025-11-25
with callbacks), `tasks/update` (the tasks extension), or `answer-job` (everyone else).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult, TextContent

from tests.e2e.conftest import BASE_ENV, MODES, ROOT, SERVER, HttpServer, stdio_params
from tests.e2e.test_tasks_e2e import declaring, send, start_task
from vibe_jobs.client import TasksClientExtension, call_and_wait


@asynccontextmanager
async def connect(
    mode: str, env: dict[str, str] | None = None, *, store: str = "memory://", **callbacks: Any
) -> AsyncIterator[Client]:
    with tempfile.TemporaryFile("w+") as errlog:
        params = stdio_params(env)
        params.args = [store if arg == "memory://" else arg for arg in params.args]  # SERVER's --store
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=60, **callbacks) as client:
            yield client


async def start(client: Client, tool: str, args: dict[str, Any] | None = None) -> str:
    started = await client.call_tool(tool, args or {})
    assert started.structured_content is not None, started
    job_id: str = started.structured_content["jobId"]
    return job_id


async def read(client: Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    args: dict[str, Any] = {"jobId": job_id, **({"waitSeconds": wait} if wait else {})}
    reply = await client.call_tool("get-job-result", args)
    assert reply.structured_content is not None, reply
    msg: dict[str, Any] = reply.structured_content
    msg["_text"] = reply.content[0].text if isinstance(reply.content[0], TextContent) else ""
    return msg


async def until_waiting(client: Client, job_id: str) -> dict[str, Any]:
    """Long-poll until the job waits for an answer (a caller that cannot answer on the call is told at once)."""
    with anyio.fail_after(20):
        while "waitingFor" not in (msg := await read(client, job_id, wait=10)):
            assert msg["status"] in ("pending", "running"), msg
        return msg


async def finish(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        while (msg := await read(client, job_id, wait=10))["status"] in ("pending", "running"):
            assert "waitingFor" not in msg, msg
        return msg


def result_text(msg: dict[str, Any]) -> str:
    return str(msg["result"]["content"][0]["text"])


# -- a client with callbacks: the question comes on the long-poll itself ---------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_long_poll_carries_the_elicitation_and_the_answer_feeds_the_job(mode: str) -> None:
    """2025-11-25: an elicitation/create request related to the get-job-result call; 2026-07-28: that call
    answers input_required and the client's retry carries the answer. The client's callback answers both."""
    asked: list[ElicitRequestParams] = []

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"confirm": True})

    async with connect(mode, elicitation_callback=on_elicit) as client:
        job_id = await start(client, "confirm", {"question": "Delete 312 files?"})
        done = await finish(client, job_id)
    assert done["status"] == "completed" and result_text(done) == "deleted"
    assert [p.message for p in asked] == ["Delete 312 files?"]
    schema = asked[0].requested_schema  # type: ignore[union-attr]
    assert schema["properties"]["confirm"]["type"] == "boolean" and schema["required"] == ["confirm"]


async def test_a_long_poll_ends_on_time_while_the_callers_reply_is_outstanding() -> None:
    """2025-11-25: the question goes out as a request tied to the long-poll. When the job stops asking (its
    question timed out) the long-poll answers within its waitSeconds, and does not wait for the reply (it
    waited as long as the person took)."""
    released = anyio.Event()

    async def never_replies(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        await released.wait()
        return ElicitResult(action="decline")

    async with connect("legacy", elicitation_callback=never_replies) as client:
        try:
            job_id = await start(client, "confirm", {"question": "Delete?", "wait": 1})
            began = time.monotonic()
            msg = await read(client, job_id, wait=6)
            assert time.monotonic() - began < 5.5, "the long-poll waited for the caller's reply"
            assert msg["status"] == "completed" and result_text(msg) == "no answer: timeout", msg
        finally:
            released.set()


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_a_person_slower_than_the_long_poll_still_answers_the_job(
    transport: str, request: pytest.FixtureRequest
) -> None:
    """2025-11-25: the elicitation stays outstanding past the long-poll that sent it. A person who takes 2 s
    while the client long-polls for 1 s at a time answers the job (before its 8 s question time-out), and is
    asked once, not again by each long-poll."""
    calls: list[str] = []

    async def slow_person(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        calls.append(params.message)
        await anyio.sleep(2)  # the person thinks: longer than a long-poll lasts
        return ElicitResult(action="accept", content={"confirm": True})

    async with slow_client(transport, request, slow_person) as client:
        job_id = await start(client, "confirm", {"question": "Delete?", "wait": 8})
        with anyio.fail_after(20):
            while (msg := await read(client, job_id, wait=1))["status"] in ("pending", "running"):
                pass
    assert msg["status"] == "completed" and result_text(msg) == "deleted", msg
    assert calls == ["Delete?"]


async def test_a_connection_that_closes_with_the_question_outstanding_leaves_it_unanswered(
    http_server: HttpServer,
) -> None:
    """The client whose request is outstanding goes away: no answer (not a decline); the question waits for
    the next reader, who answers it with answer-job."""
    asked = anyio.Event()

    async def gone(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with Client(http_server.url, mode="legacy", read_timeout_seconds=60, elicitation_callback=gone) as c:
        job_id = await start(c, "confirm", {"question": "Delete?", "wait": 30})
        while not asked.is_set():
            await read(c, job_id, wait=1)
    async with Client(http_server.url, mode="legacy", read_timeout_seconds=60) as c:
        waiting = await read(c, job_id, wait=1)
        assert waiting["status"] == "running" and waiting["waitingFor"]["message"] == "Delete?", waiting
        await c.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": True}})
        done = await finish(c, job_id)
    assert result_text(done) == "deleted", done


def slow_client(transport: str, request: pytest.FixtureRequest, on_elicit: Any) -> AbstractAsyncContextManager[Client]:
    """A 2025-11-25 client with `on_elicit`, over stdio or streamable HTTP."""
    if transport == "stdio":
        return connect("legacy", elicitation_callback=on_elicit)
    server: HttpServer = request.getfixturevalue("http_server")
    return Client(server.url, mode="legacy", read_timeout_seconds=60, elicitation_callback=on_elicit)


@pytest.mark.parametrize("mode", MODES)
async def test_a_decline_on_the_long_poll_is_a_value_the_tool_handles(mode: str) -> None:
    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    async with connect(mode, elicitation_callback=on_elicit) as client:
        done = await finish(client, await start(client, "confirm"))
    assert done["status"] == "completed" and result_text(done) == "no answer: decline"


@pytest.mark.parametrize("mode", MODES)
async def test_a_job_samples_three_times_through_the_clients_sampling_callback(mode: str) -> None:
    prompts: list[str] = []

    async def on_sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[-1].content
        assert isinstance(content, TextContent) and params.system_prompt == "be brief" and params.max_tokens == 50
        prompts.append(content.text)
        reply = TextContent(type="text", text=f"answer {len(prompts)}")
        return CreateMessageResult(role="assistant", content=reply, model="test-model")

    async with connect(mode, sampling_callback=on_sample) as client:
        done = await finish(client, await start(client, "ask_model", {"topic": "jobs"}))
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"] == {"result": ["answer 1", "answer 2", "answer 3"]}
    assert prompts == ["question 1 about jobs", "question 2 about jobs", "question 3 about jobs"]


async def test_legacy_over_streamable_http_carries_the_elicitation(http_server: HttpServer) -> None:
    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": False})

    async with Client(http_server.url, mode="legacy", read_timeout_seconds=60, elicitation_callback=on_elicit) as c:
        done = await finish(c, await start(c, "confirm"))
    assert result_text(done) == "kept"


# -- neither: waitingFor and answer-job ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_without_callbacks_get_job_result_shows_the_question_and_answer_job_answers_it(mode: str) -> None:
    async with connect(mode) as client:
        job_id = await start(client, "confirm", {"question": "Delete 312 files?"})
        msg = await until_waiting(client, job_id)
        assert msg["status"] == "running"  # five states only: waiting is running with waitingFor
        question = msg["waitingFor"]
        assert question["kind"] == "elicitation" and question["message"] == "Delete 312 files?"
        assert question["requestedSchema"]["properties"]["confirm"]["type"] == "boolean"
        assert "answer-job" in msg["_text"] and "cancel-job" in msg["_text"] and job_id in msg["_text"]
        wrong = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": "yes"}})
        assert wrong.is_error and "'confirm' must be boolean" in wrong.content[0].text  # type: ignore[union-attr]
        missing = await client.call_tool("answer-job", {"jobId": job_id, "answer": {}})
        assert missing.is_error and "required field 'confirm'" in missing.content[0].text  # type: ignore[union-attr]
        assert "waitingFor" in await read(client, job_id)  # a refused answer changes nothing
        ok = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": True}})
        assert not ok.is_error, ok
        done = await finish(client, job_id)
        assert result_text(done) == "deleted"
        late = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": False}})
        assert late.is_error and "not waiting" in late.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_outside_the_schemas_bounds_is_refused_and_the_question_stays(mode: str) -> None:
    """`count` is 0..10 and `label` at most 8 characters: such an answer was delivered, and the job failed on
    it (or got the value, for a schema without a model)."""
    async with connect(mode) as client:
        job_id = await start(client, "ask_count")
        await until_waiting(client, job_id)
        out_of_bounds = [
            ({"count": 50}, "'count' must be at most 10"),
            ({"count": -1}, "'count' must be at least 0"),
            ({"count": 1, "label": "x" * 9}, "'label' must be at most 8 characters long"),
        ]
        for bad, problem in out_of_bounds:
            refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": bad})
            assert refused.is_error and problem in refused.content[0].text, refused  # type: ignore[union-attr]
            assert "waitingFor" in await read(client, job_id)
        ok = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"count": 10, "label": "boxes"}})
        assert not ok.is_error, ok
        assert result_text(await finish(client, job_id)) == "10 boxes"


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_its_jobs_model_refuses_is_refused_and_the_question_stays(mode: str) -> None:
    """A pattern, a date format: the flat check let such an answer through, and the job failed when its model
    refused it. The job's own model now checks the answer where it is given."""
    async with connect(mode) as client:
        job_id = await start(client, "ask_code")
        asked = (await until_waiting(client, job_id))["waitingFor"]
        for bad in ({"code": "12a4", "when": "2026-12-04"}, {"code": "1234", "when": "next tuesday"}):
            refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": bad})
            assert refused.is_error and "does not fit Code" in str(refused.content), refused.content
            assert (await read(client, job_id))["waitingFor"]["requestId"] == asked["requestId"]
        good = {"code": "1234", "when": "2026-12-04"}
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": good})).is_error
        done = await finish(client, job_id)
        assert done["status"] == "completed" and result_text(done) == "1234 2026-12-04"


async def test_an_answer_given_to_another_server_does_not_claim_the_job_resumes(tmp_path: Path) -> None:
    """Two servers share a SQLite file; the job runs on the first, answer-job is called on the second, where the
    job's model is not known. The second said "Answer delivered; the job resumes" of an answer the job then
    refused: it now says the answer is checked where the job runs, and the job asks again saying why."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with connect("legacy", store=store) as runs, connect("auto", store=store) as other:
        job_id = await start(runs, "ask_code")
        asked = (await until_waiting(runs, job_id))["waitingFor"]
        stored = await other.call_tool(
            "answer-job", {"jobId": job_id, "answer": {"code": "12a4", "when": "2026-12-04"}}
        )
        said = stored.content[0].text  # type: ignore[union-attr]
        assert not stored.is_error and "resumes, or asks again" in said and "Answer delivered" not in said, said
        assert stored.structured_content is not None and stored.structured_content["checkedHere"] is False
        with anyio.fail_after(20):
            while (again := (await until_waiting(runs, job_id))["waitingFor"])["requestId"] == asked["requestId"]:
                pass
        assert "did not fit" in again["message"], again
        good = {"jobId": job_id, "answer": {"code": "1234", "when": "2026-12-04"}}
        taken = await runs.call_tool("answer-job", good)
        assert taken.structured_content is not None and taken.structured_content["checkedHere"] is True, taken
        assert result_text(await finish(runs, job_id)) == "1234 2026-12-04"


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_over_the_size_limit_is_refused_and_the_question_stays(mode: str) -> None:
    """An answer is kept on the job as its params are, under the same limit (VIBE_JOBS_MAX_PARAMS_BYTES): a
    sampling reply of any size was stored whole. Refused, naming the sizes; the job still waits."""
    async with connect(mode, {"VIBE_JOBS_MAX_PARAMS_BYTES": "4096"}) as client:
        job_id = await start(client, "ask_model", {"topic": "size"})
        await until_waiting(client, job_id)
        for big in ("x" * 10_000, {"role": "assistant", "content": {"type": "text", "text": "y" * 10_000}}):
            refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": big})
            text = refused.content[0].text  # type: ignore[union-attr]
            assert refused.is_error and "the answer is" in text and "the limit is 4096 bytes" in text, text
            assert "waitingFor" in await read(client, job_id)
        ok = await client.call_tool("answer-job", {"jobId": job_id, "answer": "a short reply"})
        assert not ok.is_error, ok
        await client.call_tool("cancel-job", {"jobId": job_id})


@pytest.mark.parametrize("mode", MODES)
async def test_declined_with_answer_job(mode: str) -> None:
    async with connect(mode) as client:
        job_id = await start(client, "confirm")
        await until_waiting(client, job_id)
        await client.call_tool("answer-job", {"jobId": job_id, "action": "decline"})
        assert result_text(await finish(client, job_id)) == "no answer: decline"


@pytest.mark.parametrize("mode", MODES)
async def test_a_question_nobody_answers_times_out_as_a_value(mode: str) -> None:
    async with connect(mode) as client:
        job_id = await start(client, "confirm", {"wait": 0.5})
        done = await finish_allowing_question(client, job_id)
        assert done["status"] == "completed" and result_text(done) == "no answer: timeout"


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_to_a_question_that_timed_out_never_answers_the_next_one(mode: str) -> None:
    """answer-job took any open question: an agent's late yes to "Delete ALL production data?" (timed out) was
    taken as the yes to "Keep a backup first?". With the requestId it read, the late answer is refused and the
    question now open stays open; the text of get-job-result names the requestId to send."""
    async with connect(mode) as client:
        job_id = await start(client, "two_questions", {"wait": 0.5})
        first = (await until_waiting(client, job_id))["waitingFor"]
        now = await asked_again(client, job_id, first["requestId"])
        late = {"jobId": job_id, "requestId": first["requestId"], "answer": {"confirm": True}}
        refused = await client.call_tool("answer-job", late)
        assert refused.is_error and "not waiting for this answer" in str(refused.content), refused.content
        msg = await read(client, job_id)
        assert msg["waitingFor"]["requestId"] == now["requestId"] and now["message"] == "Keep a backup first?"
        assert f'"requestId": "{now["requestId"]}"' in msg["_text"]
        ok = {"jobId": job_id, "requestId": now["requestId"], "action": "decline"}
        assert not (await client.call_tool("answer-job", ok)).is_error
        assert result_text(await finish(client, job_id)) == "first timeout None; second decline None"


async def asked_again(client: Client, job_id: str, before: str) -> dict[str, Any]:
    """The job's next question, once the one with requestId `before` is over (read at its recommendation)."""
    with anyio.fail_after(20):
        while True:
            msg = await read(client, job_id)
            if msg["waitingFor"]["requestId"] != before:
                return dict(msg["waitingFor"])
            await anyio.sleep(msg["pollingRecommendation"]["interval"] / 1000)


async def finish_allowing_question(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        while True:  # the long-poll returns at once while the job waits: read at its recommendation
            msg = await read(client, job_id)
            if msg["status"] not in ("pending", "running"):
                return msg
            await anyio.sleep(msg["pollingRecommendation"]["interval"] / 1000)


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_while_waiting_ends_the_job_cancelled(mode: str) -> None:
    async with connect(mode) as client:
        job_id = await start(client, "confirm")
        await until_waiting(client, job_id)
        cancelled = await client.call_tool("cancel-job", {"jobId": job_id, "reason": "changed my mind"})
        assert cancelled.structured_content is not None and cancelled.structured_content["status"] == "cancelled"
        msg = await read(client, job_id)
        assert msg["status"] == "cancelled" and "waitingFor" not in msg


@pytest.mark.parametrize("mode", MODES)
async def test_waiting_does_not_count_against_the_jobs_time_out(mode: str) -> None:
    async with connect(mode) as client:
        started = await client.call_tool("submit-job", {"tool": "confirm", "timeoutSeconds": 1})
        assert started.structured_content is not None
        job_id = started.structured_content["jobId"]
        await until_waiting(client, job_id)
        await anyio.sleep(1.5)  # the subject: time passes beyond the 1 s time-out while the job waits
        assert (await read(client, job_id))["status"] == "running"
        await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": True}})
        done = await finish(client, job_id)
        assert done["status"] == "completed" and result_text(done) == "deleted"


# -- the tasks extension: input_required and tasks/update ------------------------------------------


async def test_tasks_extension_input_required_answered_with_tasks_update() -> None:
    async with declaring() as client:
        handle = await start_task(client, "confirm", {"question": "Delete 312 files?"})
        task = await until_not_working(client, handle.task_id)
        assert task["status"] == "input_required"
        assert task["statusMessage"] == "Waiting for an answer: Delete 312 files?"
        [(key, request)] = task["inputRequests"].items()
        assert request["method"] == "elicitation/create" and request["params"]["message"] == "Delete 312 files?"
        bad = {key: {"action": "accept", "content": {"confirm": 3}}}
        with pytest.raises(Exception, match="must be boolean"):
            await send(client, "tasks/update", task_id=handle.task_id, input_responses=bad)
        good = {key: {"action": "accept", "content": {"confirm": False}}, "unknown-key": {"action": "cancel"}}
        assert (await send(client, "tasks/update", task_id=handle.task_id, input_responses=good))["resultType"]
        with anyio.fail_after(20):
            while (task := await send(client, "tasks/get", task_id=handle.task_id))["status"] != "completed":
                assert task["status"] == "working", task
                await anyio.sleep(task["pollIntervalMs"] / 1000)
        assert task["result"]["content"][0]["text"] == "kept"


async def until_not_working(client: Client, task_id: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        while True:
            task = await send(client, "tasks/get", task_id=task_id)
            if task["status"] != "working":
                return task
            await anyio.sleep(task["pollIntervalMs"] / 1000)


async def elicit_yes(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    assert message == "Delete 312 files?" and "confirm" in schema["properties"]
    return {"action": "accept", "content": {"confirm": True}}


async def sample_reply(params: dict[str, Any]) -> str:
    return "re: " + str(params["messages"][-1]["content"]["text"])


async def test_call_and_wait_answers_a_task_with_its_callbacks() -> None:
    async with connect("auto", extensions=[TasksClientExtension()]) as client:
        result = await call_and_wait(client, "confirm", {}, on_elicit=elicit_yes)
        assert result.content[0].text == "deleted"  # type: ignore[union-attr]
        sampled = await call_and_wait(client, "ask_model", {"topic": "x"}, on_sample=sample_reply)
        assert sampled.structured_content == {"result": [f"re: question {i} about x" for i in (1, 2, 3)]}


@pytest.mark.parametrize("mode", MODES)
async def test_call_and_wait_answers_with_answer_job_on_the_job_id_protocol(mode: str) -> None:
    async with connect(mode) as client:
        result = await call_and_wait(client, "confirm", {}, on_elicit=elicit_yes)
        assert result.content[0].text == "deleted"  # type: ignore[union-attr]
        sampled = await call_and_wait(client, "ask_model", {"topic": "y"}, on_sample=sample_reply)
        assert sampled.structured_content == {"result": [f"re: question {i} about y" for i in (1, 2, 3)]}


def code_answers(*codes: str) -> tuple[Any, list[str]]:
    """An on_elicit callback giving these codes in turn (the last one for ever after), and what it was asked."""
    asked: list[str] = []

    async def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        asked.append(message)
        return {"action": "accept", "content": {"code": codes[min(len(asked), len(codes)) - 1], "when": "2026-12-04"}}

    return on_elicit, asked


@pytest.mark.parametrize("protocol", ["legacy", "auto", "tasks"])
async def test_call_and_wait_asks_again_after_a_refused_answer_and_gives_up_after_three(protocol: str) -> None:
    """A refused answer (a typo the job's model refuses) ended call_and_wait (vibe-jobs call) with an error while
    the job went on waiting; now the answerer is asked again, and an answerer that repeats itself is given up
    on after three refusals."""
    extensions = [TasksClientExtension()] if protocol == "tasks" else []
    mode = "legacy" if protocol == "legacy" else "auto"
    async with connect(mode, extensions=extensions) as client:
        typo_then_right, asked = code_answers("12a4", "1234")
        result = await call_and_wait(client, "ask_code", {}, on_elicit=typo_then_right)
        assert result.content[0].text == "1234 2026-12-04" and len(asked) == 2  # type: ignore[union-attr]
        always_wrong, asked = code_answers("12a4")
        with pytest.raises(MCPError, match="does not fit Code"):
            await call_and_wait(client, "ask_code", {}, on_elicit=always_wrong)
        assert len(asked) == 3


# -- progress keeps a long-poll alive ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_long_poll_sends_progress_even_when_the_job_reports_none(mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(mode, {"VIBE_JOBS_PROGRESS_KEEPALIVE_SECONDS": "0.2"}) as client:
        job_id = await start(client, "wait_forever")
        args = {"jobId": job_id, "waitSeconds": 1.5}
        reply = await client.call_tool("get-job-result", args, progress_callback=on_progress)
        assert reply.structured_content is not None and reply.structured_content["status"] == "running"
        await client.call_tool("cancel-job", {"jobId": job_id})
    assert len(seen) >= 4, seen  # 1.5 s at most 0.2 s apart, the job itself reported nothing


# -- vibe-jobs call asks the person at the terminal -----------------------------------------------


@pytest.mark.parametrize(
    ("tool", "typed", "out"),
    [
        ("confirm", "maybe\ny\n", "deleted"),  # a bad answer is asked again
        ("confirm", "!decline\n", "no answer: decline"),
        ("ask_model", "one\ntwo\nthree\n", '["one","two","three"]'),
    ],
)
def test_vibe_jobs_call_asks_at_the_terminal(tool: str, typed: str, out: str) -> None:
    server = shlex.join(SERVER)
    cmd = [sys.executable, "-m", "vibe_jobs", "call", tool, "--server-cmd", server]
    env = {**os.environ, **BASE_ENV}
    done = subprocess.run(cmd, cwd=ROOT, env=env, input=typed, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == out
    assert ("The job asks" in done.stderr) and ("answer y or n" in done.stderr) == typed.startswith("maybe")
