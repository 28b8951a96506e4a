"""Jobs that talk back, seen from the client side (`vibe_jobs.client.call_and_wait`, `vibe-jobs call`), against the
real `vibe-jobs serve` in both eras and with the tasks extension."""

from __future__ import annotations

from typing import Any

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
