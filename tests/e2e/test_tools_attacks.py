"""The built-in tools attacked as a hostile caller (or a hostile file tree) would, against the real server.

Each test starts the real `vibe-jobs serve` and drives it with the real MCP client; run-command runs
real processes. What is asserted is what a user relies on: the allowlist decides what runs, a child
sees no secret of the server, no file name or file content takes the server down or freezes it, and
no process outlives the job that started it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT, free_port, stop, wait_for_port
from tests.e2e.test_builtin_tools import finish, job_count, write_tree
from tests.e2e.test_jobs_e2e import read, start, texts, until_running
from tests.store.test_sqlite import server_process
from vibe_jobs.manager import MAX_DIAGNOSTICS
from vibe_jobs.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

SECRET = "AKIA-very-secret-value-4242"


def server_env(root: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **BASE_ENV, "VIBE_JOBS_ROOTS": str(root), **extra}


@asynccontextmanager
async def stdio_server(env: dict[str, str], store: str = "memory://", errlog: Any = None) -> AsyncIterator[Client]:
    """The real server over stdio (`store` chosen), its stderr written to `errlog` when given."""
    args = ["-m", "vibe_jobs", "serve", "--store", store]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as scratch:
        async with Client(stdio_client(params, errlog=errlog or scratch), mode="auto", read_timeout_seconds=60) as c:
            yield c


def executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def refused(client: Client, tool: str, args: dict[str, Any]) -> str:
    """The refusal text of a call that must create no job."""
    before = await job_count(client)
    result = await client.call_tool(tool, args)
    assert result.is_error, texts(result)
    assert await job_count(client) == before, "a refused call created a job"
    return texts(result)


# --- 1, 2. the allowlist decides what runs; the child sees no secret of the server ---------------


async def run(client: Client, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run a command to its end: (its stdout, the finished job)."""
    job_id = await start(client, "run-command", args)
    result, body = await finish(client, job_id)
    assert body["status"] == "completed", texts(result)
    return body["result"]["structuredContent"]["stdoutTail"], body


async def test_the_allowlist_decides_what_runs_whatever_the_caller_sends(tmp_path: Path) -> None:
    root, evil, bin_dir = tmp_path / "root", tmp_path / "evil", tmp_path / "bin"
    marker = tmp_path / "pwned"
    executable(evil / "ls", f"touch {marker}\n")
    executable(bin_dir / "vj-tool", "echo trusted\n")
    executable(root / "scripts" / "build.sh", "echo pinned\n")
    executable(root / "sub" / "scripts" / "build.sh", "echo hijacked\n")
    env = server_env(root, VIBE_JOBS_ALLOWED_COMMANDS="ls,printenv,vj-tool,./scripts/build.sh")
    env["VIBE_JOBS_COMMAND_ENV"] = "GREETING"
    env["PATH"] = f"{root}:{bin_dir}:{env['PATH']}"  # the root comes first on PATH (no vj-tool there at start-up)
    async with stdio_server(env) as client:
        for attack in ({"PATH": str(evil)}, {"LD_PRELOAD": str(evil / "lib.so")}, {"PATH": str(evil), "X": "1"}):
            text = await refused(client, "run-command", {"command": ["ls"], "env": attack})
            assert "VIBE_JOBS_COMMAND_ENV" in text and all(name in text for name in attack), text
            assert "/evil" not in text, "refusals name variables, never their values"
        assert (await run(client, {"command": ["printenv", "GREETING"], "env": {"GREETING": "hi"}}))[0] == "hi\n"
        # an entry with a slash is pinned under the root, not looked up from the caller's cwd
        assert (await run(client, {"command": ["./scripts/build.sh"], "cwd": "sub"}))[0] == "pinned\n"
        # a program planted later earlier on PATH (or in the cwd) is not the one resolved at start-up
        executable(root / "vj-tool", "echo planted\n")
        assert (await run(client, {"command": ["vj-tool"]}))[0] == "trusted\n"
    assert not marker.exists(), "the caller's PATH chose the program"


