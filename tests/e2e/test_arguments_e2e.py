"""Arguments over MCP against the real `vibe-jobs serve`, and on a real `vibe-jobs worker` (PostgreSQL).

Every way a job is created over MCP (the job tool itself, submit-job, the tasks extension) refuses an unknown
argument with an isError answer that names it and lists the accepted ones, and creates no job. A job's
arguments arrive at the function as the types its parameters declare, in the server and in a worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult

from tests.arg_types import RAW, TYPED, typed
from tests.e2e.conftest import BASE_ENV, MODES, ROOT, HttpServer, http_client_for, stdio_client_for, stdio_params
from tests.e2e.test_jobs_e2e import start, structured, texts
from tests.pg import postgres_url, with_new_schema
from vibe_jobs.client import TasksClientExtension
from vibe_jobs.jobtool import make_spec
from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.states import JobStatus
from vibe_jobs.store import open_store

pytestmark = pytest.mark.timeout(120)

ClientFactory = Callable[[], AbstractAsyncContextManager[Client]]
ACCEPTED = ["count", "where", "color", "shape"]
PADDING = "p" * 2_000_000  # 2 MB: a hundred times the server's params limit here (VIBE_JOBS_MAX_PARAMS_BYTES)


@asynccontextmanager
async def declaring_stdio() -> AsyncIterator[Client]:
    """A 2026-07-28 client over stdio that declares the tasks extension."""
    async with Client(stdio_client(stdio_params()), mode="auto", extensions=[TasksClientExtension()]) as client:
        yield client


@asynccontextmanager
async def declaring_http(server: HttpServer) -> AsyncIterator[Client]:
    async with Client(server.url, mode="auto", extensions=[TasksClientExtension()]) as client:
        yield client


@pytest.fixture(params=[(t, m) for t in ("stdio", "streamable-http") for m in MODES], ids=lambda p: "-".join(p))
def connect(request: pytest.FixtureRequest) -> ClientFactory:
    transport, mode = request.param
    if transport == "stdio":
        return lambda: stdio_client_for(mode)
    server: HttpServer = request.getfixturevalue("http_server")
    return lambda: http_client_for(server, mode)


@pytest.fixture(params=["stdio", "streamable-http"])
def connect_declaring(request: pytest.FixtureRequest) -> ClientFactory:
    if request.param == "stdio":
        return declaring_stdio
    server: HttpServer = request.getfixturevalue("http_server")
    return lambda: declaring_http(server)


async def typed_job_ids(client: Client) -> set[str]:
    body = structured(await client.call_tool("list-jobs", {"toolName": "typed", "limit": 500}))
    assert body["nextCursor"] is None
    return {job["id"] for job in body["jobs"]}


def assert_refused(result: CallToolResult, unknown: list[str]) -> None:
    assert result.is_error, texts(result)
    text = texts(result)
    assert all(f"'{name}'" in text for name in unknown), text
    assert "Accepted arguments: count, where, color, shape" in text, text
    error = structured(result)["error"]
    assert (error["code"], error["unknown"], error["accepted"]) == ("invalid_params", unknown, ACCEPTED)
    assert len(text) < 1_000, "the answer does not echo what the caller sent"


async def test_unknown_arguments_are_refused_and_create_no_job(connect: ClientFactory) -> None:
    async with connect() as client:
        before = await typed_job_ids(client)
        assert_refused(await client.call_tool("typed", {**RAW, "second": 5}), ["second"])
        assert_refused(await client.call_tool("typed", {**RAW, "padding": PADDING}), ["padding"])
        submitted = {"tool": "typed", "arguments": {**RAW, "colour": "red", "padding": PADDING}}
        assert_refused(await client.call_tool("submit-job", submitted), ["colour", "padding"])
        assert "did you mean 'color'?" in texts(await client.call_tool("submit-job", submitted))
        assert await typed_job_ids(client) == before, "a refused call created a job"
        job_id = await start(client, "typed", RAW)  # the same arguments without the unknown ones
        done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
    assert structured(done)["result"]["structuredContent"] == TYPED


async def test_unknown_arguments_are_refused_on_the_tasks_extension_path(connect_declaring: ClientFactory) -> None:
    async with connect_declaring() as client:
        before = await typed_job_ids(client)
        result = await client.call_tool("typed", {**RAW, "padding": PADDING})  # answered at once, not as a task
        assert_refused(result, ["padding"])
        assert await typed_job_ids(client) == before, "a refused call created a task"
        final = await client.call_tool("typed", RAW)  # a task, followed to its result by the extension
    assert structured(final) == TYPED


async def test_missing_and_mistyped_arguments_name_the_field(connect: ClientFactory) -> None:
    async with connect() as client:
        missing = await client.call_tool("typed", {k: v for k, v in RAW.items() if k != "count"})
        mistyped = await client.call_tool("typed", {**RAW, "color": "green"})
    assert missing.is_error and "Invalid arguments for 'typed': count: Field required" in texts(missing)
    assert mistyped.is_error and "color: Input should be 'red' or 'blue'" in texts(mistyped)


@pytest.mark.postgres
async def test_a_postgresql_worker_runs_jobs_with_typed_arguments(tmp_path: Path) -> None:
    store_url = with_new_schema(postgres_url("the PostgreSQL worker test"), "vj_args")
    server = JobServer(store=open_store(store_url), run_jobs=False)  # creates jobs; only the worker runs them
    server.add_spec(make_spec(typed, name="typed"))
    errlog = tmp_path / "worker.stderr"
    try:
        async with server.manager:  # the schema exists before the worker starts
            with errlog.open("wb") as err, worker_process(store_url, err):
                rec = await server.manager.wait(await server.manager.create_job("typed", RAW), 30)
    finally:
        await server.manager.store.drop_schema()  # type: ignore[attr-defined]
    assert rec.status is JobStatus.COMPLETED, f"{rec.progress_message}\n{errlog.read_text()[-3000:]}"
    assert rec.result is not None and rec.result["structuredContent"] == TYPED


@contextmanager
def worker_process(store_url: str, err: IO[bytes]) -> Iterator[None]:
    """`vibe-jobs worker` on the store with the sample tools; stopped with SIGTERM at exit."""
    cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", store_url, "--no-builtin"]
    proc = subprocess.Popen(
        [*cmd, "--tools", "tests.e2e.sample_tools", "--drain-seconds", "1"],
        cwd=ROOT, env={**os.environ, **BASE_ENV}, stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# (tool, arguments with one misspelt or extra name, that name, the close match)
CONTROL_MISSPELT: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("submit-job", {"tool": "typed", "arguments": RAW, "dependson": ["a-job"]}, "dependson", "dependsOn"),
    ("submit-job", {"tool": "typed", "arguments": RAW, "priorty": "critical"}, "priorty", "priority"),
    ("submit-job", {"tool": "typed", "argumnts": RAW}, "argumnts", "arguments"),
    ("get-job-result", {"jobId": "some-job", "waitSecond": 3}, "waitSecond", "waitSeconds"),
    ("list-jobs", {"toolname": "typed"}, "toolname", "toolName"),
    ("cancel-job", {"jobId": "some-job", "reasn": "x"}, "reasn", "reason"),
    ("answer-job", {"jobId": "some-job", "answers": {}}, "answers", "answer"),
    ("job-stats", {"verbose": True}, "verbose", None),
]


async def test_control_tools_refuse_unknown_arguments_and_create_no_job(connect: ClientFactory) -> None:
    """A misspelt option of a control tool is refused by name (submit-job's `dependson` used to start the job
    without its dependency), as a job tool's is; the schemas say so."""
    async with connect() as client:
        before = await typed_job_ids(client)
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        for tool, arguments, unknown, close in CONTROL_MISSPELT:
            assert schemas[tool].get("additionalProperties") is False, tool
            result = await client.call_tool(tool, arguments)
            text = texts(result)
            assert result.is_error and f"Invalid arguments for '{tool}': unknown argument '{unknown}'" in text, text
            assert close is None or f"(did you mean '{close}'?)" in text, text
            assert "Accepted arguments: " in text or "takes no arguments" in text, text
            assert structured(result)["error"]["unknown"] == [unknown]
        assert await typed_job_ids(client) == before, "a refused control call created a job"


