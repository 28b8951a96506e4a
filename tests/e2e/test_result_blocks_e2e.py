"""A job whose result holds a content block the MCP cannot carry as it is stays readable, against the real
`vibe-jobs serve` over stdio (raw frames: the answer exactly as sent).

get-job-result shows a completed job's result blocks in its own content. A block of a type the MCP has no
model for ("video") or missing a required field (an image without mimeType) made every get-job-result of the
job answer "Error executing tool get-job-result", with no status: no client could read the job again. An
image, audio or blob whose data is not base64 was sent as it was: the TypeScript SDK's client (1.32) checks
each block's base64 and fails the whole call ("Invalid Base64 string"), so its agent could not read the job
either. Such a block is shown as a text saying why; the stored result (structuredContent.result) is unchanged.
"""

from __future__ import annotations

import base64
import binascii

import pytest

from tests.e2e.block_tools import BLOCKS, IMAGE
from tests.e2e.raw_stdio import raw_stdio

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
