"""A job whose result holds a content block the MCP cannot carry as it is stays readable, against the real
`vibe-jobs serve` over stdio (raw frames: the answer exactly as sent).

get-job-result shows a completed job's result blocks in its own content. A block of a type the MCP has no
model for ("video") or missing a required field (an image without mimeType) made every get-job-result of the
job answer "Error executing tool get-job-result", with no status: no client could read the job again. An
image, audio or blob whose data is not base64 was sent as it was: the TypeScript SDK's client (1.32) checks
each block's base64 and fails the whole call ("Invalid Base64 string"), so its agent could not read the job
either. Such a block is shown as a text saying why; the stored result (structuredContent.result) is unchanged.
`vibe_jobs.client.call_and_wait` (what `vibe-jobs call` runs) built its CallToolResult from that stored result
and failed with a ValidationError, in both eras and through the tasks extension: it gives the same text. So
does the tasks extension's `tasks/get`, whose result a client reads as a CallToolResult.
"""

from __future__ import annotations

import base64
import binascii

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, TextContent

from tests.e2e.block_tools import BLOCKS, IMAGE
from tests.e2e.conftest import stdio_params
from tests.e2e.raw_stdio import raw_stdio
from tests.e2e.test_tasks_e2e import start_task, until_terminal
from vibe_jobs.client import TasksClientExtension, call_and_wait

pytestmark = pytest.mark.timeout(60)


def base64_ok(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@pytest.mark.parametrize("kind", BLOCKS)
async def test_a_result_block_the_mcp_cannot_carry_leaves_the_job_readable(kind: str) -> None:
    async with raw_stdio(tools="tests.e2e.block_tools") as raw:
        started = await raw.call(f"returns_{kind}", {})
        job_id = started["result"]["structuredContent"]["jobId"]
        answer = await raw.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
    result = answer["result"]
    status = result.get("structuredContent") or {}
    assert status.get("status") == "completed" and not result.get("isError"), result
    assert status["result"]["content"][1] == BLOCKS[kind], "the stored result is kept as the tool gave it"
    blocks = result["content"]
    assert blocks[-1] == IMAGE, "a block that fits is shown as it is"
    shown = blocks[-2]
    assert shown["type"] == "text" and "cannot be shown" in shown["text"], blocks
    for block in blocks:
        if block["type"] in ("image", "audio"):
            assert base64_ok(block["data"]) and isinstance(block.get("mimeType"), str), block
        if block["type"] == "resource":
            assert "blob" not in block["resource"] or base64_ok(block["resource"]["blob"]), block


def block_tools_client(mode: str, tasks: bool) -> Client:
    params = stdio_params()
    params.args = ["tests.e2e.block_tools" if a == "tests.e2e.sample_tools" else a for a in params.args]
    extensions = [TasksClientExtension()] if tasks else None
    return Client(stdio_client(params), mode=mode, read_timeout_seconds=30, extensions=extensions)


@pytest.mark.parametrize("kind", ["video", "text_not_string", "not_base64"])
async def test_a_tasks_result_holds_the_block_told_as_a_text(kind: str) -> None:
    async with block_tools_client("auto", tasks=True) as client:
        handle = await start_task(client, f"returns_{kind}", {})
        task = await until_terminal(client, handle.task_id)
    assert task["status"] == "completed", task
    result = CallToolResult.model_validate(task["result"])
    said = [b.text for b in result.content if isinstance(b, TextContent)]
    assert said[0] == "see" and "cannot be shown" in said[1], result.content


@pytest.mark.parametrize("kind", ["video", "text_not_string", "not_base64"])
@pytest.mark.parametrize("how", ["legacy", "auto", "tasks"])
async def test_call_and_wait_gives_the_result_with_the_block_told_as_a_text(kind: str, how: str) -> None:
    async with block_tools_client("legacy" if how == "legacy" else "auto", tasks=how == "tasks") as client:
        result = await call_and_wait(client, f"returns_{kind}", {})
    assert not result.is_error
    said = [b.text for b in result.content if isinstance(b, TextContent)]
    assert said[0] == "see" and "cannot be shown" in said[1], result.content
    assert result.content[-1].model_dump(by_alias=True, exclude_none=True) == IMAGE