async def test_the_child_sees_no_secret_and_env_values_never_reach_the_log(tmp_path: Path) -> None:
    env = server_env(tmp_path, VIBE_JOBS_ALLOWED_COMMANDS="printenv,sleep", AWS_SECRET_ACCESS_KEY=SECRET)
    env |= {"VIBE_JOBS_COMMAND_ENV": "API_TOKEN", "VIBE_JOBS_LOG_LEVEL": "debug", "HOME": str(tmp_path), "LANG": "C"}
    token = "tok-" + SECRET[::-1]
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_server(env, errlog=errlog) as client:
            out, _ = await run(client, {"command": ["printenv"]})
            slow = await start(client, "run-command", {"command": ["sleep", "30"], "env": {"API_TOKEN": token}})
            await until_running(client, slow)
            await client.call_tool("cancel-job", {"jobId": slow})
            await finish(client, slow)
            await refused(client, "run-command", {"command": ["sleep", "0"], "env": {"OTHER": token}})
        errlog.seek(0)
        log = errlog.read()
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert {"PATH", "HOME", "LANG"} <= names and SECRET not in out, out
    assert not names & {"AWS_SECRET_ACCESS_KEY", "VIBE_JOBS_ROOTS", "VIBE_JOBS_ALLOWED_COMMANDS", "PYTHONPATH"}, out
    assert "job" in log, "the debug log was written"
    assert token not in log


