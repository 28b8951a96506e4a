"""A question the client's protocol version cannot carry is not put to it on the long-poll, against the real
`vibe-jobs serve` over stdio (raw frames, a 2025-06-18 client: the version many deployed clients speak).

A multi-select (an elicitation property of type array) and a sampling message of several blocks came with
2025-11-25. A 2025-06-18 client (the TypeScript SDK 1.17 client, say) refuses such a request (-32602) before its
callback runs; that refusal was taken as a decline: the person was never asked and the job went on as if they had
said no. Such a question is shown in `waitingFor` instead, as for a client without the capability, and
`answer-job` answers it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.raw_stdio import raw_stdio

pytestmark = pytest.mark.timeout(60)

CAPABILITIES: dict[str, Any] = {"elicitation": {}, "sampling": {}}
CASES = {  # tool: (what answer-job gives, the job's result)
    "pick_colours": ({"colours": ["red", "blue"]}, "red,blue"),
    "sample_blocks": ("a reply", "accept a reply"),
}


@pytest.mark.parametrize("tool", CASES)
async def test_a_question_newer_than_the_clients_protocol_waits_for_answer_job(tool: str) -> None:
    answer, done = CASES[tool]
    async with raw_stdio(capabilities=CAPABILITIES, protocol="2025-06-18") as raw:
        started = await raw.call(tool, {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        while (message := await raw.answer()).get("id") != poll_id:
            assert message.get("method") not in ("elicitation/create", "sampling/createMessage"), message
        status = message["result"]["structuredContent"]
        assert status["status"] == "running" and "waitingFor" in status, status
        taken = await raw.call("answer-job", {"jobId": job_id, "answer": answer})
        assert not taken["result"].get("isError"), taken
        final = await raw.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
    result = final["result"]["structuredContent"]
    assert result["status"] == "completed", result
    assert result["result"]["content"][0]["text"] == done


async def test_a_question_the_clients_protocol_carries_is_still_put_to_it() -> None:
    async with raw_stdio(capabilities=CAPABILITIES, protocol="2025-06-18") as raw:
        started = await raw.call("confirm", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        while (asked := await raw.answer()).get("method") != "elicitation/create":
            assert asked.get("id") != poll_id, asked
        await raw.send(
            {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"confirm": True}}}
        )
        while (message := await raw.answer()).get("id") != poll_id:
            pass
    assert message["result"]["structuredContent"]["result"]["content"][0]["text"] == "deleted"


async def test_a_sampling_message_of_one_block_in_a_list_is_put_to_a_2025_06_18_client() -> None:
    """A list of one block is that block: a 2025-06-18 client's SamplingMessage carries it (it was left to
    answer-job as if it were a message of several blocks, though the client could have been asked)."""
    async with raw_stdio(capabilities=CAPABILITIES, protocol="2025-06-18") as raw:
        started = await raw.call("sample_one_block", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        while (asked := await raw.answer()).get("method") != "sampling/createMessage":
            assert asked.get("id") != poll_id, asked
        assert asked["params"]["messages"][0]["content"] == {"type": "text", "text": "one block"}, asked
        reply = {"role": "assistant", "content": {"type": "text", "text": "a reply"}, "model": "m"}
        await raw.send({"jsonrpc": "2.0", "id": asked["id"], "result": reply})
        while (message := await raw.answer()).get("id") != poll_id:
            pass
    assert message["result"]["structuredContent"]["result"]["content"][0]["text"] == "accept a reply"
