"""Job tools whose results hold content blocks the MCP cannot carry as they are (loaded with
`--tools tests.e2e.block_tools` by test_result_blocks_e2e)."""

from __future__ import annotations

from typing import Any

from vibe_jobs import job_tool

IMAGE = {"type": "image", "data": "aGk=", "mimeType": "image/png"}  # a block that is fine, kept as it is
BLOCKS: dict[str, dict[str, Any]] = {
    "not_base64": {"type": "image", "data": "not base64!!", "mimeType": "image/png"},
    "audio_not_base64": {"type": "audio", "data": "%%%%", "mimeType": "audio/wav"},
    "blob_not_base64": {"type": "resource", "resource": {"uri": "file:///x", "blob": "%%%"}},
    "no_mime_type": {"type": "image", "data": "aGk="},
    "video": {"type": "video", "url": "https://example.com/v.mp4"},
    "text_not_string": {"type": "text", "text": 5},
}


def _returning(kind: str) -> Any:
    async def tool() -> dict[str, Any]:
        return {"content": [{"type": "text", "text": "see"}, BLOCKS[kind], IMAGE]}

    tool.__name__ = f"returns_{kind}"
    return tool


for _kind in BLOCKS:
    job_tool(description=f"Return a result holding a {_kind} block")(_returning(_kind))
