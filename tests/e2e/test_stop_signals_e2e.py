"""How the real `vibe-jobs serve` stops on the signals its parents send, with run-command jobs running.

Who sends what: a terminal closed under a shell user sends SIGHUP; Ctrl-C is SIGINT, twice when the first seems
slow; Docker and systemd send SIGTERM; an MCP client (Claude Desktop, the SDK's stdio client) closes stdin, waits
2 s, then sends SIGTERM, then SIGKILL. Whatever the order, the server must stop as a stop (exit 0, the lease
released) and no process a job started may outlive it: the command's own process dies with the server (its
parent-death signal), but what the command started does not, and only a restart on the same store would end it.

Each command here says it started, then waits on a grandchild (a subshell running `sleep`) that ignores SIGTERM,
as a build tool's helper that finishes its work first may; the command writes `term` to a file when it gets
SIGTERM, which shows that the server's stop has begun.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT, start_http
from tests.e2e.raw_stdio import INIT, RawStdio, raw_stdio
from tests.e2e.test_hostile_input import until_status
from tests.pg import postgres_url, with_new_schema

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")]

# $0 is the file the command writes `term` to on SIGTERM; the grandchild ignores SIGTERM
COMMAND = "(trap '' TERM; exec sleep 300) & trap 'echo term > \"$0\"' TERM; echo started; while :; do wait; done"


def run_processes(marker: str) -> list[int]:
    """The live processes of the run whose environment carries `marker` (zombies are gone)."""
    tag = f"VIBE_JOBS_RUN_ID={marker}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if state not in ("Z", "X") and tag in environ:
            found.append(int(entry.name))
    return found


def ended(pids: list[int]) -> list[int]:
    """`pids`, each killed (so that a failing test leaves no `sleep 300` behind)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids


def command_env(tmp: Path) -> dict[str, str]:
    return {"VIBE_JOBS_ALLOWED_COMMANDS": "sh", "VIBE_JOBS_ROOTS": str(tmp), "VIBE_JOBS_LOG_LEVEL": "info"}


async def started_command(server: RawStdio, tmp: Path) -> tuple[str, str, Path]:
    """Start the command; once it runs: its job id, its run marker and the file it writes on SIGTERM."""
    mark = tmp / "term"
    answer = await server.call("run-command", {"command": ["sh", "-c", COMMAND, str(mark)], "cwd": str(tmp)})
    job_id = answer["result"]["structuredContent"]["jobId"]
    with anyio.fail_after(15):
        while True:
            answer = await server.call("get-job-result", {"jobId": job_id, "waitSeconds": 0.5})
            details = answer["result"]["structuredContent"].get("details") or {}
            process = (details.get("metadata") or {}).get("process")
            if process and "stdout: started" in details.get("diagnostics", []):  # its trap is set
                return job_id, process["marker"], mark


