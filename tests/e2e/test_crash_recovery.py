"""Durable by default: `vibe-jobs serve` on a SQLite file survives `kill -9`.

Each test runs the real server as a subprocess on a temporary SQLite file, drives it with the real
MCP client, kills it with SIGKILL and starts it again on the same file. The job tools
(`tests/e2e/crash_tools.py`) log every execution, so the tests count how often each job ran.

The recovery rule: a job that was running when its server died is requeued when its tool is
`retry_safe` (and retries remain), else it fails with "interrupted: ...". A restarted server is a new
owner; it adopts the old one's jobs as soon as the old process is known to have ended (at once on the
same machine), else once the old lease expires (VIBE_JOBS_LEASE_SECONDS=1 here, unless a test says).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import BASE_ENV, ROOT, free_port, wait_for_port
from tests.e2e.crash_tools import EXEC_LOG_ENV, SAFE_RETRIES

pytestmark = pytest.mark.timeout(90)

FINAL = ("completed", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped while the job was running"
LEASE_SECONDS = "1"


# -- the server process ------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    errlog: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.errlog.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no lease release, no last writes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Setup:
    """A temporary SQLite file, an execution log, and the environment of every server on them."""

    db: Path
    exec_log: Path
    env: dict[str, str]

    @property
    def store(self) -> str:
        return f"sqlite:///{self.db}"  # the path is absolute: sqlite:////tmp/...


def make_setup(tmp_path: Path) -> Setup:
    db, exec_log = tmp_path / "jobs.db", tmp_path / "executions.log"
    env = {"VIBE_JOBS_LEASE_SECONDS": LEASE_SECONDS, "JOB_MANAGER_MAX_CONCURRENT": "2", EXEC_LOG_ENV: str(exec_log)}
    return Setup(db, exec_log, env)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


def spawn(setup: Setup, tools: str = "tests.e2e.crash_tools") -> Server:
    """Start `vibe-jobs serve --transport streamable-http` on the setup's SQLite file (not waited for)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "vibe_jobs", "serve", "--store", setup.store, "--no-builtin",
        "--tools", tools, "--transport", "streamable-http", "--port", str(port),
    ]  # fmt: skip
    errlog = setup.db.parent / f"server-{port}.stderr"
    with errlog.open("ab") as err:  # O_APPEND: the test reads it by name while the server writes
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **BASE_ENV, **setup.env}, stdout=subprocess.DEVNULL, stderr=err
        )
    return Server(proc, port, errlog)


