"""Hostile input against the real server: malformed frames, answers JSON cannot carry, tracebacks, signals.

Each test starts the real `vibe-jobs serve` (stdio, driven frame by frame or by the real MCP client, and
streamable HTTP) and asserts what a user relies on: every request gets an answer, the transport lives,
nothing but the error's own request is affected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequestParams, ElicitResult

from tests.e2e.conftest import MODES, ROOT, start_http, stdio_client_for
from tests.e2e.proxy_fixtures import wait_for as wait_until
from tests.e2e.raw_stdio import raw_stdio
from tests.e2e.test_builtin_tools import finish
from tests.e2e.test_crash_recovery import error_text, submit, wait_for
from tests.e2e.test_crash_recovery import read as read_job
from tests.e2e.test_identity_e2e import ALICE
from tests.e2e.test_identity_e2e import serve as serve_with_tokens
from tests.e2e.test_jobs_e2e import read, start, structured, texts
from tests.e2e.test_tools_attacks import stdio_server
from tests.pg import postgres_url, with_new_schema

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

HOSTILE = "tests.e2e.hostile_tools"
SECRET_QUESTIONS = "tests.e2e.secret_question_tools"
DEEP = b"[" * 10_000 + b"]" * 10_000
MALFORMED: list[tuple[bytes, int | str | None]] = [
    (b"{not json", None),
    (b'{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"a":' + DEEP + b"}}", 7),
    (b'{"jsonrpc":"2.0","id":"big","method":"tools/list","params":{"a":' + b"9" * 5000 + b"}}", "big"),
    (b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\\ud800"}}}', 9),
    (b'{"jsonrpc":"2.0","id":10,"method":"tools/list","params":{"a":"\xff\xfe"}}', 10),
    (b"[1, 2, 3]", None),
    (b'{"jsonrpc":"2.0","id":11}', 11),
    (b"\xff\xfe\x00garbage", None),
    # an id no answer can carry (a lone surrogate): answered with id null; it ended the server
    (b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', None),
    (
        b'{"jsonrpc":"2.0","id":"a\\udc00b","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}',
        None,
    ),
    (b'{"jsonrpc":"2.0","id":"\\ud800", garbage', None),
    (b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"a":"' + b"x" * (5 << 20) + b'"}}', 3),  # over 4 MiB
]


async def test_malformed_stdio_frames_are_answered_and_the_next_request_too() -> None:
    async with raw_stdio() as server:
        for frame, request_id in MALFORMED:
            await server.send(frame)
            answer = await server.answer(seconds=5)
            assert answer["id"] == request_id and answer["error"]["code"] in (-32700, -32600), answer
            assert "Traceback" not in json.dumps(answer) and len(answer["error"]["message"]) < 1000
            listed = await server.request("tools/list")
            assert any(tool["name"] == "echo" for tool in listed["result"]["tools"])
        jobs = await server.call("list-jobs", {})
        assert jobs["result"]["structuredContent"]["jobs"] == [], "no malformed frame created a job"


async def test_a_call_over_the_frame_limit_is_answered_at_once_with_its_id() -> None:
    """The client's request is answered by its id, so the call fails at once (the answer had id null, and
    the real client waited for its own time-out); the server answers the next call."""
    async with stdio_client_for("legacy") as client:
        with anyio.fail_after(10):
            with pytest.raises(MCPError, match="over the limit of"):
                await client.call_tool("echo", {"text": "x" * (5 << 20)})
        assert not (await client.call_tool("list-jobs", {})).is_error


async def test_the_same_frames_over_http_are_answered_as_errors_too() -> None:
    with start_http("streamable-http") as http:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=10) as client:
            for frame, _ in MALFORMED[:-1]:  # HTTP has its own body limit (413)
                response = await client.post(http.url, content=frame, headers=headers)
                assert response.status_code in (400, 404, 406, 415, 422), response.text[:200]
                assert "Traceback" not in response.text
        assert http.proc.poll() is None


async def test_a_dashboard_post_with_a_malformed_referer_is_refused_not_a_server_error() -> None:
    """The same-origin check read a Referer (sent without Origin) with `urlsplit`, which raises on an unclosed IPv6
    bracket: 500 and a logged traceback for every such post, from anyone who reaches a loopback server without
    authentication (helper-106). It is not this origin: 403."""
    with start_http("streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}) as http:
        base = f"http://127.0.0.1:{http.port}"
        async with httpx.AsyncClient(timeout=10) as client:
            for referer in ("http://[::1/jobs/x", "http://[", "http://127.0.0.1:99999999/"):
                answer = await client.post(
                    f"{base}/jobs/{'0' * 32}/cancel", data={"csrf": "x"}, headers={"Referer": referer}
                )
                assert answer.status_code == 403, (referer, answer.status_code, answer.text[:200])
        http.errlog.seek(0)
        logged = http.errlog.read().decode()
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged


async def test_refused_answers_to_a_question_for_a_secret_do_not_put_the_secret_in_the_log() -> None:
    """A job asks its user for an API key; the client's first reply is too short (refused by the flat check of the
    schema), its second is long enough but not of the key's pattern (refused by the job's own model). Each
    refusal was logged at warning with the value as given (the model's, pydantic's whole error with
    `input_value=...`), and put to the answerer again in the question: the flat check's says `***` for a field
    named like a secret (VIBE_JOBS_SECRET_PATTERN), the model's names no value (helper-106)."""
    wrong = ["sk-LEAKED-0123", "xx-LEAKED-BY-PATTERN-0123"]
    good = "sk-GOOD-0123456789abcdef"
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"api_key": [*wrong, good][len(asked) - 1]})

    with start_http("streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}, ["--tools", SECRET_QUESTIONS]) as http:
        async with Client(http.url, mode="legacy", read_timeout_seconds=60, elicitation_callback=answer) as client:
            job_id = await start(client, "ask_api_key", {})
            with anyio.fail_after(60):
                while (body := (await read(client, job_id, waitSeconds=5))[1])["status"] not in ("completed", "failed"):
                    pass
        http.errlog.seek(0)
        logged = http.errlog.read().decode()
    assert body["status"] == "completed" and f"a key of {len(good)} characters" in json.dumps(body["result"]), body
    assert len(asked) == 3 and "***" in asked[1] and "api_key: String should match pattern" in asked[2], asked
    assert logged.count("job.answer_refused") == 2, logged
    assert not any(secret in text for secret in (*wrong, good) for text in (logged, *asked)), (logged, asked)


# requests whose id no request may have: the SDK's model took them for notifications, which nobody answers
WRONG_IDS = [b"null", b"1.5", b"true", b"{}", b"[]"]


def wrong_id_frame(request_id: bytes) -> bytes:
    call = b'"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}'
    return b'{"jsonrpc":"2.0","id":' + request_id + b"," + call + b"}"


async def test_a_request_with_an_id_of_a_wrong_type_is_refused_over_stdio() -> None:
    async with raw_stdio() as server:
        for request_id in WRONG_IDS:
            await server.send(wrong_id_frame(request_id))
            answer = await server.answer(seconds=5)
            assert answer["id"] is None and answer["error"]["code"] == -32600, answer
            assert "id must be a string or an integer" in answer["error"]["message"]
        jobs = await server.call("list-jobs", {})
        assert jobs["result"]["structuredContent"]["jobs"] == [], "a refused request ran"


async def _chunks(frame: bytes) -> AsyncIterator[bytes]:
    """`frame` as a body that declares no length (Transfer-Encoding: chunked), in two parts."""
    yield frame[:10]
    yield frame[10:]


async def test_a_request_with_an_id_of_a_wrong_type_is_refused_over_http() -> None:
    with start_http("streamable-http") as http:
        async with Client(http.url, mode="legacy") as client:
            before = await client.call_tool("list-jobs", {})
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=10) as raw:
            hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
            init = await raw.post(http.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
                                  headers=headers)  # fmt: skip
            headers["mcp-session-id"] = init.headers["mcp-session-id"]  # a session, so only the id is wrong
            done = await raw.post(http.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                                  headers=headers)  # fmt: skip
            assert done.status_code == 202
            for request_id in WRONG_IDS:
                frame = wrong_id_frame(request_id)
                # with a length, and chunked (no length: it was not looked at, answered 202, never answered)
                for body in (frame, _chunks(frame)):
                    response = await raw.post(http.url, content=body, headers=headers)
                    assert response.status_code == 400, (request_id, response.status_code, response.text[:200])
                    error = response.json()["error"]
                    assert error["code"] == -32600 and "id must be a string or an integer" in error["message"]
        async with Client(http.url, mode="legacy") as client:
            assert (await client.call_tool("list-jobs", {})).structured_content == before.structured_content
        assert http.proc.poll() is None


