"""Protocol hygiene, concurrency and scheduling over MCP against the real server process."""

from __future__ import annotations

import json
import signal
import warnings
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, HttpServer, http_client_for, start_http, stdio_client_for
from tests.e2e.test_jobs_e2e import start, structured, texts

pytestmark = pytest.mark.timeout(120)

CONTROL_TOOLS = {"get-job-result", "list-jobs", "cancel-job", "submit-job", "job-stats"}


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_is_listed_with_a_description_and_schemas(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) >= CONTROL_TOOLS
    assert all(tool.description for tool in tools.values())
    sleepy = tools["sleepy"]
    assert set(sleepy.input_schema["properties"]) == {"seconds", "steps"}, "the JobContext stays hidden"
    assert sleepy.output_schema is not None and "jobId" in sleepy.output_schema["anyOf"][0]["properties"]
    assert "nextCheckTime" in (tools["get-job-result"].description or "")


@pytest.mark.parametrize("mode", MODES)
async def test_every_control_tool_description_teaches_the_polling_protocol(mode: str) -> None:
    """Issue 3: the control tools, each with a description that teaches an agent the protocol (wait until
    nextCheckTime; never invent a result while a job runs). Only get-job-result's and submit-job's did: an agent
    that lists jobs or cancels one was not told how to read a job, nor not to invent its result."""
    async with stdio_client_for(mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    untaught = [
        name
        for name in sorted(CONTROL_TOOLS | {"answer-job"})
        if not all(word in (tools[name].description or "") for word in ("get-job-result", "nextCheckTime", "invent"))
    ]
    assert not untaught, f"control tools whose description does not teach the protocol: {untaught}"


async def test_legacy_clients_can_ping_and_set_the_log_level() -> None:
    async with stdio_client_for("legacy") as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK marks these client helpers deprecated
            await client.send_ping()
            await client.set_logging_level("debug")
        result = await client.call_tool("noop", {})
    assert not result.is_error


async def calls_from_one_client(server: HttpServer, mode: str, count: int, into: list[str]) -> None:
    async with http_client_for(server, mode) as client:
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(_call_echo, client, i, into)
        await _wait_all(client, into)


async def _call_echo(client: Client, i: int, into: list[str]) -> None:
    into.append(await start(client, "echo", {"text": f"call {i}"}))


async def _wait_all(client: Client, job_ids: list[str]) -> None:
    for job_id in job_ids:
        result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
        assert structured(result)["status"] == "completed", texts(result)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("mode", MODES)
async def test_200_concurrent_calls_from_4_clients_all_become_jobs_and_finish(
    request: pytest.FixtureRequest, transport: str, mode: str
) -> None:
    server: HttpServer = request.getfixturevalue("http_server" if transport == "streamable-http" else "sse_server")
    per_client: list[list[str]] = [[] for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for ids in per_client:
            tg.start_soon(calls_from_one_client, server, mode, 50, ids)
    job_ids = [job_id for ids in per_client for job_id in ids]
    assert len(job_ids) == 200 and len(set(job_ids)) == 200


@pytest.mark.parametrize("mode", MODES)
async def test_submit_job_runs_by_priority_after_dependencies(mode: str) -> None:
    env = {"JOB_MANAGER_MAX_CONCURRENT": "1"}
    async with stdio_client_for(mode, env) as client:
        gate = await start(client, "sleepy", {"seconds": 0.5, "steps": 1})
        ids: dict[str, str] = {}
        for name, priority in [("low", "low"), ("high", "high"), ("critical", "critical")]:
            ids[name] = await _submit(client, {"tool": "echo", "arguments": {"text": name}, "priority": priority})
        ids["after-low"] = await _submit(
            client, {"tool": "echo", "arguments": {"text": "x"}, "priority": "critical", "dependsOn": [ids["low"]]}
        )
        bad = await client.call_tool("submit-job", {"tool": "echo", "arguments": {"text": 3}})
        unknown_dep = await client.call_tool("submit-job", {"tool": "noop", "dependsOn": ["nope"]})
        finished = [await _finished(client, job_id) for job_id in [gate, *ids.values()]]
    seq = {name: body["result"]["structuredContent"]["seq"] for name, body in zip(ids, finished[1:], strict=True)}
    assert sorted(ids, key=seq.__getitem__) == ["critical", "high", "low", "after-low"], seq
    assert bad.is_error and "text" in texts(bad)
    assert unknown_dep.is_error and "nope" in texts(unknown_dep)
    error = (unknown_dep.structured_content or {})["error"]
    assert error["code"] == "unknown_dependency" and "jobId" not in error, "no job was made: none is named"


@pytest.mark.parametrize("mode", MODES)
async def test_submit_job_takes_the_specification_s_task_job_field_names(mode: str) -> None:
    """The specification's TaskJob names `dependencies` and `metadata{sessionId, userId, batchId, retryCount,
    maxRetries}`; submit-job took only `dependsOn`, `batchId` and `maxRetries`, and refused a call written from the
    specification's createTaskJob example (helper-117's note). Both names are taken; two that disagree are refused."""
    async with stdio_client_for(mode) as client:
        first = await _submit(client, {"tool": "noop"})
        meta = {"sessionId": "session-123", "userId": "u-7", "batchId": "b-1", "retryCount": 0, "maxRetries": 3}
        job_id = await _submit(client, {"tool": "noop", "dependencies": [first], "metadata": meta})
        await _finished(client, job_id)
        listed = structured(await client.call_tool("list-jobs", {}))["jobs"]
        mixed = await client.call_tool("submit-job", {"tool": "noop", "dependsOn": [first], "dependencies": [job_id]})
        counted = await client.call_tool("submit-job", {"tool": "noop", "metadata": {"retryCount": 2}})
        twice = await client.call_tool("submit-job", {"tool": "noop", "maxRetries": 1, "metadata": {"maxRetries": 2}})
        after = structured(await client.call_tool("list-jobs", {}))["jobs"]
    job = next(j for j in listed if j["id"] == job_id)
    assert job["dependencies"] == [first]
    assert {k: job["metadata"].get(k) for k in meta} == meta, job["metadata"]
    assert mixed.is_error and "dependsOn and dependencies" in texts(mixed)
    assert counted.is_error and "retryCount" in texts(counted)
    assert twice.is_error and "maxRetries and metadata.maxRetries" in texts(twice)
    assert len(after) == len(listed) == 2, "a refused call created a job"


async def _submit(client: Client, args: dict[str, Any]) -> str:
    result = await client.call_tool("submit-job", args)
    assert not result.is_error, texts(result)
    return str(structured(result)["jobId"])


async def _finished(client: Client, job_id: str) -> dict[str, Any]:
    result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
    body = structured(result)
    assert body["status"] == "completed", texts(result)
    return body


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_an_http_server_stops_gracefully_on_sigterm_and_sigint(transport: str, sig: signal.Signals) -> None:
    """Issue 3: graceful stop on SIGINT/SIGTERM. uvicorn re-raised the signal once it had shut down: SIGTERM's
    default action then killed the process before the job manager stopped (exit -15, no lease released, no
    `server.stopped`), and SIGINT with a job running ended it as a KeyboardInterrupt (exit 130)."""
    with start_http(transport, {"VIBE_JOBS_LOG_LEVEL": "info"}) as server:
        async with http_client_for(server, "legacy") as client:
            job_id = await start(client, "wait_forever", {})
            running = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 0.5})
            while structured(running)["status"] == "pending":
                running = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 0.5})
        server.proc.send_signal(sig)
        code = server.proc.wait(20)
        server.errlog.seek(0)
        events = [json.loads(line).get("event") for line in server.errlog.read().splitlines() if line.startswith(b"{")]
    assert code == 0, f"exit {code}; last events {events[-4:]}"
    assert events[-1] == "server.stopped", events[-4:]
