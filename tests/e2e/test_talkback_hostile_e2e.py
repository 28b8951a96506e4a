"""Hostile answers to a job's question, against the real `vibe-jobs serve` over streamable HTTP with the real
MCP client: a refused answer is told to its caller in an answer the caller can read, naming the problem, and
the question stays open."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp_types import CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult, TextContent

from tests.e2e.conftest import MODES, HttpServer, http_client_for, start_http, stdio_params
from tests.e2e.test_talkback_e2e import read, start, until_waiting

pytestmark = pytest.mark.timeout(120)
MIB = 1 << 20


@pytest.fixture(scope="module")
def roomy_server() -> Any:
    """A server with the default limits: answers (like params) up to 1 MiB, and 1 MiB to an HTTP answer."""
    with start_http("streamable-http", {"VIBE_JOBS_MAX_PARAMS_BYTES": str(MIB)}) as server:
        yield server


@pytest.mark.parametrize("mode", MODES)
async def test_a_large_wrong_answer_is_refused_in_an_answer_the_client_can_read(
    roomy_server: HttpServer, mode: str
) -> None:
    """A refusal quoted the answer whole (`got 'xxx...'`), twice (text and structured error): a 600 kB string for
    a yes/no field made a reply past the 1 MiB an HTTP client reads, so the caller got no answer at all
    ("Server-sent event exceeded the 1048576 byte limit") instead of the reason. Each refusal is now short."""
    big = "x" * 600_000
    async with http_client_for(roomy_server, mode) as client:
        elicit, sampling = await start(client, "confirm"), await start(client, "sample_keys")
        await until_waiting(client, elicit)
        await until_waiting(client, sampling)
        cases = [
            (elicit, {"confirm": big}, "field 'confirm' must be boolean"),
            (elicit, {big: True}, "unknown field 'xxxx"),
            (sampling, {"role": big, "content": {"type": "text", "text": "hi"}}, "role must be 'assistant'"),
            (sampling, {"content": {"type": "text", "text": "hi"}, "model": [big]}, "model must be a string"),
        ]
        for job_id, answer, reason in cases:
            refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": answer})
            assert refused.is_error and isinstance(refused.content[0], TextContent), refused
            text = refused.content[0].text
            assert reason in text and len(text) < 1_000, text[:300]
            assert "waitingFor" in await read(client, job_id)  # the question stays open
        for job_id, answer in ((elicit, {"confirm": True}), (sampling, "a short reply")):
            assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": answer})).is_error


@asynccontextmanager
async def hostile_tools_client(mode: str, env: dict[str, str] | None = None, **callbacks: Any) -> AsyncIterator[Client]:
    """The real server over stdio with the job tools of `talkback_hostile_tools`."""
    params = stdio_params(env)
    params.args = ["tests.e2e.talkback_hostile_tools" if a == "tests.e2e.sample_tools" else a for a in params.args]
    with tempfile.TemporaryFile("w+") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=30, **callbacks) as client:
            yield client


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        ("sample_number_text", "a sampling message's content must be a block"),
        ("sample_video", "a sampling message's content must be a block"),
        ("sample_hot", "sampling's temperature must be a finite number"),
        ("sample_nameless_tool_use", "a tool_use block's name must be a string"),
        ("sample_unbound_tool_result", "a tool_result block's toolUseId must be a string"),
        ("sample_numbered_annotations", "a text block's annotations must be an object"),
        ("sample_out_of_range", "a text block's annotation's priority must be a number from 0 to 1"),
        ("sample_iconic_link", "a resource_link block's icons must be a list"),
        ("sample_costly", "model_preferences priorities (costPriority, speedPriority, intelligencePriority) must be"),
        ("sample_null_hint", "model_preferences hints must be a list of {name} objects"),
    ],
)
async def test_a_sampling_question_no_mcp_request_can_carry_fails_its_job_not_every_read(tool: str, says: str) -> None:
    """A job sampled with what the MCP's CreateMessageRequest cannot hold (a text block whose text is 5, a "video"
    block, a temperature of "hot"): stored as its question, it made every long-poll of a 2026-07-28 client with
    the sampling capability fail ("Error executing tool get-job-result": the input_required request could not be
    built), for as long as the job waited (an hour by default). The job's sample() now refuses it, naming it.
    A model preference outside the specification (a priority of 5, a hint whose name is null) was sent as it was:
    the TypeScript SDK's client refuses such a request (-32602) before its callback runs, and the job was told
    `decline` though nobody declined."""

    async def on_sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="hi"), model="m")

    async with hostile_tools_client("auto", sampling_callback=on_sample) as client:
        job_id = await start(client, tool)
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                pass
    assert msg["status"] == "failed", msg
    assert says in msg["message"], msg["message"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_plain_def_tool_asks_and_is_answered_over_mcp(mode: str) -> None:
    """The README: a plain `def` tool reports "with the same calls, without await". Its `job.elicit(...)` and
    `job.sample(...)` made coroutines nobody awaited: nothing was asked and the job failed."""
    async with hostile_tools_client(mode) as client:
        job_id = await start(client, "ask_sync")
        asked = await until_waiting(client, job_id)
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": {"pick": "b"}})).is_error
        with anyio.fail_after(30):  # the sampling question, once the answered one is taken
            while (sampled := await read(client, job_id, wait=5)).get("waitingFor", asked["waitingFor"]) == asked[
                "waitingFor"
            ]:
                assert sampled["status"] == "running", sampled
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": "because"})).is_error, sampled
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                pass
    assert msg["result"]["content"][0]["text"] == "accept {'pick': 'b'} because", msg


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_outside_choices_of_mixed_types_is_refused_naming_them(mode: str) -> None:
    """A question whose choices are of mixed types (["a", 1]: a flat JSON schema a job may give) refused a wrong
    answer with "Error executing tool answer-job" and no reason: sorting the choices for the message raised a
    TypeError. It is refused naming the field and its choices; the question stays, and a right answer is taken."""
    async with hostile_tools_client(mode) as client:
        job_id = await start(client, "pick_mixed")
        await until_waiting(client, job_id)
        refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"pick": "b"}})
        assert refused.is_error and isinstance(refused.content[0], TextContent), refused
        assert refused.content[0].text == "field 'pick' must be one of ['a', 1], got 'b'"
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": {"pick": "a"}})).is_error
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                pass
        assert msg["result"]["content"][0]["text"] == "accept {'pick': 'a'}", msg


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        ("ask_ghost_required", "an elicitation schema's required names 'nmae', which it does not ask for"),
        ("ask_required_word", "an elicitation schema's required must be a list of field names, not 'name'"),
        ("ask_type_list", "elicitation property 'name' must be a string, number, integer, boolean or enum"),
    ],
)
async def test_a_question_no_answer_could_satisfy_fails_its_job_naming_the_schemas_fault(tool: str, says: str) -> None:
    """A flat schema whose `required` named a field it does not ask for (a typo), or was one string (read as its
    letters), was stored as the job's question: every answer was refused (the field missing, or else unknown), so
    only a decline or the question's time-out (an hour by default) ended the wait. A field whose type was a list
    of types failed the job with "TypeError: unhashable type: 'list'". The job's elicit() now refuses each,
    naming the fault, as it does a nested schema."""
    async with hostile_tools_client("legacy") as client:
        job_id = await start(client, tool)
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                assert "waitingFor" not in msg, msg
    assert msg["status"] == "failed", msg
    assert f"InvalidParams: {says}" in msg["message"], msg["message"]


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ({"type": "string", "enum": []}, "enum must be a non-empty list of choices, not []"),
        ({"type": "string", "enum": "abc"}, "enum must be a non-empty list of choices, not 'abc'"),
        ({"type": "integer", "default": "five"}, "default does not fit it (field 'pick' must be integer, got 'five')"),
        ({"enum": ["a", "b"], "type": "string", "default": "c"}, "must be one of ['a', 'b'], got 'c')"),
        ({"type": "integer", "maximum": 3, "default": 5}, "default does not fit it (field 'pick' must be at most 3"),
    ],
    ids=["empty enum", "enum a string", "default of another type", "default no choice", "default out of bounds"],
)
async def test_choices_no_answer_could_be_or_a_default_its_field_refuses_fail_the_ask_naming_them(
    field: dict[str, Any], says: str
) -> None:
    """An empty `enum` allowed any answer (the job got a value its schema offered no choice of), `enum` as one string
    allowed only that string, and a default the field itself refused was offered by the form and then refused when
    the person took it: each question was asked and waited for. The job's elicit() refuses them, naming the fault."""
    async with hostile_tools_client("legacy") as client:
        job_id = await start(client, "ask_field", {"field": field})
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                assert "waitingFor" not in msg, msg
    assert msg["status"] == "failed", msg
    assert "InvalidParams: elicitation property 'pick': " in msg["message"] and says in msg["message"], msg["message"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_job_asking_many_questions_in_turn_is_answered_on_the_long_poll(mode: str) -> None:
    """On 2026-07-28 each question of a long-poll is an `input_required` round of the same call (the client's
    retry carries the answer, the long-poll goes on and the next question is the next round): a job asking a
    twelfth question within one long-poll made the SDK client's get-job-result raise
    InputRequiredRoundsExceededError (it allows 10 rounds), though the person answered every one. A long-poll
    now asks a few questions per call (rounds counted in requestState) and then answers the job's status, its
    question in waitingFor, for the next long-poll to ask."""
    asked: list[str] = []

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"ok": True})

    async with hostile_tools_client(mode, elicitation_callback=on_elicit) as client:
        job_id = await start(client, "ask_in_turn", {"count": 12})
        with anyio.fail_after(60):
            while (msg := await read(client, job_id, wait=30))["status"] in ("pending", "running"):
                pass
    assert msg["status"] == "completed", msg
    assert msg["result"]["content"][0]["text"] == "12 of 12 yes"
    assert asked == [f"Step {i + 1} of 12: go on?" for i in range(12)]


async def test_a_large_multi_select_answer_is_checked_without_holding_the_server() -> None:
    """A multi-select's answer was checked value by value against the list of choices: 14,000 choices (a question
    within its quarter of VIBE_JOBS_MAX_ANSWER_BYTES) and an answer of 55,000 picks (within the 1 MiB an answer may
    be) took some 35 s on the event loop, every other call and job of the server (every principal's) held up
    meanwhile. The choices are looked up as a set: the answer is taken at once."""
    async with hostile_tools_client("legacy", {"VIBE_JOBS_MAX_PARAMS_BYTES": str(MIB)}) as client:
        job_id = await start(client, "pick_many_files")
        asked = (await until_waiting(client, job_id))["waitingFor"]
        last = asked["requestedSchema"]["properties"]["files"]["items"]["enum"][-1]
        with anyio.fail_after(10):
            taken = await client.call_tool("answer-job", {"jobId": job_id, "answer": {"files": [last] * 55_000}})
        assert not taken.is_error, taken
        with anyio.fail_after(30):
            while (msg := await read(client, job_id, wait=5))["status"] in ("pending", "running"):
                pass
    assert msg["result"]["content"][0]["text"] == f"55000 picks of {last}", msg