# numbers a float cannot hold (1e400 is valid JSON; NaN and Infinity are what Python's json writes by default)
NON_FINITE = [b"1e400", b"-1e400", b"NaN", b"Infinity"]


def call_frame(request_id: int, tool: str, arguments: bytes) -> bytes:
    params = b'{"name":"' + tool.encode() + b'","arguments":' + arguments + b"}"
    return b'{"jsonrpc":"2.0","id":' + str(request_id).encode() + b',"method":"tools/call","params":' + params + b"}"


@pytest.mark.parametrize("number", NON_FINITE, ids=lambda n: n.decode())
async def test_a_number_no_float_holds_is_refused_naming_its_argument(number: bytes) -> None:
    """Issue 3: a bad call is answered with isError naming the field. A job tool's float argument of 1e400 was
    refused as 'params must be JSON-serialisable: Out of range float values...' (no field named), and
    get-job-result's waitSeconds of NaN as 'should be less than or equal to 50'."""
    calls = [
        ("sleepy", b'{"seconds":' + number + b"}", "sleepy': seconds"),
        ("submit-job", b'{"tool":"sleepy","arguments":{"seconds":' + number + b"}}", "sleepy': seconds"),
        ("get-job-result", b'{"jobId":"nope","waitSeconds":' + number + b"}", "waitSeconds"),
    ]
    async with raw_stdio() as server:
        for request_id, (tool, arguments, field) in enumerate(calls, 1):
            await server.send(call_frame(request_id, tool, arguments))
            answer = await server.answer(seconds=5)
            assert answer["id"] == request_id and answer["result"]["isError"], answer
            assert f"{field}: Input should be a finite number" in answer["result"]["content"][0]["text"], answer
        jobs = await server.call("list-jobs", {})
        assert jobs["result"]["structuredContent"]["jobs"] == [], "a refused call created a job"


# --- 3. answers that JSON cannot carry ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_with_a_lone_surrogate_is_stored_safely_and_read_over_stdio(mode: str) -> None:
    async with stdio_client_for(mode, {"VIBE_JOBS_TOOLS": HOSTILE}) as client:
        for tool in ("surrogate", "not_a_number"):
            job_id = await start(client, tool, {})
            result, body = await finish(client, job_id)
            assert body["status"] == "completed", texts(result)
        surrogate_job = await start(client, "surrogate", {})
        result, body = await finish(client, surrogate_job)
        assert "bad \\udcff end" in texts(result)
        assert body["details"]["metadata"]["k\\udcff"] == "v\\udcff"
        assert "a diagnostic \\udcff line" in body["details"]["diagnostics"]
        with pytest.raises(Exception, match="could not be encoded as JSON"):
            await client.call_tool("plain-surrogate", {})
        assert (await client.call_tool("job-stats", {})).structured_content is not None, "the transport lives"


