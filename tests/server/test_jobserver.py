"""JobServer as a library: plain tools added by method or decorator are served as ordinary MCP tools, and the
engine it builds for its store runs the tools registered on it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import TextContent

from tests.e2e.conftest import free_port
from tests.pg import postgres_url, with_new_schema
from vibe_jobs import JobContext, JobStatus, Settings, job_tool
from vibe_jobs.errors import BadJobTool, ToolNameTaken, UnknownTool
from vibe_jobs.jobtool import REGISTRY, make_spec
from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.store import JobStore, MemoryStore, open_store

WAIT = 10


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    pg = open_store(with_new_schema(postgres_url("JobServer on PostgreSQL"), "vj_server"))
    try:
        yield pg
    finally:
        await pg.close()
        await pg.drop_schema()  # type: ignore[attr-defined]


async def test_a_tools_own_concurrency_limit_holds_when_registered_after_the_server_is_built(store: JobStore) -> None:
    server = JobServer(store=store, settings=Settings(max_concurrent=4))  # tools come after it
    live, peak, started, go = [0], [0], anyio.Event(), anyio.Event()

    async def one_at_a_time(i: int) -> int:
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        started.set()
        await go.wait()
        live[0] -= 1
        return i

    async def probe() -> str:
        return "probe"

    server.add_spec(make_spec(one_at_a_time, name="one_at_a_time", max_concurrent=1))
    server.add_spec(make_spec(probe, name="probe"))

    async with server.manager as m:
        ids = [await m.create_job("one_at_a_time", {"i": i}) for i in range(3)]
        with anyio.fail_after(WAIT):
            await started.wait()
        # submitted after them and free of their limit: once it has run, so had they if they could
        assert (await m.wait(await m.create_job("probe"), WAIT)).status is JobStatus.COMPLETED
        assert peak[0] == 1
        go.set()
        done: list[Any] = [await m.wait(job_id, WAIT) for job_id in ids]
    assert [rec.status for rec in done] == [JobStatus.COMPLETED] * 3
    assert peak[0] == 1


def shout(text: str) -> str:
    return text.upper()


async def test_plain_tools_answer_within_the_request() -> None:
    server = JobServer(settings=Settings(store_url="memory://"))
    server.add_plain_tool(shout, "shout", "Upper-cases a text")

    @server.tool(description="Adds two numbers")
    def add(a: int, b: int) -> int:
        return a + b

    async with server.manager, Client(server.build()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        loud = await client.call_tool("shout", {"text": "hi"})
        total = await client.call_tool("add", {"a": 2, "b": 3})
    assert tools["shout"].description == "Upper-cases a text"
    assert tools["add"].description == "Adds two numbers"
    assert isinstance(loud.content[0], TextContent) and loud.content[0].text == "HI"
    assert not total.is_error and total.structured_content == {"result": 5}


async def test_server_tool_used_bare_registers_the_function() -> None:
    """`@server.tool` without parentheses took the function as the name: no tool, and the name bound to the
    decorator's inner function."""
    server = JobServer(settings=Settings(store_url="memory://"))

    @server.tool
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    async with server.manager, Client(server.build()) as client:
        answer = await client.call_tool("ping", {})
    assert not answer.is_error and answer.structured_content == {"result": "pong"}


def test_an_ordinary_tool_that_takes_a_job_context_is_refused_as_it_is_registered() -> None:
    """`@server.tool` on a function taking a JobContext (meant as `@server.job_tool`) failed with pydantic's
    "Cannot generate a JsonSchema for IsInstanceSchema"; the refusal now says which decorator it needs."""
    server = JobServer(settings=Settings(store_url="memory://"))

    async def slow(n: int, job: JobContext) -> str:
        return str(n)

    with pytest.raises(BadJobTool, match=r"tool slow: it takes a JobContext \(job\), so it is a job tool"):
        server.tool()(slow)
    server.job_tool(slow)
    assert "slow" in server.specs


async def test_two_tools_of_one_name_are_refused_as_the_second_is_registered() -> None:
    """A plain tool named as a job tool (or as get-job-result) was kept by the MCP server in place of the other,
    with only a warning in the log, while the job tool's spec stayed registered (submit-job and the tasks
    extension still took it)."""
    server = JobServer(settings=Settings(store_url="memory://"))

    async def twin(job: JobContext) -> str:
        return "job"

    async def plain() -> str:
        return "plain"

    server.job_tool(twin)
    with pytest.raises(ToolNameTaken, match="tool twin: a tool of that name is registered already"):
        server.add_plain_tool(plain, "twin")
    with pytest.raises(ToolNameTaken, match="tool get-job-result: the name is one of the server's own tools"):
        server.add_plain_tool(plain, "get-job-result")
    with pytest.raises(ToolNameTaken, match="job tool schedule-job: the name is one of the server's own tools"):
        server.job_tool(twin, name="schedule-job")
    with pytest.raises(ValueError, match="job tool twin"):  # as before: a second job tool of the name
        server.job_tool(twin)
    async with server.manager, Client(server.build()) as client:
        answer = await client.call_tool("twin", {})
        assert not answer.is_error and answer.structured_content is not None
        assert answer.structured_content["jobId"]  # the job tool, still


