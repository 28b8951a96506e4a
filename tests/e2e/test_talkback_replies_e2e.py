"""Replies to a job's question that do not fit it, against the real `vibe-jobs serve` in both eras: each is
refused with the reason, the question stays open, and the server answers on (no crash of the call)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from tests.e2e.conftest import MODES, HttpServer
from tests.e2e.raw_stdio import raw_stdio
from tests.e2e.test_talkback_e2e import connect, finish, read, result_text, start, until_waiting


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("content", [[], 0, False, ""])
async def test_an_accepted_elicitation_whose_content_is_no_object_is_refused(mode: str, content: object) -> None:
    """`Note` asks for nothing required: an accepted answer whose content was [], 0, false or "" was taken as {}
    (the job resumed with no note) instead of refused."""
    async with connect(mode) as client:
        job_id = await start(client, "ask_note")
        await until_waiting(client, job_id)
        refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": content})
        assert refused.is_error, refused
        assert f"content must be an object of the requested fields, not {content!r}" in str(refused.content)
        assert "waitingFor" in (await until_waiting(client, job_id))
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": {"note": "hi"}})).is_error
        assert result_text(await finish(client, job_id)) == "accept {'note': 'hi'}"


# replies the SDK's own validation refuses; a raw client sends them as they are
BAD_SAMPLES = {
    "content a number": {"role": "assistant", "content": 5, "model": "m"},
    "no content": {"role": "assistant", "model": "m"},
    "a text block without text": {"role": "assistant", "content": {"type": "text"}, "model": "m"},
    "an unknown block type": {"role": "assistant", "content": {"type": "evil", "x": 1}, "model": "m"},
    "model a number": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": 7},
}
BAD_ELICITS = {
    "nested content": {"action": "accept", "content": {"count": {"a": 1}}},
    "action maybe": {"action": "maybe"},
}
CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}}}


@pytest.mark.parametrize("case", [*BAD_SAMPLES, *BAD_ELICITS])
async def test_a_reply_the_sdk_refuses_is_refused_and_the_long_poll_answers(case: str) -> None:
    """2025-11-25: the long-poll's elicitation/sampling request answered with a reply that fails the SDK's own
    validation crashed get-job-result ("Error executing tool get-job-result", a traceback in the log). Now it
    is refused like any wrong answer: the long-poll answers with waitingFor, and the question stays open."""
    sampling = case in BAD_SAMPLES
    async with raw_stdio(capabilities=CAPABILITIES) as raw:
        started = await raw.call("sample_keys" if sampling else "ask_count", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        while (asked := await raw.answer()).get("method") not in ("sampling/createMessage", "elicitation/create"):
            pass
        reply = BAD_SAMPLES[case] if sampling else BAD_ELICITS[case]
        await raw.send({"jsonrpc": "2.0", "id": asked["id"], "result": reply})
        while (answer := await raw.answer()).get("id") != poll_id:
            pass
        result = answer["result"]
        assert not result.get("isError"), result
        assert result["structuredContent"]["status"] == "running" and "waitingFor" in result["structuredContent"]
        assert (await raw.call("cancel-job", {"jobId": job_id}))["result"]["structuredContent"]["status"] == "cancelled"


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_a_refused_answer_on_the_long_poll_tells_the_caller_why(transport: str, http_server: HttpServer) -> None:
    """2025-11-25 callback path: an answer refused (out of bounds) was only logged; the long-poll answered
    with the same question and the next one asked it again unchanged, so the person never learnt why. Now the
    long-poll's answer carries the reason (`waitingFor.answerRefused`, and its text), and the question asked
    again says it."""
    asked: list[str] = []

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"count": 50 if len(asked) == 1 else 5})

    target: Any = connect("legacy", elicitation_callback=on_elicit)
    if transport != "stdio":
        target = Client(http_server.url, mode="legacy", read_timeout_seconds=60, elicitation_callback=on_elicit)
    async with target as client:
        job_id = await start(client, "ask_count")
        refused = await read(client, job_id, wait=10)
        assert "'count' must be at most 10" in refused["waitingFor"]["answerRefused"], refused
        assert refused["_text"].startswith("Your last answer was refused: ") and "at most 10" in refused["_text"]
        done = await finish(client, job_id)
    assert result_text(done) == "5"
    assert asked[0] == "How many (0-10)?"
    assert asked[1].startswith("Your last answer was refused (") and "'count' must be at most 10" in asked[1]
    assert asked[1].endswith("). How many (0-10)?")


@pytest.mark.parametrize("mode", MODES)
async def test_a_callbacks_refused_answer_is_told_alike_in_both_eras(mode: str) -> None:
    """2026-07-28: the retried long-poll whose `inputResponses` carried an answer outside the question's bounds
    answered isError (`invalid_params`, no status, no question), where 2025-11-25 answers the job's status with
    the reason in `waitingFor.answerRefused`; the question stays open either way and the next long-poll asks it
    again (saying why on 2025-11-25, whose connection outlives the call)."""
    asked: list[str] = []

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"count": 50 if len(asked) == 1 else 5})

    async with connect(mode, elicitation_callback=on_elicit) as client:
        job_id = await start(client, "ask_count")
        refused = await read(client, job_id, wait=10)
        assert refused.get("status") == "running", refused
        assert "'count' must be at most 10" in refused["waitingFor"]["answerRefused"], refused
        assert refused["_text"].startswith("Your last answer was refused: "), refused["_text"]
        done = await finish(client, job_id)
    assert result_text(done) == "5"
    assert asked[0] == "How many (0-10)?"
    assert len(asked) == 2 and asked[1].endswith("How many (0-10)?"), asked
    assert asked[1].startswith("Your last answer was refused (") == (mode == "legacy"), asked


async def test_a_client_that_takes_only_url_elicitation_is_not_sent_a_form_and_answers_with_answer_job() -> None:
    """A 2025-11-25 client that declared `elicitation: {url: {}}` (no form mode) was sent the job's form
    elicitation on its long-poll (the spec: a server must not send a mode the client did not declare); its error
    reply was taken as a decline, and the job went on as if the person had said no. Now it is told by
    `waitingFor` (answer-job), as a client without the capability is, and the question stays open."""
    async with raw_stdio(capabilities={"elicitation": {"url": {}}}) as raw:
        started = await raw.call("confirm", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        while (message := await raw.answer()).get("id") != poll_id:
            assert message.get("method") != "elicitation/create", message
            if "method" in message and "id" in message:  # any other request: no handler here
                await raw.send({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}})
        polled = message["result"]["structuredContent"]
        assert polled["status"] == "running" and polled["waitingFor"]["kind"] == "elicitation", polled
        assert "answer-job" in message["result"]["content"][0]["text"]
        answered = await raw.call("answer-job", {"jobId": job_id, "answer": {"confirm": True}})
        assert not answered["result"].get("isError"), answered
        done = await raw.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        assert done["result"]["structuredContent"]["result"]["content"][0]["text"] == "deleted", done
