"""Two `vibe-jobs serve --transport streamable-http` processes on one SQLite file.

Jobs created through either are visible through both; neither runs (or takes over) a job the other
is running while the other's lease is live; when one is killed with SIGKILL, the other adopts its
jobs once its lease expires (VIBE_JOBS_LEASE_SECONDS=1), by the recovery rule.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from mcp import Client

from tests.e2e.test_crash_recovery import (
    INTERRUPTED,
    Setup,
    client_of,
    error_text,
    executions,
    list_ids,
    make_setup,
    read,
    running_without_live_owner,
    serve,
    serve_many,
    submit,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


OBSERVE_SECONDS = 3.0  # three lease periods: nine heartbeats (and recovery passes) of the other server


async def test_jobs_created_through_either_server_are_visible_through_both(setup: Setup) -> None:
    with serve_many(setup, 2) as (a, b):
        async with client_of(a) as ca, client_of(b) as cb:
            from_a = await submit(ca, "slow_unsafe", {"seconds": 0.1, "tag": "from-a"})
            from_b = await submit(cb, "slow_safe", {"seconds": 0.1, "tag": "from-b"})
            seen_on_b = await wait_for(cb, from_a)
            seen_on_a = await wait_for(ca, from_b)
            assert seen_on_b["status"] == seen_on_a["status"] == "completed"
            assert (await read(ca, from_a))["result"] == seen_on_b["result"]
            assert (await read(cb, from_b))["result"] == seen_on_a["result"]
            long_b = await submit(cb, "slow_unsafe", {"seconds": 600, "tag": "long-b"})
            await wait_for(ca, long_b, ("running",), within=10)
            assert await list_ids(ca) == await list_ids(cb) == {from_a, from_b, long_b}
            # A cancel through A reaches the work running on B.
            cancelled = (await ca.call_tool("cancel-job", {"jobId": long_b})).structured_content
            assert cancelled is not None and cancelled["status"] == "cancelled", cancelled
            assert (await read(cb, long_b))["status"] == "cancelled"
    runs = executions(setup.exec_log)
    assert runs[from_a] == [(1, a.pid)] and runs[from_b] == [(1, b.pid)], (
        "a job ran on the server it was not created on"
    )
    assert runs[long_b] == [(1, b.pid)]


async def test_a_live_server_keeps_its_jobs_and_a_killed_one_is_recovered_by_the_other(setup: Setup) -> None:
    with serve_many(setup, 2) as (a, b):
        async with client_of(a) as ca, client_of(b) as cb:
            # A's two slots (MAX_CONCURRENT=2) run long jobs; a third waits in A's queue.
            a_safe = await submit(ca, "slow_safe", {"seconds": 600, "retry_seconds": 0.2, "tag": "a-safe"})
            a_unsafe = await submit(ca, "slow_unsafe", {"seconds": 600, "tag": "a-unsafe"})
            for job_id in (a_safe, a_unsafe):
                await wait_for(ca, job_id, ("running",), within=10)
            a_queued = await submit(ca, "slow_unsafe", {"seconds": 0.1, "tag": "a-queued"})
            b_long = await submit(cb, "slow_unsafe", {"seconds": 600, "tag": "b-long"})
            await wait_for(cb, b_long, ("running",), within=10)

            # Watch through B for several lease periods: A's jobs stay where they are, and so does B's.
            watched = await read(cb, a_unsafe, wait=OBSERVE_SECONDS)
            assert watched["status"] == "running"
            assert (await read(cb, a_safe))["status"] == "running"
            assert (await read(cb, a_queued))["status"] == "pending"
            assert (await read(ca, b_long))["status"] == "running"
            runs = executions(setup.exec_log)
            assert runs[a_safe] == [(1, a.pid)] and runs[a_unsafe] == [(1, a.pid)]
            assert a_queued not in runs, "B ran a job queued on the live server A"
            assert runs[b_long] == [(1, b.pid)]
        a.kill()

        async with client_of(b) as cb:
            unsafe_end = await wait_for(cb, a_unsafe)
            safe_end = await wait_for(cb, a_safe)
            queued_end = await wait_for(cb, a_queued)
            assert (await read(cb, b_long))["status"] == "running", "B's own job was disturbed by the recovery"
            assert running_without_live_owner(setup.db) == []
            cancelled = (await cb.call_tool("cancel-job", {"jobId": b_long})).structured_content
            assert cancelled is not None and cancelled["status"] == "cancelled"

    assert unsafe_end["status"] == "failed" and INTERRUPTED in error_text(unsafe_end)
    assert safe_end["status"] == "completed" and safe_end["result"]["structuredContent"]["attempt"] == 2
    assert queued_end["status"] == "completed"
    runs = executions(setup.exec_log)
    assert runs[a_unsafe] == [(1, a.pid)], "a job whose tool is not retry_safe ran again"
    assert runs[a_safe] == [(1, a.pid), (2, b.pid)]
    assert runs[a_queued] == [(1, b.pid)]
    assert runs[b_long] == [(1, b.pid)]


async def test_a_paused_server_resumed_after_losing_its_lease_does_not_run_adopted_jobs(setup: Setup) -> None:
    """SIGSTOP past the lease: to B, A is dead, and B adopts its jobs. After SIGCONT, A's memory still
    holds them: A must not start the queued job B now runs, and must stop (and not report) the work
    it was running, whose jobs are B's now."""
    with serve_many(setup, 2) as (a, b):
        async with client_of(a) as ca:
            a_safe = await submit(ca, "slow_safe", {"seconds": 600, "retry_seconds": 0.2, "tag": "a-safe"})
            a_unsafe = await submit(ca, "slow_unsafe", {"seconds": 600, "tag": "a-unsafe"})
            for job_id in (a_safe, a_unsafe):
                await wait_for(ca, job_id, ("running",), within=10)
            a_queued = await submit(ca, "slow_unsafe", {"seconds": 3, "tag": "a-queued"})
        a.proc.send_signal(signal.SIGSTOP)
        try:
            async with client_of(b) as cb:
                unsafe_end = await wait_for(cb, a_unsafe)
                safe_end = await wait_for(cb, a_safe)
                await wait_for(cb, a_queued, ("running",), within=10)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        async with client_of(a) as ca, client_of(b) as cb:
            # A, resumed, stops the two runs it lost; that frees its slots for its stale queue entry.
            await wait_until(lambda: a.stderr().count("job.taken_over") >= 2, within=10, what="A drops its lost runs")
            queued_end = await wait_for(ca, a_queued)
            for job_id, end in ((a_unsafe, unsafe_end), (a_safe, safe_end)):
                for client in (ca, cb):
                    assert (await read(client, job_id))["result"] == end["result"], "a late result overwrote B's"

    assert unsafe_end["status"] == "failed" and INTERRUPTED in error_text(unsafe_end)
    assert safe_end["status"] == "completed" and safe_end["result"]["structuredContent"]["attempt"] == 2
    assert queued_end["status"] == "completed"
    runs = executions(setup.exec_log)
    assert runs[a_unsafe] == [(1, a.pid)]
    assert runs[a_safe] == [(1, a.pid), (2, b.pid)]
    assert runs[a_queued] == [(1, b.pid)], "the resumed server ran a job the other had adopted"


