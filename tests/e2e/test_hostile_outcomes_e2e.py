"""Job outcomes a hostile tool makes, against the real server: results and progress metadata with shared
references or values JSON cannot carry, exceptions whose text cannot be had or is huge. Each job ends (it is
never left running) and the server goes on answering everyone."""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import BASE_ENV, stdio_client_for
from tests.e2e.test_builtin_tools import finish
from tests.e2e.test_jobs_e2e import start, texts
from tests.e2e.test_tools_attacks import stdio_server

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

HOSTILE = {"VIBE_JOBS_TOOLS": "tests.e2e.hostile_tools"}
CYCLE = {"n": 1, "a": "<cycle>", "b": "<cycle>"}  # tests.e2e.hostile_tools._shared("cycle"), made safe


async def ended(client: Client, tool: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run a job to its end, and check that the server still answers: (its text, its status message).
    Bounded: a server that stops answering fails the test rather than hanging it."""
    with anyio.fail_after(40):
        job_id = await start(client, tool, args)
        result, body = await finish(client, job_id, seconds=20)
        assert (await client.call_tool("job-stats", {})).structured_content is not None, "the server answers"
    return texts(result), body


def stored_text(body: dict[str, Any]) -> str:
    """The text of a finished job's stored result."""
    return str(body["result"]["content"][0]["text"])


@pytest.mark.parametrize("kind", ["cycle", "dag"])
async def test_shared_references_in_a_structured_result_are_stored_cut_and_the_server_answers(kind: str) -> None:
    cap = 1 << 20  # the million values kept of 2^40 are 2.5 MB of JSON: cut to this, so the answer is small
    async with stdio_client_for("auto", {**HOSTILE, "VIBE_JOBS_MAX_RESULT_BYTES": str(cap)}) as client:
        _text, body = await ended(client, "shared_structured", {"kind": kind})
    assert body["status"] == "completed", body
    structured = body["result"]["structuredContent"]
    if kind == "cycle":
        assert structured == {"v": CYCLE}
    else:
        assert structured["truncated"] is True and cap < structured["originalBytes"] < 4 * cap


@pytest.mark.parametrize("kind", ["cycle", "dag"])
async def test_shared_references_in_a_plain_result_are_stored_cut_and_the_server_answers(kind: str) -> None:
    async with stdio_client_for("auto", HOSTILE) as client:
        text, body = await ended(client, "shared_plain", {"kind": kind})
    assert body["status"] == "completed", body
    if kind == "cycle":
        assert body["result"]["structuredContent"] == CYCLE and json.loads(stored_text(body)) == CYCLE
    else:
        assert "<too many values>" in text


async def test_a_result_cut_to_the_values_a_result_keeps_says_so() -> None:
    """A flat result within the size limit, but past the values walked: kept to its first values and marked as a
    result cut by its size is, in its structured content and in its text."""
    async with stdio_client_for("auto", HOSTILE) as client:
        text, body = await ended(client, "many_flags", {})
    assert body["status"] == "completed", body
    structured = body["result"]["structuredContent"]
    assert structured["truncated"] is True and structured["maxValues"] == 1_000_000
    assert len(structured["flags"]) == 999_900 and structured["flags"][-1] == "<too many values>"
    assert json.loads(stored_text(body)) == {"flags": structured["flags"]}, "its JSON text is still JSON"
    assert "[result truncated: cut to 1,000,000 values" in text


@pytest.mark.parametrize("kind", ["cycle", "dag"])
async def test_shared_references_in_progress_metadata_are_stored_cut_and_the_server_answers(kind: str) -> None:
    async with stdio_client_for("auto", HOSTILE) as client:
        _text, body = await ended(client, "shared_metadata", {"kind": kind})
    assert body["status"] == "completed", body
    metadata = body["details"]["metadata"]
    if kind == "cycle":
        assert metadata == {"v": CYCLE}
    else:
        assert "<too many values>" in json.dumps(metadata)


@pytest.mark.parametrize(
    ("kind", "structured"),
    [
        ("nan", {"x": None, "y": [None]}),
        ("bytes", {"b": "b'\\xff\\x00'"}),
        ("set", {"s": "{1}"}),
        ("bigint", {"n": "<integer too large>"}),
        ("generator", {"result": "<generator object"}),
    ],
)
async def test_a_plain_result_json_cannot_carry_completes_as_the_readme_says(
    kind: str, structured: dict[str, Any]
) -> None:
    """README: NaN and infinities become null, other objects their repr (a plain dict or list too, not only a
    CallToolResult)."""
    async with stdio_client_for("auto", HOSTILE) as client:
        _text, body = await ended(client, "unencodable", {"kind": kind})
    assert body["status"] == "completed", body
    shown = body["result"]["structuredContent"]
    if kind == "generator":
        assert shown["result"].startswith(structured["result"])
    else:
        assert shown == structured and json.loads(stored_text(body)) == structured


async def test_an_exception_whose_text_cannot_be_had_fails_its_job() -> None:
    async with stdio_client_for("auto", HOSTILE) as client:
        text, body = await ended(client, "raise_unprintable", {})
    assert body["status"] == "failed", body
    assert "failed: UnprintableError: <UnprintableError: str() failed>" in text


async def test_a_bug_while_deciding_a_failed_jobs_outcome_still_fails_the_job() -> None:
    """The exception's `retryable` raises while the outcome is decided: the job fails saying so, not left running."""
    async with stdio_client_for("auto", HOSTILE) as client:
        text, body = await ended(client, "raise_undecidable", {})
    assert body["status"] == "failed", body
    assert "ended without an outcome" in text and "RuntimeError: retryable exploded" in text


async def test_a_huge_exception_message_is_cut_in_the_log_as_on_the_job() -> None:
    env = {"PATH": "/usr/bin:/bin", **BASE_ENV, **HOSTILE}
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_server(env, errlog=errlog) as client:
            text, body = await ended(client, "raise_huge", {"mb": 10})
        errlog.seek(0)
        log = errlog.read()
    assert body["status"] == "failed" and "ValueError: xxx" in text and "x [cut]" in text
    assert "Traceback" in log and '"job.raised"' in log and "xxxx" in log
    assert len(log) < 50_000, f"the log holds {len(log):,} characters for one failure"