async def test_concurrency_limits_the_jobs_a_server_on_its_own_store_runs_at_once() -> None:
    """`JobServer(concurrency=1)` applied to the PostgreSQL claims only: on a memory or SQLite store three jobs ran
    at once (the settings' max_concurrent, 5)."""
    server = JobServer(settings=Settings(store_url="memory://"), concurrency=1)
    running: list[str] = []
    release = anyio.Event()

    @server.job_tool
    async def hold(job: JobContext) -> str:
        running.append(job.job_id)
        await release.wait()
        return "done"

    async with server.manager:
        ids = [await server.manager.create_job("hold", {}) for _ in range(3)]
        await anyio.wait_all_tasks_blocked()  # the source has started whatever it would start
        started = list(running)
        release.set()
    assert started == ids[:1]


def test_a_function_marked_job_tool_keeps_its_options_on_a_server() -> None:
    """`server.job_tool(f)` of a function marked `@job_tool(...)` (the README's library form) made a new spec without
    the options written there: the description, operation type, time-out and retry opt-in were gone. Options given
    to `server.job_tool` replace the marked ones."""

    @job_tool(description="Map a code base", operation_type="codemap", timeout=600, retry_safe=True)
    async def marked_map(path: str) -> str:
        return path

    kept, changed = (
        JobServer(settings=Settings(store_url="memory://")),
        JobServer(settings=Settings(store_url="memory://")),
    )
    try:
        kept.job_tool(marked_map)
        changed.job_tool(marked_map, timeout=5)
    finally:
        REGISTRY.pop("marked_map")  # marked here, not in a tools module: no other test's `--tools` serves it
    spec = kept.specs["marked_map"]
    assert (spec.description, spec.operation_type, spec.timeout, spec.retry_safe) == (
        "Map a code base",
        "codemap",
        600,
        True,
    )
    assert changed.specs["marked_map"].timeout == 5 and changed.specs["marked_map"].description == "Map a code base"