async def until_exists(path: Path, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110 - written by another process: no event
            await anyio.sleep(0.02)


async def exit_code(server: RawStdio, seconds: float = 15.0) -> int:
    with anyio.fail_after(seconds):
        return await server.proc.wait()


@asynccontextmanager
async def stdio_with_stderr(store: str, tmp: Path) -> AsyncIterator[tuple[RawStdio, Any]]:
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(store, env=command_env(tmp), stderr=errlog) as server:
            yield server, errlog


def stderr_text(errlog: Any) -> str:
    errlog.seek(0)
    return str(errlog.read().decode(errors="replace"))


async def interrupted_after_restart(store: str, tmp: Path, job_id: str) -> dict[str, Any]:
    async with raw_stdio(store, env=command_env(tmp)) as again:
        answer = await again.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
    body: dict[str, Any] = answer["result"]["structuredContent"]
    return body


async def test_sighup_stops_a_stdio_server_as_sigterm_does(tmp_path: Path) -> None:
    """A terminal closed under `vibe-jobs serve` sent SIGHUP, whose default action killed the server outright
    (exit -1): no `server.stopped`, no lease released, and the command's grandchild ran on (sleep 300 here)."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with stdio_with_stderr(store, tmp_path) as (server, errlog):
        job_id, marker, _ = await started_command(server, tmp_path)
        server.proc.send_signal(signal.SIGHUP)
        code = await exit_code(server)
        left = ended(run_processes(marker))
        log = stderr_text(errlog)
    assert code == 0, f"exit {code}"
    assert left == [], f"processes of the job outlived the server: {left}"
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]
    body = await interrupted_after_restart(store, tmp_path, job_id)
    assert body["status"] == "failed" and "interrupted" in body["message"], body


@pytest.mark.parametrize(
    ("first", "second"),
    [("EOF", signal.SIGTERM), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM)],
    ids=["client-EOF-then-SIGTERM", "ctrl-c-twice", "SIGTERM-twice"],
)
async def test_a_signal_while_the_server_stops_ends_every_process_of_its_jobs(
    tmp_path: Path, first: str | signal.Signals, second: signal.Signals
) -> None:
    """An MCP client closes stdin, waits 2 s, then sends SIGTERM; a command slow to end on SIGTERM holds the
    stop for its grace (2 s), so the SIGTERM came while the server stopped. Its default action then killed the
    server (exit -15; Ctrl-C twice: 130) and the command's grandchild ran on, the server gone. A signal while
    stopping now ends the commands at once (SIGKILL to all they started) and the stop completes."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with stdio_with_stderr(store, tmp_path) as (server, errlog):
        job_id, marker, mark = await started_command(server, tmp_path)
        if first == "EOF":
            await server.stop("EOF")
        else:
            assert isinstance(first, signal.Signals)
            server.proc.send_signal(first)
        await until_exists(mark)  # the stop has begun: the command got its SIGTERM, and ignores it
        began = time.monotonic()
        server.proc.send_signal(second)
        code = await exit_code(server)
        took = time.monotonic() - began
        left = ended(run_processes(marker))
        log = stderr_text(errlog)
    assert code == 0, f"exit {code}"
    assert left == [], f"processes of the job outlived the server: {left}"
    assert took < 1.5, f"the stop took {took:.1f} s after the second signal"
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]
    body = await interrupted_after_restart(store, tmp_path, job_id)
    assert body["status"] == "failed" and "interrupted" in body["message"], body


# starts the server with its own stdin and stdout (the test's pipes), names it on stderr, waits for it
LAUNCHER = (
    sys.executable,
    "-c",
    "import subprocess, sys; server = subprocess.Popen(sys.argv[1:]);"
    " print(f'launched {server.pid}', file=sys.stderr, flush=True); server.wait()",
)


async def test_a_stdio_server_whose_client_died_stops_though_its_stdin_stays_open(tmp_path: Path) -> None:
    """Claude Desktop crashed while another process held the server's stdin open (one that inherited the pipe): no
    EOF came, and the server ran on for ever, an orphan, the processes of its jobs with it. It now sees the process
    that started it go (its parent changes) and stops as at EOF: every process of its jobs ended, `server.stopped`,
    its lease released (the job interrupted at the next start)."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(store, env=command_env(tmp_path), stderr=errlog, launcher=LAUNCHER) as server:
            job_id, marker, _ = await started_command(server, tmp_path)
            pid = int(stderr_text(errlog).split("launched ", 1)[1].split()[0])
            try:
                server.proc.kill()  # the client dies: this test still holds the server's stdin (and stdout)
                await server.proc.wait()
                began = time.monotonic()
                await output_closed(server, 20)  # the server has exited
                took = time.monotonic() - began
            finally:  # else a failing test leaves the server running, and its command's `sleep 300`
                left, _ = ended(run_processes(marker)), ended([pid])
            log = stderr_text(errlog)
    assert left == [], f"processes of the job outlived the server: {left}"
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]
    assert took < 10, f"the server took {took:.1f} s to stop after its client died"
    body = await interrupted_after_restart(store, tmp_path, job_id)
    assert body["status"] == "failed" and "interrupted" in body["message"], body


async def output_closed(server: RawStdio, seconds: float) -> None:
    """Until the server's stdout ends (every line it writes before is skipped)."""
    with anyio.fail_after(seconds), contextlib.suppress(anyio.EndOfStream):
        while True:
            await server.out.receive()


async def test_sighup_stops_an_http_server_as_sigterm_does(tmp_path: Path) -> None:
    """Over HTTP, uvicorn's signal handling (SIGINT, SIGTERM) left SIGHUP to its default action too."""
    with start_http("streamable-http", command_env(tmp_path)) as server:
        async with Client(server.url, mode="auto", read_timeout_seconds=30) as client:
            started = await client.call_tool("run-command", {"command": ["sh", "-c", "sleep 300 & wait"]})
            job_id = (started.structured_content or {})["jobId"]
            marker = await run_marker(client, job_id)
        server.proc.send_signal(signal.SIGHUP)
        code = server.proc.wait(15)
        left = ended(run_processes(marker))
        log = stderr_text(server.errlog)
    assert code == 0, f"exit {code}"
    assert left == [], f"processes of the job outlived the server: {left}"
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]


