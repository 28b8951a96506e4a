"""A client that answers a job's question with an error saying it could not take the request was never asked,
against the real `vibe-jobs serve` over stdio (raw frames, a 2025-11-25 client).

-32602 (invalid params: a schema it cannot read), -32601 (method not found) and -32600 (invalid request) mean the
request never reached a person; each was taken as a decline, and the job went on as if the user had said no. Now
the question stays open, is not put to that connection again (no loop), is logged once, and the long-poll answers
with it (`waitingFor.notDelivered`, and a text saying answer-job answers it). A person's refusal sent as an error
(sampling's -1, "User rejected sampling request" in the specification) is still a decline.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ElicitRequestParams, ErrorData

from tests.e2e.conftest import MODES
from tests.e2e.raw_stdio import RawStdio, raw_stdio
from tests.e2e.test_talkback_e2e import connect, read, result_text, start

pytestmark = pytest.mark.timeout(60)

CAPABILITIES: dict[str, Any] = {"elicitation": {}, "sampling": {}}
SECRET = "hunter2-do-not-log"


async def long_poll(raw: RawStdio, job_id: str, on_request: Any, seconds: float = 10) -> dict[str, Any]:
    """get-job-result with `waitSeconds`; each server-to-client request meanwhile is answered by `on_request`
    (the frame's reply fields); returns the long-poll's answer."""
    poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": seconds})
    while (message := await raw.answer()).get("id") != poll_id:
        if "method" in message and "id" in message:
            await raw.send({"jsonrpc": "2.0", "id": message["id"], **on_request(message)})
    return message


CASES = {  # code, tool, its arguments, the request it asks, what answer-job gives, the job's result
    "elicit-32602": (
        -32602,
        "confirm",
        {"question": f"Delete? {SECRET}"},
        "elicitation/create",
        {"confirm": True},
        "deleted",
    ),
    "elicit-32601": (
        -32601,
        "confirm",
        {"question": f"Delete? {SECRET}"},
        "elicitation/create",
        {"confirm": True},
        "deleted",
    ),
    "elicit-32600": (
        -32600,
        "confirm",
        {"question": f"Delete? {SECRET}"},
        "elicitation/create",
        {"confirm": True},
        "deleted",
    ),
    "sample-32602": (-32602, "sample_blocks", {}, "sampling/createMessage", "a reply", "accept a reply"),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_question_the_client_could_not_take_stays_open_for_answer_job(case: str) -> None:
    code, tool, arguments, method, answer, result = CASES[case]
    asked: list[dict[str, Any]] = []

    def cannot_take(message: dict[str, Any]) -> dict[str, Any]:
        asked.append(message)
        return {"error": {"code": code, "message": f"cannot read it {SECRET}"}}

    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(capabilities=CAPABILITIES, env={"VIBE_JOBS_LOG_LEVEL": "info"}, stderr=errlog) as raw:
            started = await raw.call(tool, arguments)
            job_id = started["result"]["structuredContent"]["jobId"]
            first = await long_poll(raw, job_id, cannot_take)
            assert [m["method"] for m in asked] == [method], asked
            status = first["result"]["structuredContent"]
            assert status["status"] == "running", status  # not a decline: the job still waits
            assert str(code) in status["waitingFor"]["notDelivered"], status
            said = first["result"]["content"][0]["text"]
            assert said.startswith("Your client could not take this question (") and "answer-job" in said, said
            again = await long_poll(raw, job_id, cannot_take, seconds=1)  # the same connection: not asked again
            assert len(asked) == 1, asked
            assert again["result"]["structuredContent"]["waitingFor"]["notDelivered"], again
            taken = await raw.call("answer-job", {"jobId": job_id, "answer": answer})
            assert not taken["result"].get("isError"), taken
            done = await long_poll(raw, job_id, cannot_take)
        errlog.seek(0)
        log = errlog.read().decode()
    assert done["result"]["structuredContent"]["result"]["content"][0]["text"] == result, done
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    not_taken = [e for e in events if e["event"] == "job.question_not_taken"]
    assert len(not_taken) == 1 and not_taken[0]["code"] == code and not_taken[0]["job_id"] == job_id, log[-3000:]
    assert SECRET not in log, log[-3000:]


async def test_a_person_rejecting_sampling_with_an_error_is_still_a_decline() -> None:
    def reject(message: dict[str, Any]) -> dict[str, Any]:
        assert message["method"] == "sampling/createMessage", message
        return {"error": {"code": -1, "message": "User rejected sampling request"}}

    async with raw_stdio(capabilities=CAPABILITIES) as raw:
        started = await raw.call("ask_model", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        done = await long_poll(raw, job_id, reject)
    assert done["result"]["structuredContent"]["result"]["structuredContent"]["result"] == ["<decline>"] * 3, done


@pytest.mark.parametrize("mode", MODES)
async def test_the_real_client_whose_callback_cannot_take_the_question_leaves_it_to_answer_job(mode: str) -> None:
    """The SDK's own client, its elicitation callback answering -32602. On 2025-11-25 that error is the reply to
    the long-poll's request: the long-poll answers with the question (`notDelivered`). On 2026-07-28 no error
    reaches the server (`inputResponses` carry results only): the client fails its own call, and the job, never
    told anything, still waits; either way answer-job answers it."""

    async def cannot_take(context: ClientRequestContext, params: ElicitRequestParams) -> ErrorData:
        return ErrorData(code=INVALID_PARAMS, message="cannot read this schema")

    async with connect(mode, elicitation_callback=cannot_take) as client:
        job_id = await start(client, "confirm")
        if mode == "legacy":
            polled = await read(client, job_id, wait=10)
            assert "-32602" in polled["waitingFor"]["notDelivered"], polled
        else:
            with pytest.raises(MCPError, match="cannot read this schema"):
                await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 10})
            polled = await read(client, job_id)
            assert "notDelivered" not in polled["waitingFor"], polled
        assert polled["status"] == "running", polled
        taken = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": True}})
        assert not taken.is_error, taken
        assert result_text(await read(client, job_id, wait=10)) == "deleted"