async def test_a_job_waiting_on_a_dependency_run_by_the_other_server_runs_once_it_completes(setup: Setup) -> None:
    """Each server heard only of its own jobs' ends: a job on B waiting on a job run by A stayed pending
    for ever (and so did one waiting on a job cancelled through A)."""
    with serve_many(setup, 2) as (a, b):
        async with client_of(a) as ca, client_of(b) as cb:
            first = await submit(ca, "slow_unsafe", {"seconds": 0.3, "tag": "first"})
            doomed = await submit(ca, "slow_unsafe", {"seconds": 600, "tag": "doomed"})
            after = await dependent(cb, first, "after")
            blocked = await dependent(cb, doomed, "blocked")
            await wait_for(ca, doomed, ("running",), within=10)
            await ca.call_tool("cancel-job", {"jobId": doomed})
            assert (await wait_for(cb, after, within=10))["status"] == "completed"
            failed = await wait_for(cb, blocked, within=10)
    assert failed["status"] == "failed" and doomed in error_text(failed), failed
    assert executions(setup.exec_log)[after] == [(1, b.pid)]


async def dependent(client: Client, dependency: str, tag: str) -> str:
    args = {"tool": "slow_unsafe", "arguments": {"seconds": 0.1, "tag": tag}, "dependsOn": [dependency]}
    result = await client.call_tool("submit-job", args)
    assert not result.is_error and result.structured_content is not None, result.content
    return str(result.structured_content["jobId"])