@contextmanager
def nobody_dir() -> Iterator[Path]:
    """A directory the server may write when it runs as nobody (see `as_user`)."""
    path = Path(tempfile.mkdtemp(prefix="vibe-jobs-nobody-"))
    try:
        if os.geteuid() == 0:
            os.chown(path, 65534, 65534)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_user() -> list[str]:
    """The command prefix that runs the server as an unprivileged user: root reads every /proc entry anyway.
    Skips where that user cannot run this interpreter (one under /root, mode 0700, whose libpython it cannot
    load: pyenv's 3.12 and 3.13 here), rather than failing as a closed connection."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import vibe_jobs"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"user 65534 cannot run {sys.executable}: {probe.stderr.strip()[-300:]}")
    return prefix


async def test_a_child_cannot_read_the_server_s_environment_from_proc() -> None:
    """An allowed `cat` learnt the server's pid from its own /proc/self/stat and read the server's tokens from
    /proc/<pid>/environ: the environment run-command never passes on (review helper-59 F1)."""
    with nobody_dir() as root:
        env = server_env(root, VIBE_JOBS_ALLOWED_COMMANDS="cat", AWS_SECRET_ACCESS_KEY=SECRET, HOME=str(root))
        prefix = as_user()
        args = [*prefix[1:], sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://"]
        command = prefix[0] if prefix else args.pop(0)
        params = StdioServerParameters(command=command, args=args, env=env, cwd=str(ROOT))
        with tempfile.TemporaryFile("w+") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="auto", read_timeout_seconds=60) as client:
                stat, _ = await run(client, {"command": ["cat", "/proc/self/stat"]})
                server = int(stat.rpartition(")")[2].split()[1])
                job_id = await start(client, "run-command", {"command": ["cat", f"/proc/{server}/environ"]})
                result, body = await finish(client, job_id)
    outcome = body["result"]["structuredContent"]
    assert outcome["exitCode"] != 0 and SECRET not in json.dumps(body), texts(result)
    assert "Permission denied" in outcome["stderrTail"]


async def test_the_sqlite_store_s_process_holds_none_of_the_server_s_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's process needs no token or key of the server's: one more /proc/PID/environ that a same-user
    program could read held them all."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    try:
        pid = server_process(store).pid
        environ = await anyio.Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        await store.close()
    assert SECRET.encode() not in environ and b"PATH=" in environ


# --- 3. a file name that is not UTF-8 -----------------------------------------------------------


async def test_a_non_utf8_file_name_maps_and_the_stored_result_is_readable_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "code"
    root.mkdir()
    fd = os.open(os.fsencode(root) + b"/\xff_bad.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"def odd():\n    pass\n")
    os.close(fd)
    (root / "fine.py").write_text("def fine():\n    pass\n")
    env = server_env(root)
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with stdio_server(env, store) as client:
        job_id = await start(client, "map-codebase", {"path": str(root)})
        result, body = await finish(client, job_id)
        assert body["status"] == "completed", texts(result)
        paths = [entry["path"] for entry in body["result"]["structuredContent"]["files"]]
        assert sorted(paths) == ["\\xff_bad.py", "fine.py"]
        assert "\\xff_bad.py" in texts(result)
        assert await job_count(client) == 1, "the server still answers"
    async with stdio_server(env, store) as client:
        again, body = await read(client, job_id)
        assert body["status"] == "completed" and "\\xff_bad.py" in texts(again)
        assert await job_count(client) == 1


# --- 4. a file that made a regular expression quadratic -------------------------------------------


async def test_a_hostile_source_file_maps_fast_and_the_server_keeps_answering(tmp_path: Path) -> None:
    write_tree(tmp_path, {"hostile.js": "/*a" * 40000, "ok.js": "export function fine() {}\n"})
    async with stdio_server(server_env(tmp_path)) as client:
        began = time.monotonic()
        job_id = await start(client, "map-codebase", {"path": str(tmp_path)})
        slowest = 0.0
        body: dict[str, Any] = {"status": "pending"}
        while body["status"] not in ("completed", "failed") and time.monotonic() - began < 10:
            asked = time.monotonic()
            await client.call_tool("list-jobs", {})
            slowest = max(slowest, time.monotonic() - asked)
            _, body = await read(client, job_id, waitSeconds=0.05)
        took = time.monotonic() - began
    assert body["status"] == "completed", body.get("message")
    # linear, not quadratic (it took 18 s): bounds with room for a loaded machine's wall clock
    assert took < 6.0, f"mapping one 120 KB file took {took:.1f} s"
    assert slowest < 3.0, f"list-jobs waited {slowest:.2f} s while the map ran"
    files = {entry["path"]: entry for entry in body["result"]["structuredContent"]["files"]}
    assert files["ok.js"]["symbols"][0]["name"] == "fine"


# --- 7. /proc, special files ----------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/kmsg"), reason="needs /proc/kmsg")
async def test_mapping_proc_does_not_hang_on_kmsg() -> None:
    args = {"path": "/proc", "include": ["/kmsg", "/version"], "exclude": ["[0-9]*", "self", "thread-self", "sys"]}
    async with stdio_server(server_env(Path("/proc"))) as client:
        job_id = await start(client, "map-codebase", args)
        result, body = await finish(client, job_id, seconds=20)
    assert body["status"] == "completed", texts(result)
    paths = {entry["path"] for entry in body["result"]["structuredContent"]["files"]}
    assert "version" in paths


# --- 11, 15, 16, 17. caps and refusals ----------------------------------------------------------------


async def test_caps_pathological_files_and_refusals_of_map_codebase(tmp_path: Path) -> None:
    root = tmp_path / "root"
    deep = "def f(x=" + "+".join(["1"] * 900) + "):\n    pass\n"  # a RecursionError in ast.unparse
    write_tree(root, {"deep.py": deep, **{f"m{i:02}.py": "x = 1\n" for i in range(12)}})
    write_tree(tmp_path / "dir-a", {"b.py": ""})  # dir-a exists, dir-b does not: both are outside the root
    env = server_env(root, VIBE_JOBS_ALLOWED_COMMANDS="true", VIBE_JOBS_MAX_PARAMS_BYTES=str(4 * 1024 * 1024))
    async with stdio_server(env) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema = tools["map-codebase"].input_schema["properties"]["maxFiles"]
        assert schema.get("default") == 10_000 and "10,000" in schema.get("description", ""), schema
        capped = await start(client, "map-codebase", {"path": str(root), "maxFiles": 5})
        whole = await start(client, "map-codebase", {"path": str(root)})
        capped_result, capped_body = await finish(client, capped)
        _, whole_body = await finish(client, whole)
        refusals = [
            await refused(client, "map-codebase", {"path": str(tmp_path / "dir-a")}),
            await refused(client, "map-codebase", {"path": str(tmp_path / "dir-b")}),
            await refused(client, "run-command", {"command": ["true"], "cwd": str(tmp_path / "dir-a")}),
            await refused(client, "run-command", {"command": ["true"], "cwd": str(tmp_path / "dir-b")}),
        ]
        huge = await refused(client, "map-codebase", {"path": "a/" * 1_000_000})
    code_map = capped_body["result"]["structuredContent"]
    assert (code_map["totalFiles"], code_map["truncated"], code_map["maxFiles"]) == (5, True, 5)
    assert "maxFiles (5 files)" in texts(capped_result)
    assert whole_body["status"] == "completed", whole_body.get("message")
    whole_map = whole_body["result"]["structuredContent"]
    assert whole_map["totalFiles"] == 13 and whole_map["truncated"] is False
    assert [d for d in whole_map["diagnostics"] if d.startswith("deep.py:") and "RecursionError" in d]
    assert "Traceback" not in str(whole_body)
    assert refusals[0].replace("dir-a", "X") == refusals[1].replace("dir-b", "X")
    assert refusals[2].replace("dir-a", "X") == refusals[3].replace("dir-b", "X")
    # what is outside the roots is never told (the two refusals above are one); the roots themselves are named
    # only to the operator, as here over stdio without authentication (test_builtin_tools: never with a token)
    assert all("outside the allowed roots" in text for text in refusals[:2]), refusals
    assert "4,096" in huge and "path" in huge and len(huge) < 1000, huge[:500]


async def test_output_without_newlines_is_capped_in_diagnostics(tmp_path: Path) -> None:
    code = "import sys\nfor _ in range(20): sys.stdout.write('x' * 70000 + '\\n')"
    env = server_env(tmp_path, VIBE_JOBS_ALLOWED_COMMANDS=Path(sys.executable).name)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    async with stdio_server(env) as client:
        job_id = await start(client, "run-command", {"command": [Path(sys.executable).name, "-c", code]})
        result, body = await finish(client, job_id)
    assert body["status"] == "completed", texts(result)
    diagnostics = body["details"]["diagnostics"]
    assert diagnostics and max(len(line) for line in diagnostics) <= 2200
    assert sum(len(line) for line in diagnostics) <= 20_000
    assert any("cut" in line for line in diagnostics), diagnostics[-1][-200:]


async def test_an_output_flood_leaves_other_calls_quick_and_the_last_lines_kept(tmp_path: Path) -> None:
    """`yes` writes 32,768 lines per 64 KiB read, and each went through Python calls on the event loop: a
    list-jobs beside it took 0.35 s (median; 3 ms idle, 1.8 s beside three floods). The lines of a read are
    now handled at once (7 ms beside `yes`); what the job keeps of normal output is unchanged."""
    env = server_env(tmp_path, VIBE_JOBS_ALLOWED_COMMANDS="yes,seq")
    async with stdio_server(env) as client:
        flood_id = await start(client, "run-command", {"command": ["yes"], "timeoutSeconds": 5})
        await until_running(client, flood_id)
        waits = []
        for _ in range(7):
            asked = time.monotonic()
            await client.call_tool("list-jobs", {"limit": 1})
            waits.append(time.monotonic() - asked)
        flood_result, flood = await finish(client, flood_id)
        _, counted = await run(client, {"command": ["seq", "100000"]})
    assert sorted(waits)[3] < 0.1, f"list-jobs beside the flood: {[round(w, 3) for w in sorted(waits)]} s"
    assert flood["status"] == "failed" and "time-out" in texts(flood_result), texts(flood_result)
    # the output streams into the diagnostics (the last lines of each second, the job keeping its last 100)
    flooded = [line for line in flood["details"]["diagnostics"] if line.startswith("stdout: ")]
    assert 20 <= len(flooded) <= MAX_DIAGNOSTICS and set(flooded) == {"stdout: y"}, flooded
    kept = [line for line in counted["details"]["diagnostics"] if line.startswith("stdout: ")]
    assert kept[-20:] == [f"stdout: {n}" for n in range(99_981, 100_001)]
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == sorted(set(numbers)), numbers  # each line once, in order


# --- 8. no process outlives its job ---------------------------------------------------------------

# A shell that starts a grandchild in its own session (out of the shell's process group), says the
# pids, then waits: what a build tool that daemonises a helper does.
ESCAPE = 'setsid sleep 60 & echo "grandchild=$! child=$$ server=$PPID"; wait'
PIDS = re.compile(r"grandchild=(\d+) child=(\d+) server=(\d+)")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def gone(*pids: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.05)
    return True


async def pids_of(client: Client, job_id: str) -> tuple[int, int, int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _, body = await read(client, job_id, waitSeconds=0.3)
        found = PIDS.search(body.get("message") or "")
        if found:
            return int(found[1]), int(found[2]), int(found[3])
    raise AssertionError("the command never said its pids")


async def test_a_grandchild_in_its_own_session_ends_with_its_job_on_cancel_and_time_out(tmp_path: Path) -> None:
    async with stdio_server(server_env(tmp_path, VIBE_JOBS_ALLOWED_COMMANDS="sh")) as client:
        cancelled = await start(client, "run-command", {"command": ["sh", "-c", ESCAPE]})
        timed_out = await start(client, "run-command", {"command": ["sh", "-c", ESCAPE], "timeoutSeconds": 3})
        first, first_child, _ = await pids_of(client, cancelled)
        second, second_child, _ = await pids_of(client, timed_out)
        assert alive(first) and alive(second)
        await client.call_tool("cancel-job", {"jobId": cancelled})
        _, cancelled_body = await finish(client, cancelled)
        _, timed_out_body = await finish(client, timed_out)
        ended = await gone(first, first_child, second, second_child)  # while the server runs: the jobs' end did it
    assert (cancelled_body["status"], timed_out_body["status"]) == ("cancelled", "failed")
    assert ended, "a setsid grandchild outlived its job"


@contextmanager
def http_server(env: dict[str, str], store: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The real server over streamable HTTP on `store`, as a process the test can SIGKILL."""
    port = free_port()
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", store, "--transport", "streamable-http"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield proc, f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)  # not a second time when the test killed it


async def test_after_the_server_is_killed_its_commands_end_or_are_killed_at_restart(tmp_path: Path) -> None:
    env = server_env(tmp_path, VIBE_JOBS_ALLOWED_COMMANDS="sh", VIBE_JOBS_LEASE_SECONDS="1")
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with http_server(env, store) as (proc, url):
        async with Client(url, mode="auto", read_timeout_seconds=60) as client:
            job_id = await start(client, "run-command", {"command": ["sh", "-c", ESCAPE]})
            grandchild, child, server = await pids_of(client, job_id)
            assert server == proc.pid
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert await gone(child), "the command's own process outlived the server (parent-death signal)"
    with http_server(env, store) as (_, url):
        async with Client(url, mode="auto", read_timeout_seconds=60) as client:
            _, body = await finish(client, job_id)
    assert body["status"] == "failed" and "interrupted" in texts_of(body)
    assert await gone(grandchild), f"the grandchild {grandchild} outlived the server and its restart (recovery)"


def texts_of(body: dict[str, Any]) -> str:
    return str(body.get("message")) + str(body.get("result"))
