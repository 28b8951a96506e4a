"""The README's Python, run as written: each block of README.md and docs/*.md compiles; the job tool and the
library form (`JobServer`) serve what the text says over stdio with the real client; the talk-back example and
the declared schedule work through `vibe-jobs serve --tools MODULE`; the `vibe-jobs call` tour runs as written; the
tools the tables show take the arguments and defaults shown. Also a library user's program written from
the README (tests/library_app.py, type-checked with the tests) over stdio and streamable HTTP."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, TextContent

from tests.e2e.conftest import free_port, stop, wait_for_port
from tests.e2e.raw_stdio import INIT, RawStdio
from vibe_jobs.client import call_and_wait

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
ENV |= {"VIBE_JOBS_STORE": "memory://", "VIBE_JOBS_LOG_LEVEL": "warning"}


def python_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.name}:{page.read_text()[: found.start()].count(chr(10)) + 1}", found.group(1))
        for page in PAGES
        for found in re.finditer(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
    ]


def block_with(text: str) -> str:
    """The README's one Python block holding `text`."""
    (block,) = [code for _where, code in python_blocks() if text in code]
    return block


def server_program() -> str:
    """The README's job tool and its `JobServer` block: one program, as a reader puts them together."""
    return block_with("async def map_code") + block_with("server = JobServer()")


def in_process_program() -> str:
    """The README's job tool and its block that runs the jobs in the program itself."""
    return block_with("async def map_code") + block_with("server.manager as manager")


def tools_module() -> str:
    """A `--tools` module of the README's job tools: the talk-back one (with the `find_stale` it leaves to the
    reader) and the one that declares its schedule."""
    module = block_with("async def map_code") + TALK_BACK_MODULE + block_with("async def clean")
    return module + block_with("async def sweep_tmp")


TALK_BACK_MODULE = """
def find_stale(path: str) -> list[str]:
    return ["a.tmp", "b.tmp"]
"""


def text_of(result: CallToolResult) -> str:
    assert isinstance(result.content[0], TextContent), result
    return result.content[0].text


@asynccontextmanager
async def stdio(args: list[str], cwd: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=args, env=ENV, cwd=str(cwd))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            yield client


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[where for where, _code in python_blocks()])
def test_every_python_block_of_the_docs_is_python(where: str, code: str) -> None:
    ast.parse(code, where)


def test_what_the_readme_names_of_the_library_comes_from_the_package() -> None:
    """`JobContext.elicit` and `.sample` answer `Elicitation(action, content, data)` and `Sample(...)`, as the README
    says: a user who annotates a helper with them had to find them in `vibe_jobs.questions`."""
    import vibe_jobs

    for name in ("JobContext", "JobServer", "RetryPolicy", "Elicitation", "Sample", "job_tool"):
        assert name in vibe_jobs.__all__ and getattr(vibe_jobs, name) is not None, name