async def health_reasons_within(port: int, wanted: str, within: float = 20) -> list[str]:
    """/health's reasons once one of them contains `wanted` (the next recovery pass), at most `within` s."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            reasons: list[str] = (await http.get(f"http://127.0.0.1:{port}/health")).json()["reasons"]
            if any(wanted in reason for reason in reasons) or time.monotonic() > deadline:
                return reasons
            await anyio.sleep(0.05)  # no MCP call waits on a recovery pass: poll, bounded


async def test_a_program_without_a_tool_leaves_a_stopped_programs_jobs_for_the_program_that_has_it(
    setup: Setup,
) -> None:
    """Every program of a user shares the default SQLite file. One that lacked a tool failed the jobs of a stopped
    program that had it ("the tool ... is not registered on this server"): the second program cost the first its
    jobs. It leaves them, says so in its health, and can still cancel one; the first runs the rest when it is back.
    (Another program: VIBE_JOBS_PROGRAM, a library server's name. The same program back without a tool fails its
    jobs naming the tool: the next test.)"""
    with serve(setup) as first:
        async with client_of(first) as client:
            safe = await submit(client, "slow_safe", {"seconds": 600, "retry_seconds": 0.2, "tag": "safe"})
            doomed = await submit(client, "slow_unsafe", {"seconds": 600, "tag": "doomed"})
            for job_id in (safe, doomed):
                await wait_for(client, job_id, ("running",), within=10)
            queued = await submit(client, "slow_unsafe", {"seconds": 0.1, "tag": "queued"})  # both slots are busy
        first.kill()

    setup.env["VIBE_JOBS_PROGRAM"] = "another-program"
    with serve(setup, "tests.e2e.sample_tools") as other:
        reasons = await health_reasons_within(other.port, "jobs wait for a server that has their tool")
        # one reason however many tools (degraded, not unhealthy: this server itself is fine)
        left = "jobs wait for a server that has their tool (their own server stopped): "
        assert reasons == [f"{left}1 of tool 'slow_safe', 2 of tool 'slow_unsafe'"], reasons
        async with client_of(other) as client:
            statuses = [(await read(client, job_id))["status"] for job_id in (safe, doomed, queued)]
            assert statuses == ["running", "running", "pending"]
            said = (await client.call_tool("get-job-result", {"jobId": queued})).content[0].text  # type: ignore[union-attr]
            assert "This server has no tool 'slow_unsafe'" in said, said
            # a pending job is cancelled at once, by any server; a running one waits for its tool (its leftovers)
            cancelled = (
                await client.call_tool("cancel-job", {"jobId": queued, "reason": "not needed"})
            ).structured_content
            assert cancelled is not None and cancelled["status"] == "cancelled", cancelled

    del setup.env["VIBE_JOBS_PROGRAM"]
    with serve(setup) as back:
        async with client_of(back) as client:
            safe_end, doomed_end = await wait_for(client, safe), await wait_for(client, doomed)
    assert safe_end["status"] == "completed" and safe_end["result"]["structuredContent"]["attempt"] == 2
    assert doomed_end["status"] == "failed" and INTERRUPTED in error_text(doomed_end)  # not retry_safe: run once
    runs = executions(setup.exec_log)
    assert runs[safe] == [(1, first.pid), (2, back.pid)] and runs[doomed] == [(1, first.pid)]
    assert queued not in runs


async def test_the_same_program_back_without_a_tool_fails_its_jobs_naming_the_tool(setup: Setup) -> None:
    """Issue 5: "Jobs whose tool is no longer registered end failed with a message naming the tool". A server
    killed with a job running and one queued, started again without that tool: both end failed at once, naming
    it; nothing waits for a server that will not come."""
    with serve(setup) as first:
        async with client_of(first) as client:
            running = await submit(client, "slow_unsafe", {"seconds": 600, "tag": "running"})
            await wait_for(client, running, ("running",), within=10)
            blocker = await submit(client, "slow_safe", {"seconds": 600, "retry_seconds": 0.2, "tag": "blocker"})
            await wait_for(client, blocker, ("running",), within=10)
            queued = await submit(client, "slow_unsafe", {"seconds": 0.1, "tag": "queued"})  # both slots are busy
        first.kill()

    with serve(setup, "tests.e2e.sample_tools") as back:  # the same program (vibe-jobs), other tools
        async with client_of(back) as client:
            ends = [await wait_for(client, job_id, within=10) for job_id in (running, queued, blocker)]
    assert [end["status"] for end in ends] == ["failed"] * 3, ends
    for end, tool in zip(ends, ("slow_unsafe", "slow_unsafe", "slow_safe"), strict=True):
        assert f"the tool '{tool}' is no longer registered on this server" in error_text(end), end
    assert queued not in executions(setup.exec_log)


async def test_a_pending_quota_holds_across_the_servers_on_one_file(setup: Setup) -> None:
    """VIBE_JOBS_QUOTA_PENDING was counted within each server: calls at once through two servers on one SQLite file
    each passed their own count (before, 6 runs of 6 let a fourth in within these rounds, 2 of 5 in the first). The
    count and the insert are one step across the servers now (a lock per principal on a file beside the database,
    `store/sqlite/principals.py`). Deferred jobs (runAt) stay pending; each round's are cancelled before the next."""
    setup.env["VIBE_JOBS_QUOTA_PENDING"] = "3"
    with serve_many(setup, 2) as (a, b):
        async with client_of(a) as ca, client_of(b) as cb:

            async def call(client: Client, i: int, answers: dict[str, str]) -> None:
                args = {"tool": "slow_unsafe", "arguments": {"seconds": 0, "tag": f"{i}"}, "runAt": 4 * 10**12}
                result = await client.call_tool("submit-job", args)
                body = result.structured_content or {}
                answers[f"call {i}"] = body["error"]["code"] if result.is_error else body["jobId"]

            for _ in range(ROUNDS):
                answers: dict[str, str] = {}
                async with anyio.create_task_group() as tg:
                    for i in range(24):
                        tg.start_soon(call, (ca, cb)[i % 2], i, answers)
                admitted = [answer for answer in answers.values() if answer != "quota_exceeded"]
                assert (len(admitted), len(answers), pending_jobs(setup.db)) == (3, 24, 3), answers
                for job_id in admitted:
                    assert not (await ca.call_tool("cancel-job", {"jobId": job_id})).is_error


ROUNDS = 8


def pending_jobs(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE status = 'pending'").fetchone()[0])
    finally:
        conn.close()