async def run_marker(client: Client, job_id: str) -> str:
    with anyio.fail_after(15):
        while True:
            read = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 0.5})
            metadata = ((read.structured_content or {}).get("details") or {}).get("metadata") or {}
            if "process" in metadata:
                return str(metadata["process"]["marker"])


@pytest.mark.postgres
@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_signal_while_a_worker_drains_ends_the_drain_and_every_process_of_its_jobs(
    tmp_path: Path, first: signal.Signals
) -> None:
    """`vibe-jobs worker` drains on SIGTERM (30 s by default, Docker's own stop waits 10 s); a second SIGTERM
    (or Ctrl-C twice) met the default action: exit -15, and the command's grandchild ran on. Now it ends the
    drain: the jobs are stopped as at the drain's end, their commands killed at once, the lease released (another
    process fails the job as interrupted), exit 0. SIGHUP starts the drain as SIGTERM does."""
    from vibe_jobs.store.postgres import PostgresStore

    store = with_new_schema(postgres_url("the worker's stop signals"), "vj_stop")
    env = {**command_env(tmp_path), "VIBE_JOBS_LEASE_SECONDS": "2"}
    worker_cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", store, "--drain-seconds", "30"]
    try:
        async with raw_stdio(store, env=env, args=("--no-worker",)) as server:
            with tempfile.TemporaryFile() as errlog:
                full_env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **env}
                worker = await anyio.open_process(worker_cmd, env=full_env, cwd=ROOT, stderr=errlog)
                async with worker:
                    job_id, marker, _ = await started_command(server, tmp_path)
                    worker.send_signal(first)
                    await until_logged(errlog, '"worker.draining"', worker)
                    assert worker.returncode is None, f"{first.name} ended the worker (exit {worker.returncode})"
                    worker.send_signal(signal.SIGTERM)
                    with anyio.fail_after(15):
                        code = await worker.wait()
                left = ended(run_processes(marker))
                log = stderr_text(errlog)
            answer = await server.call("get-job-result", {"jobId": job_id, "waitSeconds": 10})
    finally:
        await PostgresStore(store).drop_schema()
    assert code == 0, f"exit {code}"
    assert left == [], f"processes of the job outlived the worker: {left}"
    assert '"worker.stopped"' in log and "Traceback" not in log, log[-2000:]
    body = answer["result"]["structuredContent"]
    assert body["status"] == "failed" and "interrupted" in body["message"], body


@pytest.mark.postgres
async def test_a_job_released_at_a_worker_s_stop_says_so(tmp_path: Path) -> None:
    """A job still running when a worker's drain ends is released (its lease dropped) and recovered by another
    process, which failed it as "interrupted: worker lost" (the words of a worker that died) or requeued it "after
    an interruption". It now reads that it was released at its worker's stop: requeued to run again when its tool
    opted in to retries, else failed (it does not run again)."""
    from vibe_jobs.store.postgres import PostgresStore

    store = with_new_schema(postgres_url("a worker's released jobs"), "vj_released")
    env = {"VIBE_JOBS_LEASE_SECONDS": "2", "VIBE_JOBS_LOG_LEVEL": "info"}
    tools = ("--tools", "tests.e2e.cluster_tools", "--no-builtin")
    worker_cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", store, "--drain-seconds", "0.5", *tools]
    try:
        async with raw_stdio(store, tools="tests.e2e.cluster_tools", env=env, args=("--no-worker",)) as server:
            with tempfile.TemporaryFile() as errlog:
                full_env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **env}
                worker = await anyio.open_process(worker_cmd, env=full_env, cwd=ROOT, stderr=errlog)
                async with worker:
                    unsafe = await server.call("stepping", {"steps": 1000, "step_seconds": 0.5})
                    safe = await server.call("timed", {"seconds": 600})
                    ids = [answer["result"]["structuredContent"]["jobId"] for answer in (unsafe, safe)]
                    for job_id in ids:
                        await until_status(server, job_id, "running")
                    worker.send_signal(signal.SIGTERM)
                    with anyio.fail_after(15):
                        code = await worker.wait()
                log = stderr_text(errlog)
            failed = await until_status(server, ids[0], "failed")
            requeued = await until_status(server, ids[1], "pending")
            another = await anyio.open_process(worker_cmd, env=full_env, cwd=ROOT, stderr=subprocess.DEVNULL)
            async with another:  # the requeued job runs again there
                try:
                    again = await until_status(server, ids[1], "running", 15)
                finally:
                    another.send_signal(signal.SIGTERM)
                    with anyio.fail_after(15):
                        await another.wait()
    finally:
        await PostgresStore(store).drop_schema()
    assert code == 0 and '"worker.stopped"' in log, log[-2000:]
    stopped = "interrupted: released unfinished at its worker's stop; it does not run again (no retry left)"
    assert failed["message"] == f"Job failed: {stopped}", failed
    note = requeued["details"]["diagnostics"][-1]
    assert note == "released unfinished at its worker's stop: runs again (retry 1/3)", requeued
    assert again["status"] == "running", again