async def test_an_unencodable_plain_answer_fails_its_request_over_http() -> None:
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": HOSTILE}) as http:
        async with Client(http.url, mode="auto", read_timeout_seconds=30) as client:
            with pytest.raises(Exception, match="could not be encoded as JSON"):
                await client.call_tool("plain-surrogate", {})
            job_id = await start(client, "surrogate", {})
            result, body = await finish(client, job_id)
            assert body["status"] == "completed" and "bad \\udcff end" in texts(result)


def plant_bad_results(db: Path, job_id: str) -> list[str]:
    """Copies of a finished job whose stored result holds what JSON cannot carry, written by hand."""
    bad = {
        "surrogate": '{"content":[{"type":"text","text":"lone \\ud800 here"}],"isError":false}',
        "nan": '{"content":[{"type":"text","text":"n"}],"structuredContent":{"x":NaN,"y":Infinity},"isError":false}',
        "bytes": b'{"content":[{"type":"text","text":"raw \xff\xfe bytes"}],"isError":false}',
        "text": b'{"content":[{"type":"text","text":"raw \xff\xfe text"}],"isError":false}',
        # 300 levels deep, plain ASCII: stored before results were cut at 100 levels, it could not be read
        "deep": '{"content":[{"type":"text","text":"deep"}],"structuredContent":'
        + '{"d":' * 300
        + "1"
        + "}" * 300
        + ',"isError":false}',
    }
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # committed, then closed
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
        row = dict(zip(columns, conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone(), strict=True))
        for suffix, text in bad.items():
            row |= {"id": f"{job_id[:-8]}bad{suffix[:5]:<5}", "result": text}
            marks = ",".join("CAST(? AS TEXT)" if c == "result" and suffix == "text" else "?" for c in columns)
            conn.execute(f"INSERT INTO jobs ({','.join(columns)}) VALUES ({marks})", [row[c] for c in columns])
    return [f"{job_id[:-8]}bad{suffix[:5]:<5}" for suffix in bad]