@contextmanager
def serve_many(setup: Setup, count: int, tools: str = "tests.e2e.crash_tools") -> Iterator[list[Server]]:
    """`count` servers on one file, started together; each stopped (if still alive) at exit."""
    servers = [spawn(setup, tools) for _ in range(count)]
    try:
        for server in servers:
            try:
                wait_for_port(server.port, server.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n{server.stderr()[-4000:]}") from None
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextmanager
def serve(setup: Setup, tools: str = "tests.e2e.crash_tools") -> Iterator[Server]:
    with serve_many(setup, 1, tools) as (server,):
        yield server


@asynccontextmanager
async def client_of(server: Server) -> AsyncIterator[Client]:
    async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
        yield client


# -- MCP calls ---------------------------------------------------------------------------------


async def submit(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    body = result.structured_content
    assert not result.is_error and body is not None, result.content
    assert body["status"] == "pending", body
    return str(body["jobId"])


async def read(client: Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    """get-job-result's structuredContent (waitSeconds=`wait`); a missing job fails the test."""
    result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": wait})
    body = result.structured_content
    assert body is not None and body.get("jobId") == job_id, f"job {job_id} is gone: {result.content}"
    return dict(body)


async def wait_for(
    client: Client, job_id: str, statuses: tuple[str, ...] = FINAL, within: float = 30
) -> dict[str, Any]:
    """Long-poll until the job is in one of `statuses` (a final one by default), at most `within` s."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        body = await read(client, job_id, wait=max(0.1, min(left, 10.0)) if statuses == FINAL else 0)
        if body["status"] in statuses:
            return body
        if left <= 0:
            raise AssertionError(f"job {job_id} is still {body['status']} after {within} s: {body.get('message')}")
        if statuses != FINAL:  # no event to long-poll for a non-final status: poll, bounded
            await anyio.sleep(0.05)


async def list_ids(client: Client) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        args: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        body = (await client.call_tool("list-jobs", args)).structured_content
        assert body is not None
        ids |= {job["id"] for job in body["jobs"]}
        cursor = body.get("nextCursor")
        if not cursor:
            return ids


async def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll `check` until it holds, at most `within` s: only for what no MCP call can wait on."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await anyio.sleep(0.05)


async def work_started(exec_log: Path, *job_ids: str, within: float = 15) -> None:
    """Wait until each job's tool has run its first line. A job reads `running` from its claim, a moment before
    its tool is called: a process killed or stopped in between ran nothing of it, and a test that counts the
    executions (or their pids) would see one fewer on a loaded machine."""
    await wait_until(lambda: all(executions(exec_log)[j] for j in job_ids), within, "the jobs' tools started")


def error_text(body: dict[str, Any]) -> str:
    result = body.get("result") or {}
    return "\n".join(str(block.get("text", "")) for block in result.get("content", []))


# -- what the files say ------------------------------------------------------------------------


def executions(exec_log: Path) -> dict[str, list[tuple[int, int]]]:
    """jobId -> [(attempt, pid), ...] in the order the executions started."""
    runs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if exec_log.exists():
        for line in exec_log.read_text().splitlines():
            job_id, attempt, pid = line.split()
            runs[job_id].append((int(attempt), int(pid)))
    return runs


def running_without_live_owner(db: Path) -> list[str]:
    """Jobs stored as running whose owner holds no live lease (read straight from the file)."""
    now = int(time.time() * 1000)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id FROM jobs WHERE status = 'running' AND (owner IS NULL OR owner NOT IN"
            " (SELECT owner FROM leases WHERE expires_at > ?))",
            (now,),
        ).fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


# -- the tests ---------------------------------------------------------------------------------


async def test_kill_9_then_restart_keeps_every_job_and_applies_the_recovery_rule(setup: Setup) -> None:
    with serve(setup) as first:
        async with client_of(first) as client:
            done_ids = [await submit(client, "slow_safe", {"seconds": 0, "tag": f"done-{i}"}) for i in range(2)]
            done_ids.append(await submit(client, "slow_unsafe", {"seconds": 0, "tag": "done-unsafe"}))
            done = {job_id: await wait_for(client, job_id) for job_id in done_ids}
            assert all(body["status"] == "completed" for body in done.values()), done
            # MAX_CONCURRENT=2: these two take both slots ...
            safe = await submit(client, "slow_safe", {"seconds": 600, "retry_seconds": 0.2, "tag": "safe"})
            unsafe = await submit(client, "slow_unsafe", {"seconds": 600, "tag": "unsafe"})
            await work_started(setup.exec_log, safe, unsafe)
            # ... so these wait in the queue.
            queued = [await submit(client, "slow_safe", {"seconds": 0.1, "tag": "q-safe"})]
            queued.append(await submit(client, "slow_unsafe", {"seconds": 0.1, "tag": "q-unsafe"}))
            for job_id in queued:
                assert (await read(client, job_id))["status"] == "pending"
        first.kill()
    all_ids = {*done_ids, safe, unsafe, *queued}

    with serve(setup) as second:
        async with client_of(second) as client:
            assert await list_ids(client) == all_ids
            for job_id, before in done.items():
                after = await read(client, job_id)
                assert after["status"] == "completed"
                assert after["result"] == before["result"], "a completed result changed across the crash"
            outcome = {job_id: await wait_for(client, job_id) for job_id in (safe, unsafe, *queued)}
            assert running_without_live_owner(setup.db) == []

    assert outcome[unsafe]["status"] == "failed"
    assert INTERRUPTED in error_text(outcome[unsafe])
    assert outcome[safe]["status"] == "completed", outcome[safe]
    assert outcome[safe]["result"]["structuredContent"]["attempt"] == 2
    assert any("requeued after an interruption" in d for d in outcome[safe]["details"]["diagnostics"])
    for job_id in queued:
        assert outcome[job_id]["status"] == "completed", outcome[job_id]
    runs = executions(setup.exec_log)
    assert [a for a, _ in runs[safe]] == [1, 2]
    assert runs[safe][0][1] == first.pid and runs[safe][1][1] == second.pid
    assert runs[unsafe] == [(1, first.pid)], "a job whose tool is not retry_safe ran again"
    for job_id in queued:
        assert runs[job_id] == [(1, second.pid)]
    for job_id in done_ids:
        assert runs[job_id] == [(1, first.pid)]


async def test_a_restart_on_the_same_machine_recovers_at_once_not_after_the_lease(setup: Setup) -> None:
    """With the default 30 s lease, the restarted server knows the killed one has ended (same machine):
    within 2 s of the restart the interrupted job has failed and the queued jobs have run."""
    setup.env["VIBE_JOBS_LEASE_SECONDS"] = "30"
    with serve(setup) as first:
        async with client_of(first) as client:
            # MAX_CONCURRENT=2: these two take both slots ...
            unsafe = await submit(client, "slow_unsafe", {"seconds": 600, "tag": "unsafe"})
            safe = await submit(client, "slow_safe", {"seconds": 600, "retry_seconds": 0, "tag": "safe"})
            await work_started(setup.exec_log, unsafe, safe)
            # ... so these wait in the queue.
            queued = [await submit(client, tool, {"seconds": 0, "tag": "q"}) for tool in ("slow_safe", "slow_unsafe")]
            for job_id in queued:
                assert (await read(client, job_id))["status"] == "pending"
        first.kill()

    with serve(setup) as second:
        restarted = time.monotonic()  # it listens: it has opened the store and recovered
        async with client_of(second) as client:
            outcome = {}
            for job_id in (unsafe, safe, *queued):
                outcome[job_id] = await wait_for(client, job_id, within=restarted + 2 - time.monotonic())
        elapsed = time.monotonic() - restarted

    assert outcome[unsafe]["status"] == "failed" and INTERRUPTED in error_text(outcome[unsafe])
    assert outcome[safe]["status"] == "completed" and outcome[safe]["result"]["structuredContent"]["attempt"] == 2
    assert [outcome[job_id]["status"] for job_id in queued] == ["completed", "completed"]
    assert elapsed < 2
    runs = executions(setup.exec_log)
    assert runs[unsafe] == [(1, first.pid)] and [pid for _, pid in runs[safe]] == [first.pid, second.pid]
    assert [runs[job_id] for job_id in queued] == [[(1, second.pid)], [(1, second.pid)]]


async def test_a_recovered_job_too_big_for_the_restarted_servers_limits_fails_and_blocks_nobody(
    setup: Setup, tmp_path: Path
) -> None:
    """A job accepted under maxMemoryMB 8192 and recovered by a server with the default 2048: it fails with the
    refusal a new call gets, naming this server's limit, and the queue behind it runs (it held the head for
    ever: past the 5 s reservation window nothing started, and health said healthy)."""
    config = tmp_path / "big.json"
    config.write_text('{"resourceLimits": {"maxMemoryMB": 8192}}')
    setup.env["VIBE_JOBS_CONFIG"] = str(config)
    with serve(setup) as first:
        async with client_of(first) as client:
            for tag in ("a", "b"):  # MAX_CONCURRENT=2: these take both slots, so the big job waits
                await wait_for(client, await submit(client, "slow_unsafe", {"seconds": 600, "tag": tag}), ("running",))
            big_call = {"seconds": 0, "tag": "big"}
            big = await submit(
                client,
                "submit-job",
                {
                    "tool": "slow_safe",
                    "arguments": big_call,
                    "priority": "high",
                    "resourceRequirements": {"memoryMB": 4096},
                },
            )
        first.kill()
    del setup.env["VIBE_JOBS_CONFIG"]

    with serve(setup) as second:
        async with client_of(second) as client:
            failed = await wait_for(client, big, within=20)
            small = await wait_for(client, await submit(client, "slow_safe", {"seconds": 0, "tag": "small"}))
    assert failed["status"] == "failed"
    assert error_text(failed) == "ResourceLimitExceeded: the job needs memoryMB=4096 but the limit is 2048"
    assert small["status"] == "completed" and big not in executions(setup.exec_log)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("RUN_FAULTS") != "1",
    reason="the same as `make faults-ci`'s sqlite run (20 SIGKILLs under load, checked): RUN_FAULTS=1 runs it too",
)
async def test_twenty_kills_under_load_lose_nothing_and_run_nothing_too_often(setup: Setup) -> None:
    rng = random.Random(20240605)
    setup.env["JOB_MANAGER_MAX_CONCURRENT"] = "4"
    tools: dict[str, str] = {}
    for round_no in range(20):
        with serve(setup) as server:
            async with client_of(server) as client:
                for i in range(12):
                    tool = rng.choice(("slow_safe", "slow_unsafe"))
                    args: dict[str, Any] = {
                        "seconds": rng.choice((0, 0.05, 0.2, 0.5, 1.0, 2.0)),
                        "tag": f"{round_no}.{i}",
                    }
                    if tool == "slow_safe":
                        args["retry_seconds"] = rng.choice((0, 0.1, 0.5))
                    tools[await submit(client, tool, args)] = tool
            await anyio.sleep(rng.uniform(0.0, 1.5))  # the kill point: somewhere in the burst's work
            server.kill()

    with serve(setup) as last:
        async with client_of(last) as client:
            assert await list_ids(client) == set(tools), "a job id the server returned is gone"
            outcome = {job_id: await wait_for(client, job_id, within=60) for job_id in tools}
        assert running_without_live_owner(setup.db) == []

    runs = executions(setup.exec_log)
    assert set(runs) <= set(tools)
    for job_id, tool in tools.items():
        body, attempts = outcome[job_id], [a for a, _ in runs[job_id]]
        assert body["status"] in FINAL
        assert attempts == sorted(set(attempts)), f"{job_id} ran the same attempt twice: {attempts}"
        if tool == "slow_unsafe":
            assert len(attempts) <= 1, f"{job_id} is not retry_safe but ran {len(attempts)} times"
        else:
            assert len(attempts) <= 1 + SAFE_RETRIES, f"{job_id} ran {len(attempts)} times"
        if body["status"] == "failed":
            assert INTERRUPTED in error_text(body), body
        elif body["status"] == "completed":
            assert body["result"]["structuredContent"]["attempt"] == attempts[-1]
    # The kills landed mid-work: some unsafe jobs were interrupted, some safe ones ran again.
    assert any(tools[j] == "slow_unsafe" and b["status"] == "failed" for j, b in outcome.items())
    assert any(tools[j] == "slow_safe" and len(runs[j]) > 1 for j in tools)