SERVE_AND_REPORT = """
import atexit, gc, sys
atexit.register(lambda: print(f"frozen {gc.get_freeze_count()} of {gc.get_freeze_count() + len(gc.get_objects())}",
                              file=sys.stderr))
from vibe_jobs.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
UPSTREAM = [sys.executable, str(Path(__file__).resolve().parents[1] / "e2e" / "proxy_upstream.py")]


@pytest.mark.parametrize("command", [["serve"], ["proxy", "--", *UPSTREAM]], ids=["serve", "proxy"])
def test_a_served_process_leaves_its_start_up_heap_out_of_garbage_collections(command: list[str]) -> None:
    """`vibe-jobs serve` freezes what start-up built (modules, the SDK's and pydantic's schemas): a full
    collection over it paused the server for tens of milliseconds between calls (figure 3's p99). So does
    `vibe-jobs proxy`, a process of its own too (it froze nothing: its `run` had a copy of the serving
    process's life without the freeze)."""
    argv = [command[0], "--store", "memory://", *command[1:]]
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # stdio: nothing but protocol on stdout
    frozen, total = map(int, re.findall(r"^frozen (\d+) of (\d+)$", done.stderr, re.MULTILINE)[0])
    assert frozen > total / 2, done.stderr


LIBRARY_SERVER = """
import sys
from vibe_jobs import JobServer, job_tool

@job_tool(description="adds")
def add(a: int, b: int) -> int:
    return a + b

server = JobServer()
print(server.manager.store.url, server.settings.max_concurrent, file=sys.stderr)
"""


def test_the_library_form_reads_the_environment_as_serve_does(tmp_path: Path) -> None:
    """`JobServer()` (the README's library form) kept its jobs in memory and ignored every variable."""
    url = f"sqlite:///{tmp_path / 'lib.db'}"
    env = {"PATH": os.environ.get("PATH", ""), "VIBE_JOBS_STORE": url, "JOB_MANAGER_MAX_CONCURRENT": "3"}
    done = subprocess.run([sys.executable, "-c", LIBRARY_SERVER], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.split() == [url, "3"], done.stderr
    bad = {**env, "JOB_MANAGER_MAX_CONCURRENT": "abc"}
    refused = subprocess.run(
        [sys.executable, "-c", LIBRARY_SERVER], env=bad, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "JOB_MANAGER_MAX_CONCURRENT" in refused.stderr, refused.stderr


def child_processes() -> set[int]:
    """This process's children (the SQLite store's server process is one)."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.add(int(entry))
    return children


async def test_an_error_in_the_body_of_async_with_manager_comes_out_as_itself_and_the_stop_completes(
    tmp_path: Path,
) -> None:
    """A library user's own exception inside `async with server.manager:` came out as an ExceptionGroup (the
    manager's task group wrapped it: `except KeyError` outside missed it), and the stop stopped there: the lease
    was kept (the next start on the file left the job running until the lease expired, instead of recovering it at
    once) and the SQLite store never closed, its server process left running (one more each time)."""
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    server = JobServer("body-error", settings=Settings(store_url=store_url))
    started = anyio.Event()

    @server.job_tool()
    async def waits(job: JobContext) -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"

    before = child_processes()
    with pytest.raises(KeyError, match="the user's own"):
        async with server.manager as manager:
            job_id = await manager.create_job("waits")
            with anyio.fail_after(WAIT):
                await started.wait()
            raise KeyError("the user's own")
    assert child_processes() == before  # the store's process ended with it
    again = JobServer("body-error", settings=Settings(store_url=store_url))
    again.job_tool(waits)
    async with again.manager as manager:  # the lease released: its job is recovered at once, not after the lease
        rec = await manager.wait(job_id, WAIT)
    assert rec.status is JobStatus.FAILED and "interrupted" in (rec.progress_message or ""), rec


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_job_server_used_again_on_another_event_loop_is_refused_saying_so(kind: str, tmp_path: Path) -> None:
    """A module-level `JobServer` used by two `asyncio.run` calls (two scripts' phases, two tests with loops of
    their own): its second `async with server.manager` failed on the first loop's events and locks, as an
    ExceptionGroup "Event ... is bound to a different event loop" (memory) or a bare CancelledError "Cancelled via
    cancel scope" (SQLite). It is refused as it is entered, saying what to do; the first loop's use is unharmed."""
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"
    server = JobServer("two-loops", settings=Settings(store_url=url))

    @server.job_tool()
    async def double(n: int) -> int:
        return 2 * n

    async def use() -> JobStatus:
        async with server.manager as manager:
            return (await manager.wait(await manager.create_job("double", {"n": 2}), WAIT)).status

    assert asyncio.run(use()) is JobStatus.COMPLETED
    with pytest.raises(RuntimeError, match=r"ran on another event loop.*a new JobServer"):
        asyncio.run(use())


async def test_a_job_of_a_tool_the_server_lacks_is_refused_as_it_is_created(store: JobStore) -> None:
    """`server.manager.create_job("indx", ...)` (a misspelt tool) stored the job and left it pending for ever: no
    process here could run it and nothing said so. A process that runs jobs refuses to create one of a tool it
    has not, naming its tools; nothing is stored."""
    server = JobServer("library", settings=Settings(), store=store)

    @server.job_tool()
    async def index(documents: int) -> int:
        return documents

    async with server.manager as manager:
        with pytest.raises(UnknownTool, match=r"no job tool named 'indx' here; its job tools: index"):
            await manager.create_job("indx", {"documents": 3})
        assert (await manager.list_jobs()).jobs == []
        assert (
            await manager.wait(await manager.create_job("index", {"documents": 3}), WAIT)
        ).status.value == "completed"


SERVES_TWICE = """
import sys

import anyio
from mcp import Client

from vibe_jobs import JobServer, Settings


async def serve_until_answered(port: int) -> None:
    server = JobServer("served-twice", settings=Settings())
    async with anyio.create_task_group() as serving:
        serving.start_soon(server.serve, "streamable-http", "127.0.0.1", port)
        with anyio.fail_after(10):
            while True:  # until it listens
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                print(len((await client.list_tools()).tools), flush=True)
        serving.cancel_scope.cancel()  # the program's own stop of the server it runs in a task


async def main() -> None:
    for port in sys.argv[1:]:  # one event loop
        await serve_until_answered(int(port))


anyio.run(main)
"""


def test_a_program_serves_http_again_after_cancelling_its_first_serving(tmp_path: Path) -> None:
    """A program that runs `await server.serve("streamable-http")` in a task and cancels it (its own stop, a test's
    fixture), then serves again in the same event loop: uvicorn left its listener registered on the loop while the
    socket closed, so the next server's socket, given the same file number, was never accepted from (every
    connection hung). A program of its own: inside pytest another file took that number in between."""
    program = tmp_path / "serves_twice.py"
    program.write_text(SERVES_TWICE)
    ports = [str(free_port()), str(free_port())]
    env = {**os.environ, "VIBE_JOBS_STORE": "memory://", "VIBE_JOBS_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, str(program), *ports], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["11", "11"], done.stdout + done.stderr[-3000:]
