"""Jobs that talk back, seen from the client side (`vibe_jobs.client.call_and_wait`, `vibe-jobs call`), against the
real `vibe-jobs serve` in both eras and with the tasks extension."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp_types import CreateMessageResult, TextContent

from tests.e2e.test_talkback_e2e import connect
from vibe_jobs.client import TasksClientExtension, call_and_wait

PROTOCOLS = ["legacy", "auto", "tasks"]


def connect_for(protocol: str) -> Any:
    extensions = [TasksClientExtension()] if protocol == "tasks" else []
    return connect("legacy" if protocol == "legacy" else "auto", extensions=extensions)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_sample_returning_a_create_message_result_gives_the_job_its_wire_keys(protocol: str) -> None:
    """The README allows `on_sample` to return a CreateMessageResult: the job got it as `dict(model)`, snake_case
    keys (`stop_reason`, `meta`) and block objects, where the wire's camelCase (`stopReason`) was due."""

    async def on_sample(params: dict[str, Any]) -> CreateMessageResult:
        text = TextContent(type="text", text="forty-two")
        return CreateMessageResult(role="assistant", content=text, model="m1", stop_reason="endTurn")

    async with connect_for(protocol) as client:
        result = await call_and_wait(client, "sample_keys", {}, on_sample=on_sample)
    assert result.content[0].text == "accept forty-two ['content', 'model', 'role', 'stopReason']"  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_answerer_still_asking_when_the_question_times_out_is_cancelled(protocol: str) -> None:
    """The job's question timed out (wait=3) and the job finished, but call_and_wait went on awaiting its
    on_elicit (a person who had not answered yet) for as long as that took: the caller learned the job's end only
    after answering a question nobody waited for. on_elicit is now cancelled once the job no longer asks, and
    call_and_wait returns the job's result."""
    cancelled = anyio.Event()

    async def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            await anyio.Event().wait()  # the person never answers
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async with connect_for(protocol) as client:
        with anyio.fail_after(30):
            result = await call_and_wait(client, "confirm", {"wait": 3}, on_elicit=on_elicit)
    assert result.content[0].text == "no answer: timeout"  # type: ignore[union-attr]
    assert cancelled.is_set()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_error_of_the_answerer_reaches_the_caller_as_raised(protocol: str) -> None:
    """The answerer is asked beside a watch on the job: its error reaches call_and_wait's caller as it was raised,
    not wrapped in an exception group."""

    async def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        raise LookupError("nobody at the keyboard")

    async with connect_for(protocol) as client:
        with anyio.fail_after(30), pytest.raises(LookupError, match="nobody at the keyboard"):
            await call_and_wait(client, "confirm", {}, on_elicit=on_elicit)
