"""The MCP tasks extension (io.modelcontextprotocol/tasks) against the real server, and vibe_jobs.client."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2 as httpx
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.client.extension import ClientExtension
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams

from tests.e2e.conftest import BASE_ENV, HttpServer, start_http, stdio_params
from tests.e2e.test_jobs_e2e import structured
from tests.pg import postgres_url, with_new_schema
from vibe_jobs.client import (
    TASKS_EXTENSION,
    TaskHandle,
    TasksClientExtension,
    WireResult,
    call_and_wait,
    tasks_supported,
)

POLL_BASE_MS = int(BASE_ENV["VIBE_JOBS_POLL_BASE_MS"])
RETENTION_MS = 3_600_000  # the default max retention


class TaskParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any] | None = None  # tasks/update only


class TaskRequest(Request[TaskParams, str]):
    """Any tasks/* request, with the routing header the spec asks for."""

    name_param = "taskId"


@asynccontextmanager
async def tasks_client(
    mode: str = "auto", extensions: Sequence[ClientExtension] | None = None
) -> AsyncIterator[Client]:
    with tempfile.TemporaryFile("w+") as errlog:
        transport = stdio_client(stdio_params(), errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=60, extensions=extensions) as client:
            yield client


def declaring() -> AbstractAsyncContextManager[Client]:
    """A 2026-07-28 client that declares the tasks extension (and resolves task handles)."""
    return tasks_client("auto", [TasksClientExtension()])


async def send(
    client: Client, method: Literal["tasks/get", "tasks/cancel", "tasks/update"], **params: Any
) -> dict[str, Any]:
    request = TaskRequest(method=method, params=TaskParams(**params))
    return (await client.session.send_request(request, WireResult)).wire()


async def start_task(client: Client, tool: str, args: dict[str, Any]) -> TaskHandle:
    handle = await client.session.call_tool(tool, args, allow_claimed=True)
    assert isinstance(handle, TaskHandle), handle
    return handle


async def until_terminal(client: Client, task_id: str, seconds: float = 20) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        while True:
            task = await send(client, "tasks/get", task_id=task_id)
            if task["status"] != "working":
                return task
            await anyio.sleep(task["pollIntervalMs"] / 1000)


def parse_iso(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text)


# -- capability and shapes -------------------------------------------------------------------


async def test_server_advertises_the_extension_only_on_2026() -> None:
    async with tasks_client("auto") as client:
        assert client.server_capabilities.extensions == {TASKS_EXTENSION: {}}
        assert tasks_supported(client)
    async with tasks_client("legacy") as client:
        assert not tasks_supported(client)


async def test_job_tool_answers_with_a_task_handle_then_tasks_get_inlines_the_result() -> None:
    async with declaring() as client:
        handle = await start_task(client, "sleepy", {"seconds": 0.6, "steps": 3})
        assert handle.status == "working"
        assert handle.poll_interval_ms == POLL_BASE_MS
        # ttlMs counts from creation: the retention after the job's end (so it grows while the job runs)
        assert handle.ttl_ms is not None and RETENTION_MS <= handle.ttl_ms < RETENTION_MS + 5000
        assert parse_iso(handle.created_at or "") <= parse_iso(handle.last_updated_at or "")
        working = await send(client, "tasks/get", task_id=handle.task_id)
        assert working["resultType"] == "complete" and working["taskId"] == handle.task_id
        assert working["status"] == "working" and "result" not in working
        assert working["pollIntervalMs"] >= POLL_BASE_MS
        done = await until_terminal(client, handle.task_id)
        assert done["status"] == "completed" and done["resultType"] == "complete"
        assert done["result"]["structuredContent"] == {"seconds": 0.6, "steps": 3}
        assert done["result"]["isError"] is False
        assert done["ttlMs"] >= RETENTION_MS
        # the task id is the job id
        job = await client.call_tool("get-job-result", {"jobId": handle.task_id})
        assert job.structured_content is not None and job.structured_content["status"] == "completed"


async def test_call_tool_resolves_the_task_transparently() -> None:
    async with declaring() as client:
        result = await client.call_tool("sleepy", {"seconds": 0.3, "steps": 2})
        assert result.structured_content == {"seconds": 0.3, "steps": 2} and not result.is_error
        echo = await client.call_tool("echo", {"text": "ab", "count": 2})
        assert echo.structured_content is not None and echo.structured_content["text"] == "abab"


async def test_a_failing_job_is_a_completed_task_with_an_error_result() -> None:
    async with declaring() as client:
        handle = await start_task(client, "explode", {"message": "kaboom"})
        done = await until_terminal(client, handle.task_id)
        assert done["status"] == "completed"  # 'failed' is for JSON-RPC errors only (spec)
        assert done["result"]["isError"] is True and "kaboom" in done["result"]["content"][0]["text"]
        assert "error" not in done


async def test_tasks_cancel_ends_the_job_cancelled() -> None:
    async with declaring() as client:
        handle = await start_task(client, "wait_forever", {})
        await anyio.sleep(0.3)
        ack = await send(client, "tasks/cancel", task_id=handle.task_id)
        assert ack["resultType"] == "complete" and set(ack) <= {"resultType", "_meta"}
        done = await until_terminal(client, handle.task_id)
        assert done["status"] == "cancelled" and "result" not in done
        assert "tasks/cancel" in done["statusMessage"]
        job = await client.call_tool("get-job-result", {"jobId": handle.task_id})
        assert job.structured_content is not None and job.structured_content["status"] == "cancelled"
        # cancelling a finished task is acknowledged and changes nothing
        assert (await send(client, "tasks/cancel", task_id=handle.task_id))["resultType"] == "complete"


async def test_tasks_update_is_acknowledged() -> None:
    async with declaring() as client:
        handle = await start_task(client, "wait_forever", {})
        ack = await send(client, "tasks/update", task_id=handle.task_id, input_responses={"k": {"action": "accept"}})
        assert ack["resultType"] == "complete"
        await send(client, "tasks/cancel", task_id=handle.task_id)


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel", "tasks/update"])
async def test_unknown_task_is_invalid_params(method: Literal["tasks/get", "tasks/cancel", "tasks/update"]) -> None:
    async with declaring() as client:
        with pytest.raises(MCPError) as err:
            await send(client, method, task_id="0" * 32)
        assert err.value.error.code == -32602
        assert "Task not found" in err.value.error.message


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel", "tasks/update"])
async def test_a_huge_unknown_task_id_is_not_echoed_whole(
    method: Literal["tasks/get", "tasks/cancel", "tasks/update"],
) -> None:
    """A caller may send a task id of megabytes: the refusal names it cut short, not whole."""
    async with declaring() as client:
        with pytest.raises(MCPError) as err:
            await send(client, method, task_id="7" * 200_000)
        assert err.value.error.code == -32602 and "Task not found" in err.value.error.message
        echoed = repr(err.value.error.data)
        assert "7777" in echoed and len(echoed) < 1_000, len(echoed)


async def test_tasks_methods_need_the_declared_extension() -> None:
    async with tasks_client("auto") as client:
        handle = await client.call_tool("sleepy", {"seconds": 0.1, "steps": 1})
        assert handle.structured_content is not None
        with pytest.raises(MCPError) as err:
            await send(client, "tasks/get", task_id=handle.structured_content["jobId"])
        assert err.value.error.code == -32021
        assert err.value.error.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}


class ListenParams(RequestParams):
    notifications: dict[str, Any]


class ListenRequest(Request[ListenParams, Literal["subscriptions/listen"]]):
    method: Literal["subscriptions/listen"] = "subscriptions/listen"


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_task_notifications_need_the_declared_extension(transport: str, request: pytest.FixtureRequest) -> None:
    """The spec: a client that asks `subscriptions/listen` for task status notifications (`taskIds`) without
    declaring the extension MUST get -32021 naming it. It was acknowledged (with nothing honoured), so a client
    that forgot to declare it waited for notifications that never came. Nothing else about listening changes."""
    stdio = transport == "stdio"
    connection = tasks_client("auto") if stdio else Client(request.getfixturevalue("http_server").url, mode="auto")
    async with connection as client:
        task_id = structured(await client.call_tool("wait_forever", {}))["jobId"]
        with anyio.fail_after(10), pytest.raises(MCPError) as err:
            listen = ListenRequest(params=ListenParams(notifications={"taskIds": [task_id]}))
            await client.session.send_request(listen, WireResult)
        async with client.listen(resource_subscriptions=[f"job://{task_id}"]) as sub:  # still served as before
            assert sub.honored.resource_subscriptions == [f"job://{task_id}"]
        await client.call_tool("cancel-job", {"jobId": task_id})
    assert err.value.error.code == -32021, err.value.error
    assert err.value.error.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}


# -- who is not served tasks -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_clients_without_the_extension_get_the_jobid_answer(mode: str) -> None:
    async with tasks_client(mode) as client:
        result = await client.call_tool("sleepy", {"seconds": 0.1, "steps": 1})
        assert result.structured_content is not None and result.structured_content["status"] == "pending"
        assert "jobId" in result.structured_content
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert listed["sleepy"].output_schema is not None  # the jobId answer's schema


async def test_legacy_mode_is_unchanged_even_when_declared() -> None:
    async with tasks_client("legacy", [advertise(TASKS_EXTENSION)]) as client:
        result = await client.call_tool("sleepy", {"seconds": 0.1, "steps": 1})
        assert result.structured_content is not None and "jobId" in result.structured_content
        with pytest.raises(MCPError) as err:
            await send(client, "tasks/get", task_id=result.structured_content["jobId"])
        assert err.value.error.code == -32601  # the 2026-07-28 extension's methods are not served on 2025-11-25


async def test_plain_and_control_tools_are_not_tasks() -> None:
    async with declaring() as client:
        plain = await client.session.call_tool("plain-noop", {}, allow_claimed=True)
        assert isinstance(plain, CallToolResult) and plain.structured_content == {"result": "ok"}
        submitted = await client.session.call_tool("submit-job", {"tool": "noop"}, allow_claimed=True)
        assert isinstance(submitted, CallToolResult)
        assert submitted.structured_content is not None and "jobId" in submitted.structured_content
        stats = await client.session.call_tool("job-stats", {}, allow_claimed=True)
        assert isinstance(stats, CallToolResult)
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert listed["sleepy"].output_schema is None  # its answer is its real result for this client
        assert listed["get-job-result"].output_schema is not None


async def test_refused_or_invalid_arguments_answer_at_once() -> None:
    async with declaring() as client:
        bad = await client.session.call_tool("sleepy", {"seconds": "soon"}, allow_claimed=True)
        assert isinstance(bad, CallToolResult) and bad.is_error


# -- vibe_jobs.client.call_and_wait ----------------------------------------------------------


class Progress:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))


async def test_call_and_wait_over_tasks() -> None:
    progress = Progress()
    async with declaring() as client:
        result = await call_and_wait(client, "sleepy", {"seconds": 2.0, "steps": 4}, progress)
    assert result.structured_content == {"seconds": 2.0, "steps": 4}
    assert progress.seen and all(total == 100.0 for _, total, _ in progress.seen)
    percents = [p for p, _, _ in progress.seen]
    assert percents == sorted(percents) and max(percents) > 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_call_and_wait_over_long_polls(mode: str) -> None:
    progress = Progress()
    async with tasks_client(mode) as client:
        result = await call_and_wait(client, "sleepy", {"seconds": 0.8, "steps": 4}, progress)
    assert result.structured_content == {"seconds": 0.8, "steps": 4}
    assert any(message and "step" in message for _, _, message in progress.seen)


@pytest.mark.parametrize("path", ["tasks", "long-poll", "legacy long-poll", "polling"])
async def test_call_and_wait_takes_a_plain_function_as_on_progress(path: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    def on_progress(progress: float, total: float | None, message: str | None) -> None:  # not async
        seen.append((progress, total, message))

    client_cm = declaring() if path == "tasks" else tasks_client("legacy" if path.startswith("legacy") else "auto")
    async with client_cm as client:
        result = await call_and_wait(
            client, "sleepy", {"seconds": 2.0, "steps": 4}, on_progress, wait_seconds=0 if path == "polling" else 30
        )
    assert result.structured_content == {"seconds": 2.0, "steps": 4}
    assert seen and all(total == 100.0 for _, total, _ in seen)


@pytest.mark.parametrize("wait_seconds", [30.0, 0.0])
async def test_call_and_wait_tells_when_the_job_started_and_each_status(wait_seconds: float) -> None:
    started: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []

    async def on_started(answer: dict[str, Any]) -> None:
        assert not statuses, "the start comes first"
        started.append(answer)

    async def on_status(msg: dict[str, Any]) -> None:
        statuses.append(msg)

    async with tasks_client("legacy") as client:
        result = await call_and_wait(
            client, "sleepy", {"seconds": 0.3, "steps": 3}, wait_seconds=wait_seconds,
            on_started=on_started, on_status=on_status, include_details=True,
        )  # fmt: skip
        read = await call_and_wait(client, "get-job-result", {"jobId": started[0]["jobId"]}, on_started=on_started)
    assert result.structured_content == {"seconds": 0.3, "steps": 3}
    assert [answer["status"] for answer in started] == ["pending"], "get-job-result's answer starts no job"
    assert statuses and {msg["jobId"] for msg in statuses} == {started[0]["jobId"]}
    assert statuses[-1]["status"] == "completed" and statuses[-1]["details"]["currentStage"] == "sleep"
    assert read.structured_content is not None and read.structured_content["status"] == "completed"


async def test_call_and_wait_by_polling_recommendations() -> None:
    progress = Progress()
    async with tasks_client("auto") as client:
        # reads at 0, 1 and 3 s (the recommendation): the 1 s read sees the job half way
        result = await call_and_wait(client, "sleepy", {"seconds": 2.0, "steps": 4}, progress, wait_seconds=0)
    assert result.structured_content == {"seconds": 2.0, "steps": 4}
    assert progress.seen


@pytest.mark.parametrize("declared", [True, False])
async def test_call_and_wait_plain_tool_and_failures(declared: bool) -> None:
    client_cm = declaring() if declared else tasks_client("auto")
    async with client_cm as client:
        plain = await call_and_wait(client, "plain-noop", {})
        assert plain.structured_content == {"result": "ok"}
        failed = await call_and_wait(client, "explode", {"message": "nope"})
        assert failed.is_error and "nope" in str(failed.content[0])


async def test_cancelling_call_and_wait_cancels_the_task() -> None:
    async with declaring() as client:
        with anyio.move_on_after(0.5):
            await call_and_wait(client, "wait_forever", {})
        jobs = await client.call_tool("list-jobs", {"toolName": "wait_forever", "limit": 1})
        assert jobs.structured_content is not None
        job_id = jobs.structured_content["jobs"][0]["id"]
        done = await until_terminal(client, job_id)
        assert done["status"] == "cancelled"


async def test_call_and_wait_over_streamable_http(http_server: HttpServer) -> None:
    progress = Progress()
    async with Client(http_server.url, read_timeout_seconds=60, extensions=[TasksClientExtension()]) as client:
        assert tasks_supported(client)
        handle = await start_task(client, "noop", {})
        assert (await until_terminal(client, handle.task_id))["status"] == "completed"
        result = await call_and_wait(client, "sleepy", {"seconds": 0.4, "steps": 2}, progress)
    assert result.structured_content == {"seconds": 0.4, "steps": 2}


def _raw_tasks_post(server: HttpServer, method: str, params: dict[str, Any], name: str | None) -> httpx.Response:
    """One 2026-07-28 request of a client declaring the extension, with `Mcp-Name` as given (None: left out)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS_EXTENSION: {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
        **({"Mcp-Name": name} if name is not None else {}),
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    content = json.dumps(body)  # ASCII: a lone surrogate goes as its escape, as a hostile client sends it
    return httpx.post(server.url, headers={**headers, "Content-Type": "application/json"}, content=content, timeout=30)


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_over_http_a_routing_header_naming_another_task_is_refused(http_server: HttpServer, method: str) -> None:
    """The spec's routing header: `Mcp-Name` is the task's id. One naming another task is refused as the SDK
    refuses a mismatched `Mcp-Name` on tools/call (400, -32020), and nothing is done to either task; a client
    that sends none (FastMCP 4) is served."""
    started = _raw_tasks_post(http_server, "tools/call", {"name": "wait_forever", "arguments": {}}, "wait_forever")
    task_id = started.json()["result"]["taskId"]
    params: dict[str, Any] = {"taskId": task_id, **({"inputResponses": {}} if method == "tasks/update" else {})}
    refused = _raw_tasks_post(http_server, method, params, "someone-elses-task")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == -32020 and "mcp-name" in refused.json()["error"]["message"].lower()
    assert _raw_tasks_post(http_server, "tasks/get", {"taskId": task_id}, task_id).json()["result"]["status"] == (
        "working"
    ), "the refused request did nothing"
    for name in (task_id, None):
        served = _raw_tasks_post(http_server, method, params, name)
        assert served.status_code == 200 and "result" in served.json(), served.text
    _raw_tasks_post(http_server, "tasks/cancel", {"taskId": task_id}, task_id)


async def test_over_http_tasks_get_shows_a_result_larger_than_one_answer_in_part() -> None:
    """tasks/get inlines the job's result: one of 3 MB (under the 4 MiB cap) could not be read over HTTP by the
    MCP Python client, which reads no server-sent event over 1 MiB (VIBE_JOBS_MAX_ANSWER_BYTES)."""
    with start_http("streamable-http", {"VIBE_JOBS_TOOLS": "tests.e2e.hostile_tools"}) as server:
        async with Client(server.url, mode="auto", read_timeout_seconds=60, extensions=[TasksClientExtension()]) as c:
            handle = await start_task(c, "big", {"kb": 3000})
            done = await until_terminal(c, handle.task_id)
    assert done["status"] == "completed"
    marker = done["result"]["structuredContent"]
    assert marker["truncated"] is True and marker["maxAnswerBytes"] == 1024 * 1024
    assert (
        marker["originalBytes"] > 3000 * 1024
        and "[shown in part: the result is " in done["result"]["content"][0]["text"]
    )


STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def served_on(store: str, directory: Path) -> AsyncIterator[HttpServer]:
    """A streamable-HTTP server on a SQLite file in `directory`, or on a PostgreSQL schema of its own (dropped)."""
    from tests.e2e.test_hostile_input import drop_schema

    if store == "sqlite":
        with start_http("streamable-http", args=["--store", f"sqlite:///{directory / 'jobs.db'}"]) as server:
            yield server
        return
    base = postgres_url("a server on PostgreSQL")
    url = with_new_schema(base, "vj_hostile_ids")
    try:
        with start_http("streamable-http", args=["--store", url]) as server:
            yield server
    finally:
        await drop_schema(base, url)


def health(server: HttpServer) -> Any:
    stats = _raw_tasks_post(server, "tools/call", {"name": "job-stats", "arguments": {}}, "job-stats").json()
    return stats["result"]["structuredContent"]["health"]


@pytest.mark.parametrize("store", STORES)
async def test_a_task_id_that_is_no_valid_unicode_is_an_unknown_task(tmp_path: Path, store: str) -> None:
    """JSON may carry a lone surrogate (`"\\ud800"`), which the MCP SDK passes on over HTTP and no store can look
    up: tasks/get, tasks/update and tasks/cancel of such an id answered -32603 (the job store failed), not the
    spec's -32602 "Task not found", and the server's health said "degraded: the job store failed" for 5 minutes,
    for every principal, after one such request of any client."""
    async with served_on(store, tmp_path) as server:
        for method, action in (("tasks/get", "retrieve"), ("tasks/update", "update"), ("tasks/cancel", "cancel")):
            for task_id in ("\ud800", "job\udfff", "\udbff" * 40):
                extra: dict[str, Any] = {"inputResponses": {}} if method == "tasks/update" else {}
                answer = _raw_tasks_post(server, method, {"taskId": task_id, **extra}, None)
                error = answer.json()["error"]
                assert (error["code"], error["message"]) == (-32602, f"Failed to {action} task: Task not found")
        assert health(server) == {"status": "healthy", "reasons": []}