async def until_logged(errlog: Any, event: str, proc: Process, seconds: float = 10.0) -> None:
    """Until `proc` logged `event`, or has exited."""
    with anyio.fail_after(seconds):
        while event not in stderr_text(errlog) and proc.returncode is None:  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(0.05)


async def test_ctrl_c_three_times_ends_a_stop_that_a_job_holds() -> None:
    """A job that swallows its cancellation holds the stop for the grace period (5 s); the third Ctrl-C (the second
    while stopping) meanwhile must end the process. Raised as a KeyboardInterrupt, it met the job's `except
    BaseException` or the loop's wait for that job, and the process ran on."""
    with tempfile.TemporaryFile() as errlog:
        env = {"VIBE_JOBS_LOG_LEVEL": "info"}
        async with raw_stdio(tools="tests.e2e.hostile_work_tools", env=env, stderr=errlog) as server:
            started = await server.call("swallow", {})
            job_id = started["result"]["structuredContent"]["jobId"]
            await until_status(server, job_id, "running")
            for logged in ("stopping on signal 2", '"server.stop_hurried"'):
                server.proc.send_signal(signal.SIGINT)
                await until_logged(errlog, logged, server.proc)
            server.proc.send_signal(signal.SIGINT)
            code = await exit_code(server, 10)
    assert code == -signal.SIGINT, f"exit {code}"


async def test_a_job_that_swallows_its_cancellation_holds_a_stop_for_the_grace_only(tmp_path: Path) -> None:
    """A job that catches its cancellation and goes on held a one-signal stop for ever: no exit, no lease released,
    until a third signal killed the process. The stop now waits the executor's grace (5 s) for the job, names it in
    the log, and completes: exit 0, `server.stopped`, the job left running for recovery as every job the stop
    cancels (failed as interrupted at the next start)."""
    store, tools = f"sqlite:///{tmp_path / 'jobs.db'}", "tests.e2e.hostile_work_tools"
    with tempfile.TemporaryFile() as errlog:
        async with raw_stdio(store, tools=tools, env={"VIBE_JOBS_LOG_LEVEL": "info"}, stderr=errlog) as server:
            started = await server.call("swallow", {})
            job_id = started["result"]["structuredContent"]["jobId"]
            await until_status(server, job_id, "running")
            server.proc.send_signal(signal.SIGTERM)
            code = await exit_code(server, 20)
        log = stderr_text(errlog)
    assert code == 0, f"exit {code}"
    assert '"job.ignored_stop"' in log and job_id in log, log[-2000:]
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]
    async with raw_stdio(store, tools=tools) as again:
        body = await until_status(again, job_id, "failed")
    assert "interrupted" in body["message"], body


async def test_a_sync_job_s_thread_that_goes_on_holds_the_exit_for_the_grace_only() -> None:
    """A sync tool's thread cannot be stopped: at a stop its job was left to recovery and `server.stopped` logged at
    once, but the process did not exit until the thread returned (the interpreter waits for it): for ever, for a
    thread blocked for good. The process now waits the grace (5 s) for it, names its job, and exits 0."""
    with tempfile.TemporaryFile() as errlog:
        env = {"VIBE_JOBS_LOG_LEVEL": "info"}
        async with raw_stdio(tools="tests.e2e.hostile_work_tools", env=env, stderr=errlog) as server:
            started = await server.call("block_sync_long", {})
            job_id = started["result"]["structuredContent"]["jobId"]
            await until_status(server, job_id, "running")
            server.proc.send_signal(signal.SIGTERM)
            code = await exit_code(server, 15)  # the thread gives up after 60 s (`GATE_SECONDS`)
        log = stderr_text(errlog)
    assert code == 0, f"exit {code}"
    assert '"job.ignored_stop"' in log and job_id in log, log[-2000:]
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]