async def test_control_tools_name_a_bad_value_without_a_validation_dump(connect: ClientFactory) -> None:
    async with connect() as client:
        too_long = await client.call_tool("get-job-result", {"jobId": "some-job", "waitSeconds": 51})
        bad_status = await client.call_tool("list-jobs", {"status": "done"})
        before = await typed_job_ids(client)
        # maxRetries had no bound: 10**23 retried a tool that never succeeds for ever
        for name, value in (("runAt", 10**20), ("deadline", 2**63), ("timeoutSeconds", 1e308), ("maxRetries", 10**23)):
            far = await client.call_tool("submit-job", {"tool": "typed", "arguments": RAW, name: value})
            assert far.is_error and f"{name}: Input should be less than or equal to" in texts(far), texts(far)
        assert await typed_job_ids(client) == before
        for tool, field in (("get-job-result", "jobId"), ("cancel-job", "jobId"), ("answer-job", "jobId"),
                            ("list-jobs", "cursor"), ("submit-job", "tool")):  # fmt: skip
            huge = await client.call_tool(tool, {"tool": "typed", field: PADDING} if tool == "submit-job" else
                                                {field: PADDING})  # fmt: skip
            assert huge.is_error and f"{field}: String should have at most 256 characters" in texts(huge), tool
            assert len(texts(huge)) + len(str(huge.structured_content)) < 2_000, "the answer echoes the input"
    assert too_long.is_error and "get-job-result': waitSeconds: Input should be less than or equal to 50" in texts(
        too_long
    )
    assert bad_status.is_error and "list-jobs': status: Input should be 'pending'" in texts(bad_status)
    for result in (too_long, bad_status):
        assert "errors.pydantic.dev" not in texts(result) and structured(result)["error"]["code"] == "invalid_params"
