"""The built-in job tools (map-codebase, run-command) over MCP, against the real server process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, ROOT, http_client_for, start_http, stdio_client_for
from tests.e2e.test_identity_e2e import ALICE, client_as
from tests.e2e.test_jobs_e2e import read, start, structured, texts, until_running
from tests.pg import postgres_url, with_new_schema
from tests.process_groups import live_members

pytestmark = pytest.mark.timeout(90)

ALLOWED = "python3,sleep,sh"
FINISHED = ("completed", "failed", "cancelled")

SOURCES: dict[str, str] = {
    "pkg/shapes.py": (
        "class Circle:\n"
        "    def __init__(self, radius: float) -> None:\n"
        "        self.radius = radius\n"
        "\n"
        "    def area(self) -> float:\n"
        "        return 3.14 * self.radius**2\n"
        "\n"
        "\n"
        "async def fetch_shapes(url: str) -> list[Circle]:\n"
        "    return []\n"
    ),
    "web/api.ts": (
        "export interface Invoice {\n"
        "  id: string;\n"
        "}\n"
        "\n"
        "export function totalOf(invoices: Invoice[]): number {\n"
        "  return invoices.length;\n"
        "}\n"
        "\n"
        "export class InvoiceStore {\n"
        "  add(invoice: Invoice): void {}\n"
        "}\n"
    ),
    "svc/server.go": (
        "package svc\n"
        "\n"
        "type Server struct {\n"
        "\taddr string\n"
        "}\n"
        "\n"
        "func NewServer(addr string) *Server {\n"
        "\treturn &Server{addr: addr}\n"
        "}\n"
        "\n"
        "func (s *Server) Listen() error {\n"
        "\treturn nil\n"
        "}\n"
    ),
    "core/lib.rs": (
        "pub struct Engine {\n"
        "    speed: u32,\n"
        "}\n"
        "\n"
        "pub trait Drivable {\n"
        "    fn drive(&self);\n"
        "}\n"
        "\n"
        "pub fn ignite(engine: &Engine) -> bool {\n"
        "    engine.speed > 0\n"
        "}\n"
    ),
    "java/Ledger.java": (
        "package java;\n"
        "\n"
        "public class Ledger {\n"
        "    public int balance(String account) {\n"
        "        return 0;\n"
        "    }\n"
        "}\n"
    ),
    "secret/hidden.py": "def should_not_appear():\n    pass\n",
    "generated.py": "def also_hidden():\n    pass\n",
    ".gitignore": "secret/\ngenerated.py\n",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, body in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)


def env_for(root: Path, allowed: str | None = None) -> dict[str, str]:
    env = {"VIBE_JOBS_ROOTS": str(root)}
    if allowed is not None:
        env["VIBE_JOBS_ALLOWED_COMMANDS"] = allowed
    return env


@asynccontextmanager
async def server(mode: str, root: Path, allowed: str | None = None) -> AsyncIterator[Client]:
    async with stdio_client_for(mode, env_for(root, allowed)) as client:
        yield client


async def finish(client: Client, job_id: str, seconds: float = 30.0) -> tuple[Any, dict[str, Any]]:
    """Long-poll until the job is finished (bounded by `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        result, body = await read(client, job_id, waitSeconds=min(20.0, max(deadline - time.monotonic(), 0.1)))
        if body["status"] in FINISHED or time.monotonic() >= deadline:
            return result, body


async def job_count(client: Client) -> int:
    return len(structured(await client.call_tool("list-jobs", {"limit": 500}))["jobs"])


def by_name(symbols: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {symbol["name"]: symbol for symbol in symbols}


# --- map-codebase --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_map_codebase_finds_symbols_in_every_language(mode: str, tmp_path: Path) -> None:
    """...and reads as done once finished: a completed job read `currentStage: render, subProgress: 0`, as if stuck
    at its start, in get-job-result and list-jobs."""
    write_tree(tmp_path, SOURCES)
    async with server(mode, tmp_path) as client:
        job_id = await start(client, "map-codebase", {"path": str(tmp_path)})
        result, body = await finish(client, job_id)
        listed = structured(await client.call_tool("list-jobs", {"limit": 5}))["jobs"]
    assert body["status"] == "completed" and not result.is_error, texts(result)
    assert body["progress"] == 100 and body["details"]["currentStage"] == "render", body
    assert body["details"]["subProgress"] == 100, body["details"]
    job = next(j for j in listed if j["id"] == job_id)
    assert job.get("details", {}).get("subProgress", 100) == 100, job
    code_map = body["result"]["structuredContent"]
    files = {entry["path"]: entry for entry in code_map["files"]}
    assert "secret/hidden.py" not in files and "generated.py" not in files
    assert {path: entry["language"] for path, entry in files.items() if path != ".gitignore"} == {
        "pkg/shapes.py": "Python",
        "web/api.ts": "TypeScript",
        "svc/server.go": "Go",
        "core/lib.rs": "Rust",
        "java/Ledger.java": "Java",
    }

    python = by_name(files["pkg/shapes.py"]["symbols"])
    assert python["Circle"]["kind"] == "class"
    assert {c["name"]: c["kind"] for c in python["Circle"]["children"]} == {"__init__": "method", "area": "method"}
    assert python["fetch_shapes"]["kind"] == "function" and "async" in python["fetch_shapes"]["signature"]

    ts = by_name(files["web/api.ts"]["symbols"])
    assert (ts["Invoice"]["kind"], ts["totalOf"]["kind"], ts["InvoiceStore"]["kind"]) == (
        "interface",
        "function",
        "class",
    )
    assert [c["name"] for c in ts["InvoiceStore"]["children"]] == ["add"]

    go = by_name(files["svc/server.go"]["symbols"])
    assert go["Server"]["kind"] == "struct"
    assert go["NewServer"]["kind"] == "function"
    listen = next(s for name, s in go.items() if name.endswith("Listen"))
    assert listen["kind"] == "method" and "Server" in listen["name"]

    rust = by_name(files["core/lib.rs"]["symbols"])
    assert (rust["Engine"]["kind"], rust["Drivable"]["kind"], rust["ignite"]["kind"]) == ("struct", "trait", "function")

    java = by_name(files["java/Ledger.java"]["symbols"])
    assert java["Ledger"]["kind"] == "class"
    assert [c["name"] for c in java["Ledger"]["children"]] == ["balance"]

    markdown = texts(result)
    for needle in ("pkg/shapes.py", "Circle", "fetch_shapes", "totalOf", "InvoiceStore", "Invoice", "NewServer"):
        assert needle in markdown, needle
    for needle in ("Listen", "Engine", "Drivable", "ignite", "Ledger", "balance"):
        assert needle in markdown, needle
    assert "should_not_appear" not in markdown and "also_hidden" not in markdown


async def test_map_codebase_refusals_create_no_job_and_no_run_command_by_default(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_tree(root, {"a.py": "def a():\n    pass\n"})
    write_tree(outside, {"b.py": "def b():\n    pass\n"})
    (root / "link").symlink_to(outside, target_is_directory=True)
    outside_message = "does not exist or is outside the allowed roots"
    cases = {
        "outside-roots": (str(outside), f"path '{outside}' {outside_message}"),
        "missing-path": (str(root / "no-such-dir"), outside_message),
        "relative-escape": ("../outside", outside_message),
        "symlink-escaping-root": (str(root / "link"), f"path '{root / 'link'}' {outside_message}"),
        "a-file": (str(root / "a.py"), "is not a directory"),
    }
    async with server("auto", root) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "map-codebase" in names and "run-command" not in names, "run-command needs allowed programs"
        for case, (path, needle) in cases.items():
            result = await client.call_tool("map-codebase", {"path": path})
            assert result.is_error, (case, texts(result))
            assert "map-codebase refused" in texts(result) and needle in texts(result), (case, texts(result))
        assert await job_count(client) == 0


async def test_a_refusal_names_the_roots_to_the_operator_only(tmp_path: Path) -> None:
    """The roots are the operator's configuration: a server without authentication has one caller, the operator,
    whose agent is told them and can correct its path (it was told nothing); a principal with a token is not."""
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for directory in (first, second, outside):
        directory.mkdir()
    roots = os.pathsep.join(map(str, (first, second)))
    named = f"outside the allowed roots ('{first}', '{second}'; a relative path starts at the first)"
    async with stdio_client_for("auto", {"VIBE_JOBS_ROOTS": roots}) as client:
        result = await client.call_tool("map-codebase", {"path": str(outside)})
        assert result.is_error and named in texts(result), texts(result)
        assert not (await client.call_tool("map-codebase", {"path": str(second)})).is_error
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    tokens.chmod(0o600)
    with start_http("streamable-http", {"VIBE_JOBS_ROOTS": roots}, ["--auth-tokens", str(tokens)]) as http:
        async with client_as(http, ALICE) as alice:
            result = await alice.call_tool("map-codebase", {"path": str(outside)})
            assert result.is_error, texts(result)
            assert (
                texts(result)
                == f"map-codebase refused: path '{outside}' does not exist or is outside the allowed roots"
            )


def private_root_and_alices_token(tmp_path: Path) -> tuple[Path, Path]:
    """The operator's root (a directory whose path no principal is told, holding `pkg/a.py`) and a token file
    naming alice: the setting of the tests of how a map names its directory."""
    first = tmp_path / "operators-private-dir"
    (first / "pkg").mkdir(parents=True)
    (first / "pkg" / "a.py").write_text("def f() -> int:\n    return 1\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    tokens.chmod(0o600)
    return first, tokens


async def test_a_map_names_its_directory_as_the_principal_gave_it_not_the_servers_path(tmp_path: Path) -> None:
    """With authentication the roots are not told to a principal (the operator's configuration), yet the map of
    "." said "Code map of /the/operator's/first/root" (its text, `structured.root`): it names the directory as the
    caller gave it now. Over stdio (the operator) the map keeps naming the resolved directory."""
    first, tokens = private_root_and_alices_token(tmp_path)
    with start_http("streamable-http", {"VIBE_JOBS_ROOTS": str(first)}, ["--auth-tokens", str(tokens)]) as http:
        async with client_as(http, ALICE) as alice:
            for path, fmt in ((".", "markdown"), ("pkg", "json")):
                job_id = await start(alice, "map-codebase", {"path": path, "format": fmt})
                result = await alice.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 20})
                body = structured(result)
                assert body["status"] == "completed" and body["result"]["structuredContent"]["root"] == path, body
                assert str(tmp_path) not in json.dumps([texts(result), body]), texts(result)
    async with stdio_client_for("auto", {"VIBE_JOBS_ROOTS": str(first)}) as client:
        job_id = await start(client, "map-codebase", {"path": "."})
        result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 20})
        assert structured(result)["result"]["structuredContent"]["root"] == str(first.resolve()), structured(result)


@pytest.mark.postgres
async def test_a_map_run_by_a_worker_names_its_directory_as_the_principal_gave_it(tmp_path: Path) -> None:
    """The cluster layout (README): authenticated `serve --no-worker` replicas, `vibe-jobs worker`s that serve
    nothing and so hold no token settings. The worker named the roots (it has no authentication: "the operator is
    its one caller"), so alice's map of "." said "Code map of /the/operator's/root" again, run there. Whether the
    roots are named is the job's creator's: a principal with a token is not told them, whoever runs the job."""
    from vibe_jobs.store.postgres import PostgresStore

    first, tokens = private_root_and_alices_token(tmp_path)
    store = with_new_schema(postgres_url("a worker's map-codebase"), "vj_map")
    env = {**os.environ, "VIBE_JOBS_ROOTS": str(first), "VIBE_JOBS_STORE": store}
    worker_cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", store, "--drain-seconds", "0.5"]
    args = ["--auth-tokens", str(tokens), "--no-worker", "--store", store]
    try:
        async with await anyio.open_process(worker_cmd, cwd=ROOT, env=env, stdout=None, stderr=None) as worker:
            with start_http("streamable-http", {"VIBE_JOBS_ROOTS": str(first)}, args) as http:
                async with client_as(http, ALICE) as alice:
                    job_id = await start(alice, "map-codebase", {"path": "."})
                    result = await alice.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
            worker.terminate()
            with anyio.fail_after(15):
                await worker.wait()
    finally:
        await PostgresStore(store).drop_schema()
    body = structured(result)
    assert body["status"] == "completed", body
    assert body["result"]["structuredContent"]["root"] == ".", body  # before: the worker's resolved path
    assert str(tmp_path) not in json.dumps([texts(result), body]), texts(result)


@pytest.mark.postgres
async def test_a_worker_s_refusal_at_run_time_names_no_root_to_a_principal(tmp_path: Path) -> None:
    """A directory accepted when alice asked (an authenticated replica) and gone when a worker runs the job: the
    worker's refusal named the operator's roots to her ("outside the allowed roots ('/the/root'; ...)"), map-codebase's
    and run-command's alike: the worker holds no token settings. It names them only in the operator's jobs now."""
    from vibe_jobs.store.postgres import PostgresStore

    first = tmp_path / "operators-private-dir"
    (first / "gone").mkdir(parents=True)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    tokens.chmod(0o600)
    store = with_new_schema(postgres_url("a worker's refusals"), "vj_refusal")
    shared = {"VIBE_JOBS_ROOTS": str(first), "VIBE_JOBS_ALLOWED_COMMANDS": "sh"}
    worker_cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", store, "--drain-seconds", "0.5"]
    args = ["--auth-tokens", str(tokens), "--no-worker", "--store", store]
    answers = []
    try:
        with start_http("streamable-http", shared, args) as http:
            async with client_as(http, ALICE) as alice:
                ids = [
                    await start(alice, "map-codebase", {"path": "gone"}),
                    await start(alice, "run-command", {"command": ["sh", "-c", "true"], "cwd": "gone"}),
                ]
                (first / "gone").rmdir()  # after the call's own check, before any run
                env = {**os.environ, **shared}
                async with await anyio.open_process(worker_cmd, cwd=ROOT, env=env, stdout=None, stderr=None) as worker:
                    for job_id in ids:
                        answers.append(await alice.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30}))
                    worker.terminate()
                    with anyio.fail_after(15):
                        await worker.wait()
    finally:
        await PostgresStore(store).drop_schema()
    for answer in answers:
        body = structured(answer)
        assert body["status"] == "failed" and "outside the allowed roots" in json.dumps(body), body
        assert str(tmp_path) not in json.dumps([texts(answer), body]), body  # before: the worker named the root


async def test_map_codebase_refuses_globs_past_their_limits_before_a_job(tmp_path: Path) -> None:
    """300 KB of exclude globs were compiled on the server's event loop: every client waited ~4 s."""
    hostile = ["x" + "*y" * 500 + str(i) for i in range(300)]
    async with server("auto", tmp_path) as client:
        result = await client.call_tool("map-codebase", {"path": str(tmp_path), "exclude": hostile})
        assert result.is_error, texts(result)
        limits = "at most 1,000 patterns of 16,384 characters together"
        size = sum(map(len, hostile))
        assert texts(result) == f"map-codebase refused: exclude: 300 patterns of {size:,} characters; {limits}"
        assert await job_count(client) == 0


def write_big_tree(root: Path, count: int) -> None:
    per_dir = 500
    for d in range(0, count, per_dir):
        folder = root / f"d{d // per_dir:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(d, min(d + per_dir, count)):
            fd = os.open(folder / f"m{i}.py", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"def f():\n    return 1\n")
            os.close(fd)


@pytest.fixture
def big_tree(tmp_path: Path) -> Iterator[Path]:
    """20,000 small files, on tmpfs when there is one (creating them on a busy disk is slow)."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="vibe-jobs-e2e-", dir=shm)) if shm.is_dir() else tmp_path / "big"
    try:
        write_big_tree(base, 20_000)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_control_characters_in_file_names_are_shown_escaped(tmp_path: Path) -> None:
    """A newline broke the Markdown heading, and a terminal's escape sequences in a name reached the screen of
    whoever read the map (`vibe-jobs call` prints it)."""
    write_tree(tmp_path, {"new\nline.py": "def a():\n    pass\n", "esc\x1b[2J\x07x.py": "def b():\n    pass\n"})
    async with server("auto", tmp_path) as client:
        job_id = await start(client, "map-codebase", {"path": str(tmp_path)})
        result, body = await finish(client, job_id)
    text = texts(result)
    assert "\x1b" not in text and "\x07" not in text and "new\nline" not in text, text
    assert "`new\\nline.py`" in text and "esc\\x1b[2J\\x07x.py" in text, text
    paths = sorted(entry["path"] for entry in body["result"]["structuredContent"]["files"])
    assert paths == ["esc\\x1b[2J\\x07x.py", "new\\nline.py"]


async def test_a_map_over_the_result_limit_keeps_its_first_files_and_says_so(tmp_path: Path) -> None:
    """Past VIBE_JOBS_MAX_RESULT_BYTES the job's result is cut whole: the map lost every file entry (structured
    content became only {truncated, originalBytes}) while its text said "the structured result lists them all"."""
    for d in range(4):
        write_tree(tmp_path / f"pkg{d}", {f"mod{i}.py": "".join(f"def f{k}(a, b):\n    pass\n" for k in range(10))
                                          for i in range(500)})  # fmt: skip
    env = {**env_for(tmp_path), "VIBE_JOBS_MAX_RESULT_BYTES": "700000"}
    async with stdio_client_for("auto", env) as client:
        job_id = await start(client, "map-codebase", {"path": str(tmp_path)})
        result, body = await finish(client, job_id, seconds=120)
    assert body["status"] == "completed", texts(result)
    mapped = body["result"]["structuredContent"]
    assert "originalBytes" not in mapped, "the result was cut whole"
    assert mapped["totalFiles"] == 2_000 and mapped["filesOmitted"] > 0 and mapped["files"], mapped.keys()
    assert len(mapped["files"]) + mapped["filesOmitted"] == 2_000
    assert "lists them all" not in texts(result)
    assert f"{mapped['filesOmitted']:,} more files were mapped but left out of this result" in texts(result)


async def test_map_codebase_cancelled_while_mapping(big_tree: Path) -> None:
    async with server("auto", big_tree) as client:
        job_id = await start(client, "map-codebase", {"path": str(big_tree), "maxFiles": 20_000})  # about 1 s
        # short long-polls: a 0.5 s one (`until_running`) waited out half of the map, which the cancel then missed
        # on an idle machine
        while (await read(client, job_id, waitSeconds=0.05))[1]["status"] == "pending":
            pass
        cancelled = await client.call_tool("cancel-job", {"jobId": job_id, "reason": "too slow"})
        result, body = await finish(client, job_id)
    assert structured(cancelled)["status"] == "cancelled", texts(cancelled)
    assert body["status"] == "cancelled" and result.is_error, texts(result)
    assert "too slow" in texts(result)
    assert body["details"]["currentStage"] in ("scan", "parse"), "the cancel should land while files are mapped"
    assert "Code map of" not in texts(result)


# --- run-command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_run_command_reports_exit_code_and_output(mode: str, tmp_path: Path) -> None:
    async with server(mode, tmp_path, ALLOWED) as client:
        ok_id = await start(client, "run-command", {"command": ["python3", "-c", "print(42)"]})
        bad_id = await start(client, "run-command", {"command": ["python3", "-c", "import sys; sys.exit(3)"]})
        ok_result, ok = await finish(client, ok_id)
        bad_result, bad = await finish(client, bad_id)
    assert ok["status"] == "completed" and not ok_result.is_error, texts(ok_result)
    outcome = ok["result"]["structuredContent"]
    assert outcome["exitCode"] == 0 and outcome["timedOut"] is False
    assert "42" in outcome["stdoutTail"]
    assert "exited with code 0" in texts(ok_result)
    # a failing program is a completed job that shows the exit code, not a failed job
    assert bad["status"] == "completed" and not bad_result.is_error, texts(bad_result)
    assert bad["result"]["structuredContent"]["exitCode"] == 3
    assert "exited with code 3" in texts(bad_result)


async def test_run_command_reports_the_commands_memory_not_the_servers(tmp_path: Path) -> None:
    """Linux starts a child's ru_maxrss at its parent's size: `sleep` reported the server's ~60 MB."""
    async with server("auto", tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", "sleep 0.3"]})
        _, body = await finish(client, job_id)
    outcome = body["result"]["structuredContent"]
    assert outcome["exitCode"] == 0
    assert 0 < outcome["peakMemoryMB"] < 20, outcome["peakMemoryMB"]


async def test_a_long_output_line_is_cut_once_within_the_diagnostics_cap(tmp_path: Path) -> None:
    """Cut twice (by the tool, then by the job), a 6,000-character line became 2,029 characters saying it had
    2,030; now it is cut once, to at most 2,000, saying how long it was."""
    async with server("auto", tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["python3", "-c", "print('A' * 6000)"]})
        _, body = await finish(client, job_id)
    lines = [line for line in body["details"]["diagnostics"] if line.startswith("stdout: AAA")]
    assert len(lines) == 1 and len(lines[0]) <= 2000, [len(line) for line in lines]
    assert lines[0].endswith(" [line cut: 6,008 characters]"), lines[0][-60:]  # "stdout: " + 6,000


async def test_run_command_refusals_create_no_job(tmp_path: Path) -> None:
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "program-not-allowed": ({"command": ["rm", "-rf", "x"]}, "program 'rm' is not allowed"),
        "path-to-allowed-name": ({"command": ["/bin/sleep", "0"]}, "program '/bin/sleep' is not allowed"),
        "cwd-outside-roots": ({"command": ["sleep", "0"], "cwd": "/"}, "path '/' does not exist or is outside"),
        "cwd-missing": ({"command": ["sleep", "0"], "cwd": str(tmp_path / "nope")}, "does not exist or is outside"),
    }
    async with server("auto", tmp_path, ALLOWED) as client:
        for case, (args, needle) in cases.items():
            result = await client.call_tool("run-command", args)
            assert result.is_error, (case, texts(result))
            assert "run-command refused" in texts(result) and needle in texts(result), (case, texts(result))
        assert await job_count(client) == 0


async def test_run_command_time_out_fails_the_job(tmp_path: Path) -> None:
    async with server("auto", tmp_path, ALLOWED) as client:
        began = time.monotonic()
        job_id = await start(client, "run-command", {"command": ["sleep", "30"], "timeoutSeconds": 0.5})
        result, body = await finish(client, job_id)
        took = time.monotonic() - began
    assert body["status"] == "failed" and result.is_error, texts(result)
    assert "time-out" in texts(result)
    assert took < 15


async def test_run_command_s_own_time_out_is_a_time_out_not_a_fault(tmp_path: Path) -> None:
    """run-command's `timeoutSeconds` is a time-out its caller set, as the job's own is: the job's diagnostics
    said so and then where in vibe-jobs it was raised ("raised at builtin.py:175 in __call__", as for a bug), and
    `vibe_jobs_jobs_timed_out` did not count it. One line names the time-out, no code location; it is counted."""
    from tests.e2e.test_health_metrics_e2e import moved, scrape

    with start_http("streamable-http", env_for(tmp_path, ALLOWED)) as http:
        async with http_client_for(http, "auto") as client:
            before = await scrape(http)
            job_id = await start(client, "run-command", {"command": ["sleep", "30"], "timeoutSeconds": 0.5})
            _, body = await finish(client, job_id)
            after = await scrape(http)
    diagnostics = body["details"]["diagnostics"]
    assert body["status"] == "failed", body
    assert [line for line in diagnostics if "time-out" in line] == [
        "JobTimeout: the command ran past its 0.5 s time-out and was stopped"
    ], diagnostics
    assert not [line for line in diagnostics if "raised at" in line], diagnostics
    assert moved(before, after, "vibe_jobs_jobs_timed_out_total", tool="run-command") == 1


async def test_a_running_command_s_output_streams_into_its_diagnostics(tmp_path: Path) -> None:
    """Issue 6: "Output streams into the job: the progress message is the last line, diagnostics keep the last
    lines". The lines became diagnostics only once the command ended: a reader of a running command saw none.
    Each line is given once, in order, as it comes, and the rest when the command ends."""
    script = "echo one; echo two; sleep 1.2; echo three; sleep 30"  # (the lines are added at most every second)
    async with server("auto", tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        deadline = time.monotonic() + 15
        body: dict[str, Any] = {}
        running: list[str] = []
        # the message shows a line at once, the diagnostics within DIAGNOSTICS_EVERY (1 s) of it: wait for both
        while (body.get("message") != "three" or len(running) < 3) and time.monotonic() < deadline:
            _, body = await read(client, job_id, waitSeconds=0.3)
            running = [line for line in body["details"]["diagnostics"] if line.startswith("stdout:")]
        assert (body["status"], running) == ("running", ["stdout: one", "stdout: two", "stdout: three"]), body
        await client.call_tool("cancel-job", {"jobId": job_id})
        _, body = await finish(client, job_id)
    kept = [line for line in body["details"]["diagnostics"] if line.startswith("stdout:")]
    assert kept == ["stdout: one", "stdout: two", "stdout: three"], body["details"]["diagnostics"]


async def test_a_line_before_a_quiet_spell_reaches_the_diagnostics_and_the_message_during_it(tmp_path: Path) -> None:
    """Lines within the second after a write were held for the next write: a command that then went quiet (a
    build step, a download) showed its last lines neither as diagnostics nor as its message until it ended. Held
    lines are written when the write limits allow, output or not."""
    script = "echo one; sleep 0.4; echo two; echo three; sleep 30"
    async with server("auto", tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        deadline = time.monotonic() + 15
        body: dict[str, Any] = {}
        seen: list[str] = []
        while "stdout: three" not in seen and time.monotonic() < deadline:
            _, body = await read(client, job_id, waitSeconds=0.3)
            seen = [line for line in body.get("details", {}).get("diagnostics", []) if line.startswith("stdout:")]
        assert (body["status"], body["message"]) == ("running", "three"), body
        assert seen == ["stdout: one", "stdout: two", "stdout: three"], body
        await client.call_tool("cancel-job", {"jobId": job_id})
        _, body = await finish(client, job_id)
    kept = [line for line in body["details"]["diagnostics"] if line.startswith("stdout:")]
    assert kept == ["stdout: one", "stdout: two", "stdout: three"], body["details"]["diagnostics"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_cancelled_command_keeps_its_last_output_lines_as_diagnostics(mode: str, tmp_path: Path) -> None:
    # (the progress message is written at most every 0.2 s: "ready", after a pause, is written whatever came before)
    script = "echo first; echo second >&2; echo third; sleep 0.5; echo ready; sleep 30"
    async with server(mode, tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        deadline = time.monotonic() + 15
        body: dict[str, Any] = {}
        while body.get("message") != "ready" and time.monotonic() < deadline:  # the last line, streamed
            _, body = await read(client, job_id, waitSeconds=0.3)
        assert body.get("message") == "ready", body
        await client.call_tool("cancel-job", {"jobId": job_id})
        result, body = await finish(client, job_id)
    assert body["status"] == "cancelled", texts(result)
    kept = [line for line in body["details"]["diagnostics"] if line.startswith(("stdout:", "stderr:"))]
    # (the two pipes are read apart: their lines' order between the streams is not the program's)
    expected = ["stderr: second", "stdout: first", "stdout: ready", "stdout: third"]
    assert sorted(kept) == expected, body["details"]["diagnostics"]


async def until_gone(pgid: int, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := live_members(pgid)) and time.monotonic() < deadline:  # noqa: ASYNC110 - no event for this
        await anyio.sleep(0.05)  # nothing signals "process group empty": poll /proc, bounded by the deadline
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_run_command_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = 'sleep 30 & a=$!; sleep 30 & b=$!; echo "pgid=$$ children=$a,$b"; wait'
    async with server("auto", tmp_path, ALLOWED) as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        await until_running(client, job_id)
        deadline = time.monotonic() + 15
        found = None
        while found is None and time.monotonic() < deadline:
            _, body = await read(client, job_id, waitSeconds=0.3)
            found = re.search(r"pgid=(\d+) children=(\d+),(\d+)", body.get("message") or "")
        assert found is not None, "the job never reported its process group"
        pgid, children = int(found[1]), {int(found[2]), int(found[3])}
        assert children <= set(live_members(pgid)), "the children should be running before the cancel"
        cancelled = await client.call_tool("cancel-job", {"jobId": job_id, "reason": "stop it"})
        result, body = await finish(client, job_id)
        left = await until_gone(pgid)  # checked while the server still runs: the cancel, not shutdown, did it
    assert structured(cancelled)["status"] == "cancelled", (texts(cancelled), structured(cancelled), body)
    assert body["status"] == "cancelled" and result.is_error, texts(result)
    assert left == [], f"processes of group {pgid} still alive after the cancel"


def _serve_stdio_and_close(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://"]
    full = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_LEVEL": "warning", **env}
    return subprocess.run(cmd, cwd=ROOT, env=full, input="", capture_output=True, text=True, timeout=60)


def test_a_root_that_is_no_directory_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    """A missing root (or roots joined by commas) started silently; every call was then refused."""
    joined = f"{tmp_path / 'r1'},{tmp_path / 'r2'}"
    done = _serve_stdio_and_close({"VIBE_JOBS_ROOTS": joined})
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert "VIBE_JOBS_ROOTS=" in done.stderr and "is not a directory" in done.stderr
    assert f"separated by {os.pathsep!r}" in done.stderr and "Traceback" not in done.stderr


def test_an_allowed_program_that_is_not_there_is_warned_of_at_start_up() -> None:
    done = _serve_stdio_and_close({"VIBE_JOBS_ALLOWED_COMMANDS": "sh,no-such-program-here"})
    assert done.returncode == 0 and done.stdout == "", done.stderr
    warned = [line for line in done.stderr.splitlines() if "run_command.program_not_found" in line]
    assert len(warned) == 1 and "no-such-program-here" in warned[0] and "VIBE_JOBS_ALLOWED_COMMANDS" in warned[0]