async def test_an_mcp_client_that_quits_during_a_long_poll_leaves_no_process_of_the_job(tmp_path: Path) -> None:
    """The SDK's stdio client (as Claude Desktop) quitting: stdin closed, 2 s, SIGTERM, 2 s, SIGKILL. With a
    long-poll in flight the server waits up to 2 s at EOF for its answer, so the SIGTERM came first, as a plain
    stop: the command got its 2 s grace and the SIGKILL came first. The server died mid-stop (no
    `server.stopped`) and the command's grandchild ran on, or it won that race by a hair: the server's exit took
    4 s either way. Closed stdin has begun the stop: the SIGTERM hurries it, and the server exits at once."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **command_env(tmp_path)}
    args = ["-m", "vibe_jobs", "serve", "--store", store]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    mark = tmp_path / "term"
    with tempfile.TemporaryFile("w+") as errlog:
        async with anyio.create_task_group() as tg:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=60) as client:
                started = await client.call_tool("run-command", {"command": ["sh", "-c", COMMAND, str(mark)]})
                job_id = (started.structured_content or {})["jobId"]
                marker = await run_marker(client, job_id)
                polling = anyio.Event()  # the server has the long-poll: it tells it the job's last line

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    polling.set()

                async def long_poll() -> None:
                    with contextlib.suppress(Exception):
                        args = {"jobId": job_id, "waitSeconds": 30}
                        await client.call_tool("get-job-result", args, progress_callback=on_progress)

                tg.start_soon(long_poll)
                with anyio.fail_after(10):
                    await polling.wait()
                quitting = time.monotonic()
            took = time.monotonic() - quitting  # the client waits for the server to exit (killing it at 4 s)
            tg.cancel_scope.cancel()
        left = ended(run_processes(marker))
        errlog.seek(0)
        log = errlog.read()
    assert left == [], f"processes of the job outlived the server: {left}"
    assert '"server.stopped"' in log and "Traceback" not in log, log[-2000:]
    assert took < 3.5, f"the server took {took:.1f} s to exit after its client closed stdin"


def test_a_stdio_server_stopped_by_eof_leaves_nothing_unclosed() -> None:
    """Run as a developer runs it (`PYTHONDEVMODE=1`: resource warnings shown), a stdio server that stops at EOF
    printed `ResourceWarning: Unclosed <MemoryObjectSendStream ...>` (the reader thread's answer stream was never
    closed) on its stderr: the first thing a user investigating a stop would see, and a leak per session."""
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}) + "\n"
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, "PYTHONDEVMODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://"],
        input=frame,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["id"] == 1
    assert "Warning" not in done.stderr and "Unclosed" not in done.stderr, done.stderr


async def test_a_stop_that_leaves_work_behind_still_runs_the_exit_handlers(tmp_path: Path) -> None:
    """A process whose stop leaves work behind (a job that ignores its cancellation past the grace) ends with
    `os._exit(0)`, lest the loop's end or the interpreter's wait for that work for ever: the exit handlers were
    skipped with it, so the spans an OpenTelemetry BatchSpanProcessor held were never exported and a program's own
    `atexit` handlers never ran. They run now, bounded, before the process ends."""
    spans, mark = tmp_path / "spans.json", tmp_path / "mark"
    cmd = [sys.executable, str(ROOT / "tests" / "e2e" / "exit_flush_app.py"), str(spans), str(mark)]
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, "VIBE_JOBS_LOG_LEVEL": "info"}
    with tempfile.TemporaryFile() as errlog:
        async with await anyio.open_process(cmd, env=env, cwd=ROOT, stderr=errlog) as proc:
            server = RawStdio(proc)
            await server.request("initialize", INIT)
            await server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            quick = (await server.call("quick", {}))["result"]["structuredContent"]["jobId"]
            await until_status(server, quick, "completed")
            swallow = (await server.call("swallow", {}))["result"]["structuredContent"]["jobId"]
            await until_status(server, swallow, "running")
            proc.send_signal(signal.SIGTERM)
            code = await exit_code(server, 15)
        log = stderr_text(errlog)
    assert code == 0, f"exit {code}: {log[-2000:]}"
    assert '"job.ignored_stop"' in log and swallow in log, log[-2000:]  # the stop left its work behind
    assert mark.read_text() == "exit handlers ran\n"
    exported = spans.read_text()
    assert '"name": "job quick attempt 1"' in exported and quick in exported, exported[-2000:]