async def test_results_written_into_sqlite_by_hand_do_not_kill_later_servers(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIBE_JOBS_TOOLS": HOSTILE}
    db = tmp_path / "jobs.db"
    async with stdio_server(env, f"sqlite:///{db}") as client:
        job_id = await start(client, "not_a_number", {})
        await finish(client, job_id)
    planted = plant_bad_results(db, job_id)
    for _ in range(2):  # and again: reading them changed nothing
        async with stdio_server(env, f"sqlite:///{db}") as client:
            listed = await client.call_tool("list-jobs", {})
            assert len((listed.structured_content or {}).get("jobs", ())) == 6, texts(listed)
            for bad in planted:
                result, body = await read(client, bad)
                assert body["status"] == "completed", texts(result)
            assert "lone \\ud800 here" in texts((await read(client, planted[0]))[0])
            assert (await read(client, planted[1]))[1]["result"]["structuredContent"] == {"x": None, "y": None}
            assert "raw \ufffd\ufffd bytes" in texts((await read(client, planted[2]))[0])
            assert "raw \ufffd\ufffd text" in texts((await read(client, planted[3]))[0])
            deep = json.dumps((await read(client, planted[4]))[1]["result"]["structuredContent"])
            assert deep.count('"d"') < 100 and "<nested too deep>" in deep


# --- 15. tracebacks stay in the server log ---------------------------------------------------------


async def test_a_job_that_raises_gives_one_line_and_the_traceback_goes_to_the_log() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIBE_JOBS_TOOLS": HOSTILE}
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_server(env, errlog=errlog) as client:
            job_id = await start(client, "deep_raise", {})
            result, body = await finish(client, job_id)
        errlog.seek(0)
        log = errlog.read()
    assert body["status"] == "failed"
    assert body["message"].endswith("RuntimeError: boom at the bottom") and "\n" not in body["message"]
    assert "Traceback" not in json.dumps(body) and "Traceback" not in texts(result)
    assert all("\n" not in line and len(line) < 300 for line in body["details"]["diagnostics"])
    assert "Traceback" in log and "boom at the bottom" in log, "the traceback is in the server's log"


async def test_a_secret_argument_in_an_error_is_masked_on_the_job_and_in_the_log() -> None:
    """The token named in the tool's error (and in its cause) is `***` in the job's result, message, progress
    message and diagnostics (the retry note too), in list-jobs, and in the logged traceback."""
    secret = "sk-SECRET-123456"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIBE_JOBS_TOOLS": HOSTILE}
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_server(env, errlog=errlog) as client:
            job_id = await start(client, "leak_token", {"api_token": secret, "user": "alice"})
            result, body = await finish(client, job_id)
            listed = (await client.call_tool("list-jobs", {})).structured_content
            assert listed is not None
        errlog.seek(0)
        log = errlog.read()
    shown = "RuntimeError: login of alice failed with token ***"
    assert body["status"] == "failed" and body["message"].endswith(shown), body["message"]
    assert (
        listed["jobs"][0]["progressMessage"] == f"Job failed: {shown}" and body["result"]["content"][0]["text"] == shown
    )
    assert any(line.startswith("retry 1/1 in ") for line in body["details"]["diagnostics"])
    assert secret not in json.dumps(body) + texts(result) + json.dumps(listed)
    assert "Traceback" in log and "the server refused ***" in log and shown in log
    assert secret not in log


# --- 13. SIGTERM on stdio -------------------------------------------------------------------------


async def test_sigterm_on_stdio_stops_at_once_and_jobs_end_as_on_a_normal_shutdown(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with raw_stdio(store) as server:
        started = await server.call("sleepy", {"seconds": 60})
        job_id = started["result"]["structuredContent"]["jobId"]
        await until_status(server, job_id, "running")
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # stdin stays open: no next line will come
        with anyio.fail_after(10):
            code = await server.proc.wait()
        took = time.monotonic() - began
    assert took < 3.0, f"SIGTERM took {took:.1f} s"
    assert code == 0
    async with raw_stdio(store) as again:  # the lease was released: recovery ends the job at once
        body = await until_status(again, job_id, "failed")
    assert "interrupted" in body["message"]


async def until_status(server: Any, job_id: str, status: str, seconds: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        answer = await server.call("get-job-result", {"jobId": job_id, "waitSeconds": 0.2})
        body: dict[str, Any] = answer["result"]["structuredContent"]
        if body["status"] == status or time.monotonic() > deadline:
            assert body["status"] == status, body
            return body


# --- 11. results are capped, with a marker ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_over_the_cap_is_cut_with_a_clear_marker(mode: str) -> None:
    env = {"VIBE_JOBS_TOOLS": HOSTILE, "VIBE_JOBS_MAX_RESULT_BYTES": "65536"}
    async with stdio_client_for(mode, env) as client:
        job_id = await start(client, "big", {"kb": 600})
        result, body = await finish(client, job_id)
        small = await start(client, "big", {"kb": 10})
        small_result, _ = await finish(client, small)
    assert body["status"] == "completed"
    marker = body["result"]["structuredContent"]
    assert marker["truncated"] is True and marker["maxResultBytes"] == 65536 and marker["originalBytes"] > 600_000
    assert "[result truncated: " in texts(result) and "VIBE_JOBS_MAX_RESULT_BYTES" in texts(result)
    assert len(json.dumps(body["result"])) <= 65536
    assert "z" * 1000 in texts(result), "the start of the text is kept"
    assert "truncated" not in texts(small_result) and "z" * 10240 in texts(small_result)


KB_UNDER_THE_CAP = 3000  # a 3 MB result: stored whole (the cap is 4 MiB), three times the client's 1 MiB event


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_larger_than_one_http_answer_is_shown_in_part_there_and_whole_over_stdio(mode: str) -> None:
    """The MCP Python client reads no server-sent event over 1 MiB: a job's result of 3 MB (under the 4 MiB cap;
    map-codebase of 1,500 files is one) failed get-job-result and job:// over HTTP with "SSE stream failed:
    Server-sent event exceeded the 1048576 byte limit", for good. Over HTTP it is shown in part, saying so."""
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": HOSTILE}) as server:
        async with Client(server.url, mode=mode, read_timeout_seconds=60) as client:
            job_id = await start(client, "big", {"kb": KB_UNDER_THE_CAP})
            result, body = await finish(client, job_id)
            resource = json.loads((await client.read_resource(f"job://{job_id}")).contents[0].text)  # type: ignore[union-attr]
    assert body["status"] == "completed" and not result.is_error
    for shown in (body["result"], resource["result"]):
        marker = shown["structuredContent"]
        assert marker["truncated"] is True and marker["maxAnswerBytes"] == 1024 * 1024
        assert marker["originalBytes"] > KB_UNDER_THE_CAP * 1024
        assert "z" * 100_000 in shown["content"][0]["text"], "the start of the text is shown"
    assert "[shown in part: the result is " in texts(result) and f"vibe-jobs jobs show {job_id}" in texts(result)
    answer = result.model_dump_json(by_alias=True, exclude_none=True)
    assert len(answer) < 1024 * 1024, len(answer)
    async with stdio_client_for(mode, {"VIBE_JOBS_TOOLS": HOSTILE}) as client:
        job_id = await start(client, "big", {"kb": KB_UNDER_THE_CAP})
        result, body = await finish(client, job_id)
    assert body["result"]["content"][0]["text"] == "z" * KB_UNDER_THE_CAP * 1024, "whole over stdio"
    assert "shown in part" not in texts(result)


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_nested_too_deep_for_its_readers_is_kept_to_a_depth_they_read(mode: str) -> None:
    """A result 250-900 levels deep encoded, so it was stored whole, and nobody could read it: the MCP client
    failed to parse the answer ("Failed to parse SSE message"), the server failed to serialise it at 500."""
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": HOSTILE}) as server:
        async with Client(server.url, mode=mode, read_timeout_seconds=60) as client:
            job_id = await start(client, "nested", {"depth": 300})
            result, body = await finish(client, job_id)
            resource = json.loads((await client.read_resource(f"job://{job_id}")).contents[0].text)  # type: ignore[union-attr]
    assert body["status"] == "completed" and not result.is_error
    for shown in (body["result"]["structuredContent"], resource["result"]["structuredContent"]):
        text = json.dumps(shown)
        assert text.startswith('{"top": {"down": {"down": ') and "<nested too deep>" in text
        assert text.count('"down"') < 100


@pytest.mark.parametrize("n", [80_000, 500_000])  # 320 KB whole, 2 MB shown in part
async def test_a_result_of_non_ascii_text_is_read_over_http_by_job_and_job_resource_alike(n: int) -> None:
    """The budget counted UTF-8 bytes, and job:// escaped every non-ASCII character: one emoji of 4 bytes went
    out as 14, and a result that fit (or had been cut to fit) passed the client's 1 MiB event limit."""
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": HOSTILE}) as server:
        async with Client(server.url, mode="legacy", read_timeout_seconds=60) as client:
            job_id = await start(client, "emoji", {"n": n})
            _, body = await finish(client, job_id)
            resource = json.loads((await client.read_resource(f"job://{job_id}")).contents[0].text)  # type: ignore[union-attr]
    assert body["status"] == resource["status"] == "completed"
    for shown in (body["result"], resource["result"]):
        assert shown["content"][0]["text"].startswith("\U0001f600" * 1000)
        assert ("shown in part" in shown["content"][0]["text"]) == (n == 500_000)


async def test_large_progress_metadata_and_diagnostics_leave_room_for_the_result_over_http() -> None:
    """The answer's budget counted the result only: 600 KB of progress metadata beside a 300 KB result passed
    the client's 1 MiB event limit (get-job-result with its default includeDetails failed)."""
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": HOSTILE}) as server:
        async with Client(server.url, mode="legacy", read_timeout_seconds=60) as client:
            job_id = await start(client, "chatty", {"metadata_kb": 600, "kb": 300, "diagnostics": 100})
            result, body = await finish(client, job_id)
    assert body["status"] == "completed" and not result.is_error
    assert body["details"]["metadata"] == {"truncated": True, "originalBytes": 614_411, "maxShownBytes": 65_536}
    assert body["result"]["content"][0]["text"].startswith("r" * 100_000)
    assert len(result.model_dump_json(by_alias=True, exclude_none=True)) < 1024 * 1024


# --- 9. the SQLite store is the owner's only ----------------------------------------------------------


async def test_the_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "jobs.db"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIBE_JOBS_TOOLS": HOSTILE}
    async with stdio_server(env, f"sqlite:///{db}") as client:
        await finish(client, await start(client, "not_a_number", {}))
        modes = {p.name: p.stat().st_mode & 0o777 for p in [db.parent, *db.parent.iterdir()]}
    assert modes.pop("dir") == 0o700, modes
    assert {"jobs.db", "jobs.db-wal", "jobs.db-shm"} <= set(modes) and set(modes.values()) == {0o600}, modes


# --- 17. what remains: a huge path, a mistyped store, a slow client ------------------------------------


async def test_a_two_megabyte_path_is_refused_naming_the_problem() -> None:
    async with stdio_client_for("auto", {"VIBE_JOBS_ROOTS": "/tmp"}) as client:
        result = await client.call_tool("map-codebase", {"path": "a/" * 1_000_000})
    assert result.is_error and "Error executing tool" not in texts(result)
    assert "path" in texts(result) and "4,096" in texts(result) and len(texts(result)) < 1000, texts(result)[:300]


def test_jobs_list_on_a_mistyped_store_refuses_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "jbos.db"
    cmd = [sys.executable, "-m", "vibe_jobs", "jobs", "list", "--store", f"sqlite:///{missing}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no job store at" in done.stderr and "Traceback" not in done.stderr
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_a_slow_client_cannot_hold_an_http_connection_open() -> None:
    with start_http("streamable-http", {"VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": "1"}) as http:
        silent = socket.create_connection(("127.0.0.1", http.port))
        slow = socket.create_connection(("127.0.0.1", http.port))
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the headers
        began = time.monotonic()
        for sock in (silent, slow):
            sock.settimeout(10)
            assert sock.recv(1024) == b"", "the server closes it (EOF)"
            sock.close()
        assert time.monotonic() - began < 5
        assert http.proc.poll() is None


def _half_sent_post(port: int, token: str | None = None) -> socket.socket:
    """A POST /mcp that declares 100 bytes of body and sends 10 of them."""
    sock = socket.create_connection(("127.0.0.1", port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\n"
    sock.sendall(f"{head}Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n".encode())
    sock.sendall(b'{"jsonrpc"')
    sock.settimeout(10)
    return sock


def test_a_body_that_never_ends_is_cut_off() -> None:
    """The deadline covered the headers only: a client that sent its headers and part of a body held the
    connection and what it sent for ever. The body must be complete 3x the header time-out after them."""
    with start_http("streamable-http", {"VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": "1"}) as http:
        began = time.monotonic()
        with _half_sent_post(http.port) as sock:
            assert sock.recv(1024) == b"", "the server closes it (EOF)"
        assert time.monotonic() - began < 8
        assert http.proc.poll() is None


def test_a_client_gone_mid_request_is_one_info_line_not_an_error_with_a_traceback() -> None:
    """The SDK's transport logged each request whose client went away before its body was read (a flaky network,
    a client killed mid-request) as an error with Starlette's 30-line ClientDisconnect traceback: over weeks the
    log filled with them, and an operator watching for errors saw the clients' troubles (helper-121's note)."""
    with start_http("streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}) as http:
        _half_sent_post(http.port).close()

        def read_log() -> str:
            http.errlog.seek(0)
            return str(http.errlog.read().decode())

        wait_until(lambda: "client disconnected" in read_log() or "Error handling POST" in read_log(), seconds=10)
        logged = read_log()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    gone = [line for line in lines if line["event"] == "a client disconnected before its request was read"]
    assert len(gone) == 1 and gone[0]["level"] == "info", logged[-3000:]
    assert "Traceback" not in logged and "ClientDisconnect" not in logged, logged[-3000:]
    assert not [line for line in lines if line["level"] == "error"], logged[-3000:]


def test_a_request_without_a_valid_token_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    """The request-id check read each body (up to 4 MiB) before the token was checked: a client with no token
    held memory and a connection for as long as its body did not end (100 of them: 75 -> 552 MiB; 300 took the
    file descriptors, and a job failed with "Too many open files"). It is answered 401 at once."""
    with serve_with_tokens(tmp_path, VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS="1") as server:
        for token in (None, "not-a-token"):
            with _half_sent_post(server.port, token) as sock:
                assert sock.recv(1024).startswith(b"HTTP/1.1 401 "), token
        with _half_sent_post(server.port, ALICE) as sock:  # a valid token: the body is awaited, then cut off
            assert sock.recv(1024) == b""


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("mode", MODES)
async def test_at_debug_level_no_answer_reaches_the_log_over_http(mode: str, transport: str) -> None:
    """sse_starlette logs every event it sends at debug level, and the SDK had Python's logging print it
    unredacted: a job's result (and whatever secret a tool returned in it) reached the server's log. Over SSE the
    SDK's transport (mcp.server.sse) logged every request body and every answer at debug level too."""
    secret = "sk-" + os.urandom(8).hex()
    with start_http(transport, {"VIBE_JOBS_LOG_LEVEL": "debug"}) as http:
        target = sse_client(http.url) if transport == "sse" else streamable_http_client(http.url)
        async with Client(target, mode=mode) as client:
            job_id = await start(client, "echo", {"text": secret})
            result, _ = await finish(client, job_id)
            assert secret in texts(result)
        http.errlog.seek(0)
        log = http.errlog.read().decode()
    assert "job" in log, "the debug log was written"
    assert secret not in log


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_a_malformed_sse_post_is_refused_without_its_body_in_the_log(level: str) -> None:
    """Over SSE the SDK logs a body it cannot parse with the parser's traceback, whose error quotes the body's
    start and end: a secret argument in a request with one bad escape (a lone surrogate) reached the server's
    log at the default level. The log keeps what was wrong, not the body; the session goes on. At debug level
    the SDK's dispatcher logged the same error again, as its repr ('transport yielded exception: ...')."""
    secret = "sk-" + os.urandom(8).hex()
    call = '"method":"tools/call","params":{"name":"login","arguments":{"user":"u","api_token":"' + secret
    with start_http("sse", {"VIBE_JOBS_LOG_LEVEL": level}) as http:
        base = f"http://127.0.0.1:{http.port}"
        async with httpx.AsyncClient(timeout=10) as raw, raw.stream("GET", http.url) as stream:
            lines = stream.aiter_lines()
            endpoint = await anext(line[len("data:") :].strip() async for line in lines if line.startswith("data:"))

            async def post(body: bytes) -> httpx.Response:
                return await raw.post(base + endpoint, content=body, headers={"Content-Type": "application/json"})

            hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
            assert (await post(json.dumps(init).encode())).status_code == 202
            for body in ('{"jsonrpc":"2.0","id":2,' + call + '\\ud800"}}}', '{"jsonrpc":"2.0","id":3,' + call + '"}}'):
                refused = await post(body.encode())
                assert refused.status_code == 400 and secret not in refused.text, refused.text
            assert (await post(b'{"jsonrpc":"2.0","id":4,"method":"ping"}')).status_code == 202
            answers = [line async for line in _until(lines, '"id":4')]
            assert any('"id":1' in line for line in answers) and secret not in "".join(answers)
        http.errlog.seek(0)
        log = http.errlog.read().decode()
    assert "Failed to parse message" in log and "Invalid JSON" in log, log[-2000:]
    assert level == "info" or "transport yielded exception: " in log, log[-2000:]  # what was wrong, not the body
    assert "mcp/server/sse.py" in log, log[-2000:]  # and where: the stack stays, without values
    assert secret not in log


async def _until(lines: AsyncIterator[str], needle: str) -> AsyncIterator[str]:
    """The SSE stream's lines up to the first one holding `needle` (failing after 10 s)."""
    with anyio.fail_after(10):
        async for line in lines:
            yield line
            if needle in line:
                return


PRINTY = """
import sys
from vibe_jobs import job_tool

print("printed while the module is imported")
sys.stdout.write("written to sys.stdout too\\n")


@job_tool(description="says hi")
async def printy_hi() -> str:
    return "hi"
"""


async def test_a_tools_module_that_prints_when_imported_does_not_reach_stdout_on_stdio(tmp_path: Path) -> None:
    """Its print was the first line on stdout, before the initialize answer (a strict client stops there).
    Modules given comma-separated in one --tools load each (the README's table says they may be)."""
    (tmp_path / "printy.py").write_text(PRINTY)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(tools="tests.e2e.sample_tools,printy", env=env, stderr=errlog) as server:
            tools = {tool["name"] for tool in (await server.request("tools/list"))["result"]["tools"]}
            assert {"printy_hi", "echo"} <= tools
        errlog.seek(0)
        logged = errlog.read().decode()
    assert "printed while the module is imported" in logged and "written to sys.stdout too" in logged


NOISY = """
import anyio
from vibe_jobs import JobContext, job_tool


@job_tool(description="prints as it starts and as it is cancelled")
async def noisy(job: JobContext) -> str:
    print("noisy: started", flush=True)
    try:
        await anyio.sleep_forever()
    finally:
        print("noisy: cleaning up after cancellation", flush=True)
    return "never"
"""


@pytest.mark.parametrize("stop", ["SIGTERM", "EOF"])
async def test_a_job_printing_as_shutdown_cancels_it_does_not_reach_stdout(tmp_path: Path, stop: str) -> None:
    """The wire was handed back to fd 1 before the running jobs were cancelled, so what they printed then was a
    line of the protocol stream that is not JSON-RPC (review helper-61 F1)."""
    (tmp_path / "noisy_tools.py").write_text(NOISY)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(tools="noisy_tools", env=env, stderr=errlog) as server:
            job_id = (await server.call("noisy", {}))["result"]["structuredContent"]["jobId"]
            await until_status(server, job_id, "running")
            await server.stop(stop)
            with anyio.fail_after(10):
                await server.proc.wait()
                rest = b"".join([chunk async for chunk in server.out])
        errlog.seek(0)
        logged = errlog.read().decode()
    assert "noisy: cleaning up after cancellation" in logged
    assert not [line for line in rest.splitlines() if line.strip() and not line.startswith(b'{"jsonrpc"')], rest


async def test_every_request_read_before_eof_is_answered() -> None:
    """`printf ... | vibe-jobs serve`: closing stdin ended the session at once, and the requests it was still
    answering went unanswered (review helper-65 F4: 1,001 sent, 907 answered)."""
    async with raw_stdio() as server:
        for n in range(600):
            await server.send({"jsonrpc": "2.0", "id": n, "method": "tools/list" if n % 2 else "ping"})
        await server.stop("EOF")
        with anyio.fail_after(30):
            rest = b"".join([chunk async for chunk in server.out])
    answered = {json.loads(line)["id"] for line in rest.splitlines() if line.strip()}
    assert answered >= set(range(600)), sorted(set(range(600)) - answered)[:10]


async def wait_channels(pid: int, done: Callable[[set[str]], bool]) -> None:
    """Until the /proc wait channels of the threads of process `pid` are `done` (20 s at most)."""
    with anyio.fail_after(20):
        while True:
            channels = set()
            async for task in anyio.Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    channels.add(await (task / "wchan").read_text())
            if done(channels):
                return
            await anyio.sleep(0.05)


async def left_stdin(pid: int) -> None:
    """Until no thread of process `pid` waits in a read of a pipe (its stdin reader saw the end of it)."""
    await wait_channels(pid, lambda channels: not any("pipe_read" in c or c == "pipe_wait" for c in channels))


async def test_sigterm_while_eof_waits_for_a_long_poll_prints_no_traceback() -> None:
    """The MCP client's stdio exit: stdin closed, 2 s, SIGTERM. With a long-poll still in flight the server waited
    up to 2 s too for its answer, and SIGTERM in that wait printed the stdin thread's CancelledError traceback."""
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(stderr=errlog) as server:
            job_id = (await server.call("sleepy", {"seconds": 60}))["result"]["structuredContent"]["jobId"]
            poll = {"name": "get-job-result", "arguments": {"jobId": job_id, "waitSeconds": 30}}
            await server.send({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": poll})
            await server.stop("EOF")
            await left_stdin(server.proc.pid)
            await server.stop("SIGTERM")
            with anyio.fail_after(10):
                code = await server.proc.wait()
        errlog.seek(0)
        logged = errlog.read().decode()
    assert code == 0 and "Traceback" not in logged and "CancelledError" not in logged, logged


async def blocked_writing(pid: int) -> None:
    """Until a thread of process `pid` waits in a write to a full pipe (its /proc wait channel)."""
    await wait_channels(pid, lambda channels: any(c.endswith("pipe_write") for c in channels))


@pytest.mark.parametrize("stop", ["SIGTERM", "EOF"])
async def test_a_client_that_stops_reading_does_not_keep_the_server_alive(stop: str) -> None:
    """Answers nobody read filled the pipe; the thread writing them blocked for ever, and the interpreter waited
    for it after SIGTERM or EOF: the process never ended (review helper-61 F2)."""
    async with raw_stdio() as server:
        for n in range(400):  # a few MB of tools/list answers, far past a pipe's 64 KiB; none of them read
            await server.send({"jsonrpc": "2.0", "id": n, "method": "tools/list"})
        await blocked_writing(server.proc.pid)
        await server.stop(stop)
        with anyio.fail_after(15):
            code = await server.proc.wait()
    assert code == 0


def test_over_http_stdout_stays_empty_and_the_access_log_is_json_on_stderr() -> None:
    """uvicorn wrote its access log to stdout as plain text (README: structlog to stderr, JSON)."""
    from tests.e2e.conftest import BASE_ENV, SERVER, free_port, stop, wait_for_port

    port = free_port()
    cmd = [*SERVER, "--transport", "streamable-http", "--port", str(port)]
    env = {**os.environ, **BASE_ENV, "VIBE_JOBS_LOG_LEVEL": "info"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        try:
            wait_for_port(port, proc)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        finally:
            stop(proc)
        out.seek(0)
        err.seek(0)
        written, logged = out.read(), err.read().decode()
    assert written == b"", written[:500]
    access = [json.loads(line) for line in logged.splitlines() if '"uvicorn.access"' in line]
    assert access and "GET /healthz" in access[0]["event"], logged[-2000:]


async def drop_schema(base: str, url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {url.rpartition('schema=')[2]} CASCADE")
    finally:
        await admin.close()


@pytest.mark.postgres
async def test_text_with_a_nul_is_kept_escaped_not_refused() -> None:
    """PostgreSQL's TEXT cannot hold a NUL: a progress message, a stage, a failure's message or a cancel
    reason holding one (a tool reading a binary file, an agent's argument) failed the write, and with it the
    job's progress, its outcome or the cancel. Every store keeps such text with the NUL shown as `\\x00`."""
    base = postgres_url("the NUL text test")
    url = with_new_schema(base, "vj_nul")
    try:
        with start_http("streamable-http", {}, ["--store", url, "--tools", "tests.e2e.nul_tools"]) as server:
            async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
                failing = await submit(client, "nul_fail", {})
                failed = await wait_for(client, failing, within=20)
                assert failed["status"] == "failed", failed
                assert failed["message"] == "Job failed: ValueError: before\\x00after", failed
                assert error_text(failed) == "ValueError: before\x00after"  # the result is JSON: kept as it was

                waiting = await submit(client, "nul_progress", {})
                running = await wait_for(client, waiting, ("running",), within=20)
                for _ in range(200):  # bounded: the progress lands just after the job starts
                    if running.get("message") != "Job started" and running["progress"] == 50:
                        break
                    running = await read_job(client, waiting, wait=0.05)
                assert running["message"] == "read a\\x00b", running
                assert running["details"]["currentStage"] == "stage\\x00one", running
                answer = await client.call_tool("cancel-job", {"jobId": waiting, "reason": "stop\x00now"})
                assert not answer.is_error, answer.content
                cancelled = await wait_for(client, waiting, within=20)
                assert cancelled["status"] == "cancelled", cancelled
                assert "stop\\x00now" in cancelled["message"], cancelled
    finally:
        await drop_schema(base, url)


# cursors no server gave out: a time past int64 ("99999999999999999999999:x") and an id holding a NUL ("1:x\0")
FORGED_CURSORS = ("OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk6eA", "MTp4AA")


@pytest.mark.parametrize(("store", "mode"), [("postgres", "auto"), ("postgres", "legacy"), ("sqlite", "auto")])
async def test_a_nul_in_an_id_or_a_filter_or_a_forged_cursor_is_refused_and_costs_the_store_nothing(
    store: str, mode: str, tmp_path: Path
) -> None:
    """PostgreSQL refuses a statement whose text holds a NUL or whose number is past int64: a job id, a
    schedule id, a tool filter or a forged list cursor (an agent's argument, a dashboard URL) failed as the
    store's error, and /health turned degraded for minutes, naming the store; on SQLite the forged cursor
    was a bare "Error executing tool" and a 500 page. The tools refuse such a value naming the field; the
    dashboard answers as for any unknown job or bad cursor; the store's health is untouched."""
    if store == "postgres":
        pytest.importorskip("asyncpg")
        base = postgres_url("the NUL id test")
        url = with_new_schema(base, "vj_nulid")
    else:
        base, url = "", f"sqlite:///{tmp_path / 'jobs.db'}"
    try:
        with start_http("streamable-http", {}, ["--store", url]) as server:
            async with Client(server.url, mode=mode) as client:
                for tool, args, field in (
                    ("get-job-result", {"jobId": "x\x00y"}, "jobId"),
                    ("cancel-job", {"jobId": "x\x00y", "reason": "r"}, "jobId"),
                    ("list-jobs", {"toolName": "echo\x00"}, "toolName"),
                    ("pause-schedule", {"scheduleId": "s\x00"}, "scheduleId"),
                ):
                    answer = await client.call_tool(tool, args)
                    said = texts(answer)
                    assert answer.is_error and f"{field}: " in said and "NUL" in said, (tool, said)
                for cursor in FORGED_CURSORS:
                    answer = await client.call_tool("list-jobs", {"cursor": cursor})
                    said = texts(answer)
                    assert answer.is_error and "is not a cursor this server gave out" in said, said
            site = f"http://127.0.0.1:{server.port}"
            assert httpx.get(f"{site}/jobs/x%00y", timeout=10).status_code == 404
            assert httpx.get(f"{site}/?tool=x%00y", timeout=10).status_code == 200
            for cursor in FORGED_CURSORS:
                assert httpx.get(f"{site}/?cursor={cursor}", timeout=10).status_code == 400
            health = httpx.get(f"{site}/health", timeout=10).json()
            assert health["status"] == "healthy", health
    finally:
        if store == "postgres":
            await drop_schema(base, url)


async def test_a_cancelled_request_is_not_awaited_for_ever() -> None:
    """A request the client cancels (notifications/cancelled) is never answered, and the stdio session kept its id
    as in flight for as long as it ran (a client that stops 20 long-polls left 20) and, at EOF, waited the whole
    grace for their answers. The state probe counts the ids held: itself only, after any number of cancels."""
    async with raw_stdio(tools="tests.e2e.sample_tools,tests.e2e.state_probe") as server:
        job_id = (await server.call("sleepy", {"seconds": 60}))["result"]["structuredContent"]["jobId"]
        poll = {"name": "get-job-result", "arguments": {"jobId": job_id, "waitSeconds": 30}}
        for n in range(20):
            await server.send({"jsonrpc": "2.0", "id": f"poll-{n}", "method": "tools/call", "params": poll})
            cancel = {"requestId": f"poll-{n}", "reason": "the user stopped it"}
            await server.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        probe = (await server.call("state-probe", {}))["result"]["structuredContent"]
    assert probe["sizes"]["InFlight.ids"] == 1, probe["sizes"]  # the probe's own request


# URL passwords a tool's error or a job's arguments may hold as written, unescaped: a base64 one holds '/' and '+'
# (urlsplit then reads its start as the port), and one holding '@' goes to the URL's last '@'
MISWRITTEN_PASSWORDS = ["Zq9/xK+e7Q==", "p@ssW0rd-77"]


@pytest.mark.parametrize("password", MISWRITTEN_PASSWORDS)
async def test_a_url_password_written_unescaped_reaches_neither_the_answer_nor_the_log(password: str) -> None:
    """A job failed naming a database URL whose password holds a '/' or an '@' as written: the error answered and
    logged showed the password (or its end), and so did the job's arguments where list-jobs shows them. The
    free-text rule hides it to the URL's last '@'."""
    url = f"postgresql://app:{password}@db.internal:5432/jobs"
    with start_http("streamable-http") as http:
        async with Client(http.url, mode="auto") as client:
            failed = await start(client, "explode", {"message": f"cannot reach {url}: timed out"})
            result, body = await finish(client, failed)
            echoed = await start(client, "echo", {"text": f"connect to {url} then"})
            listed = structured(await client.call_tool("list-jobs", {}))["jobs"]
        http.errlog.seek(0)
        log = http.errlog.read().decode()
    assert body["status"] == "failed" and "db.internal:5432/jobs" in json.dumps(body), body
    params = next(job["params"] for job in listed if job["id"] == echoed)
    assert "db.internal:5432/jobs" in json.dumps(params), params
    for shown in (json.dumps(body), texts(result), json.dumps(params), log):
        assert password not in shown and password.rpartition("/")[2].rpartition("@")[2] not in shown, shown[-2000:]