def test_the_readme_python_type_checks_for_a_user_of_the_typed_package(tmp_path: Path) -> None:
    """vibe-jobs ships `py.typed`: the README's code passes `mypy --strict` as a user's own code (`...` bodies
    aside). `JobServer` was `object` to mypy, its decorators untyped, and `answer.data.confirm` an error."""
    (tmp_path / "readme_server.py").write_text(server_program())
    (tmp_path / "readme_tools.py").write_text(tools_module())
    (tmp_path / "readme_in_process.py").write_text(in_process_program())
    checks = ["--strict", "--disable-error-code", "empty-body", "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *checks, "readme_server.py", "readme_tools.py", "readme_in_process.py"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_library_form_serves_the_job_tool_as_declared(tmp_path: Path) -> None:
    """The README's job tool and its `JobServer` block, one program as written: `server.job_tool(map_code)` of a
    function marked `@job_tool(description=..., timeout=600, ...)` registered it without those options (the tool
    read "Run map_code as a job", with no time-out)."""
    program = tmp_path / "readme_server.py"
    program.write_text(server_program())
    async with stdio([str(program)], tmp_path) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        started = await client.call_tool("map_code", {"path": "src"})
        result = await call_and_wait(client, "map_code", {"path": "src"})
        status = await client.call_tool("get-job-result", {"jobId": (started.structured_content or {})["jobId"]})
        version = await client.call_tool("version", {})
    assert (tools["map_code"].description or "").startswith("Map a code base")
    answer = started.structured_content or {}
    assert sorted(answer) == ["jobId", "message", "pollingRecommendation", "status", "toolName"]
    assert result.structured_content == {"files": 42}
    shown = status.structured_content or {}
    assert shown["status"] == "completed" and shown["progress"] == 100
    assert shown["details"]["currentStage"] == "scan" and shown["details"]["subProgress"] == 100
    assert "skipped 3 binary files" in shown["details"]["diagnostics"]
    assert text_of(version) == "1.0"


async def test_the_talk_back_example_and_the_declared_schedule_serve_with_tools(tmp_path: Path) -> None:
    """`vibe-jobs serve --tools mymodule` of the README's blocks: it registers `map_code`; `clean` asks, samples and
    answers as its text says; `sweep_tmp`'s schedule exists as `code:sweep_tmp`."""
    (tmp_path / "readme_tools.py").write_text(tools_module())
    asked: list[str] = []

    async def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        asked.append(message)
        return {"action": "accept", "content": {"confirm": True}}

    async def decline(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"action": "decline"}

    async def on_sample(params: dict[str, Any]) -> str:
        return "two stale temp files"

    async with stdio(["-m", "vibe_jobs", "serve", "--tools", "readme_tools"], tmp_path) as client:
        deleted = await call_and_wait(client, "clean", {"path": "."}, on_elicit=on_elicit, on_sample=on_sample)
        kept = await call_and_wait(client, "clean", {"path": "."}, on_elicit=decline)
        schedules = await client.call_tool("list-schedules", {})
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert (tools["map_code"].description or "").startswith("Map a code base")  # "registers it"
    assert asked == ["Delete 2 files?"]
    assert text_of(deleted) == "deleted; two stale temp files"
    assert text_of(kept) == "kept them (decline)"
    assert [s["scheduleId"] for s in (schedules.structured_content or {})["schedules"]] == ["code:sweep_tmp"]


async def follow_the_library_app(client: Client) -> None:
    """What tests/library_app.py's three job tools and plain tool answer, as its author expects."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert (tools["build_report"].description or "").startswith("Build a report from a request")
    request = {"title": "Q3", "sections": ["sales"], "pages": 4}
    report = await call_and_wait(client, "build_report", {"request": request})
    assert report.structured_content == {"title": "Q3", "words": 1000}
    refused = await client.call_tool("build_report", {"request": {**request, "pages": 400}})
    assert refused.is_error and "request.pages" in text_of(refused)
    heard: list[str | None] = []
    indexed = await call_and_wait(client, "index_corpus", {"documents": 3}, on_progress=lambda p, t, m: heard.append(m))
    assert indexed.structured_content == {"indexed": 3}
    assert all(m is None or re.match(r"\[(fetch|tokenize|embed)\] ", m) for m in heard), heard
    fetched = await call_and_wait(client, "flaky_fetch", {"url": "https://example.com"})
    assert not fetched.is_error and text_of(fetched) == "fetched https://example.com on attempt 3"
    assert text_of(await client.call_tool("version", {})) == "1.0"


async def test_a_library_app_written_from_the_readme_runs_over_stdio() -> None:
    async with stdio([str(ROOT / "tests" / "library_app.py")], ROOT) as client:
        await follow_the_library_app(client)


@pytest.fixture
def library_app_over_http() -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "tests" / "library_app.py"), "streamable-http", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


async def test_a_library_app_written_from_the_readme_runs_over_http(library_app_over_http: str) -> None:
    async with Client(library_app_over_http, read_timeout_seconds=60) as client:
        await follow_the_library_app(client)


OWN_LOOP_PROGRAM = """
import anyio
from vibe_jobs import JobContext, JobServer

server = JobServer("own-loop")


@server.job_tool()
async def fails(job: JobContext) -> str:
    raise RuntimeError("it broke")


anyio.run(server.serve)  # stdio, in a program that set up no logging of its own
"""


async def test_a_program_awaiting_serve_on_stdio_writes_only_the_protocol_to_stdout(tmp_path: Path) -> None:
    """`JobServer.serve` awaited by a program of its own (not `run`, which sets up logging) that set up no logging:
    structlog's default wrote `server.started` to stdout, the protocol's stream, before the first answer (the
    client read a line that is not JSON-RPC); the lines go to stderr."""
    program = tmp_path / "own_loop.py"
    program.write_text(OWN_LOOP_PROGRAM)
    with tempfile.TemporaryFile("w+") as errlog:
        proc = await anyio.open_process(
            [sys.executable, str(program)], env=ENV | {"VIBE_JOBS_LOG_LEVEL": "info"}, cwd=tmp_path, stderr=errlog
        )
        try:
            wire = RawStdio(proc)  # every line it reads must be JSON-RPC
            init = await wire.request("initialize", INIT)
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            started = await wire.call("fails", {})
            job_id = started["result"]["structuredContent"]["jobId"]
            failed = await wire.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
            await wire.stop("EOF")
            with anyio.fail_after(20):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.aclose()
        errlog.seek(0)
        err = errlog.read()
    assert init["result"]["serverInfo"]["name"] == "own-loop"
    assert failed["result"]["structuredContent"]["status"] == "failed"
    assert "server.started" in err and "job.raised" in err, err


def test_the_readme_program_that_runs_its_jobs_itself_prints_what_it_says(tmp_path: Path) -> None:
    """The README's job tool and its in-process block, one program as written: it prints the finished job's status
    and result, and nothing else reaches stdout (the log goes to stderr)."""
    program = tmp_path / "readme_in_process.py"
    program.write_text(in_process_program())
    done = subprocess.run(
        [sys.executable, str(program)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    status, result = done.stdout.rstrip("\n").split(" ", 1)
    assert status == "completed" and "'structuredContent': {'files': 42}" in result, done.stdout


def call_tour() -> list[tuple[list[str], str]]:
    """The README's `vibe-jobs call` tour: each line's words and its comment."""
    section = (ROOT / "README.md").read_text().split("### `vibe-jobs call`: a short tour", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [(shlex.split(line, comments=True), line.partition("  # ")[2]) for line in block.splitlines()]


def test_the_call_tour_runs_as_written(tmp_path: Path) -> None:
    """Each line of the tour in a folder with a `src` and a test; a line with `--url` against `vibe-jobs serve
    --transport streamable-http` (as `make run` starts it) given the variables its comment names. The
    `run-command` line named none, and a server without them has no run-command: "Unknown tool: run-command"."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def main() -> None: ...\n")
    (tmp_path / "test_app.py").write_text("def test_app() -> None: ...\n")
    env = ENV | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV['PATH']}"}
    for words, comment in call_tour():
        assert words[:2] == ["vibe-jobs", "call"], words
        named = dict(re.findall(r"\b(VIBE_JOBS_\w+)=(\S+)", comment))
        with tour_server(tmp_path, env | named) if "--url" in words else nullcontext(8000) as port:
            argv = [word.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for word in words[1:]]
            done = subprocess.run(
                [sys.executable, "-m", "vibe_jobs", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip(), (words, done.stderr)


@contextmanager
def tour_server(cwd: Path, env: dict[str, str]) -> Iterator[int]:
    """`vibe-jobs serve --transport streamable-http` in `cwd`, on a port of its own."""
    port = free_port()
    server = [sys.executable, "-m", "vibe_jobs", "serve", "--transport", "streamable-http", "--port", str(port)]
    proc = subprocess.Popen(server, cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        stop(proc)


def tools_shown() -> list[tuple[str, str, str | None]]:
    """Each `tool-name {arg, arg?, arg=default, ...}` of the README: (tool, argument, default or None)."""
    shown = []
    for tool, args in re.findall(r"`([a-z]+-[a-z-]+) \{([^}]*)\}`", (ROOT / "README.md").read_text()):
        for item in re.split(r",\s*|\s*\\\|\s*", args):
            if found := re.match(r"(\w+)(?:=(.+))?", item.strip()):
                shown.append((tool, found.group(1), found.group(2)))
    return shown


async def test_the_tools_the_readme_shows_take_the_arguments_and_defaults_it_shows(tmp_path: Path) -> None:
    """The tables' `get-job-result {jobId, includeDetails=true, waitSeconds=0}` and the like, against the tools a
    server lists (run-command registered): each tool, each argument, each default as shown."""
    env = ENV | {"VIBE_JOBS_ALLOWED_COMMANDS": "ls"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "vibe_jobs", "serve"], env=env, cwd=str(ROOT))
    async with Client(stdio_client(params), read_timeout_seconds=60) as client:
        listed = {tool.name: tool.input_schema.get("properties", {}) for tool in (await client.list_tools()).tools}
    wrong = []
    for tool, argument, default in tools_shown():
        schema = listed.get(tool, {}).get(argument)
        if schema is None or (default is not None and schema.get("default") != json.loads(default)):
            wrong.append(f"{tool} {argument}={default}: {'no such tool' if tool not in listed else schema}")
    assert len(tools_shown()) > 40 and not wrong, wrong
