"""Figure 3: call to result for a job that does no work, sequentially, against FastMCP 4's background tasks.

vibe-jobs: the real server over stdio (`python -m vibe_jobs serve --store memory:// --tools
tests.e2e.sample_tools`), the official MCP client: call `noop` (answers a jobId), then get-job-result with
waitSeconds (long-poll) -> the result. Also the plain no-op tool on the same server.
FastMCP 4 (peers' venv, bench/peers/fastmcp_call.py): a `task=True` no-op tool on the in-memory Docket backend,
called with FastMCP's own client (which drives the task to its result), and a plain no-op tool.
Rounds interleave vibe-jobs and FastMCP; the ratio is p50 / p50 within each round.
Goal: vibe-jobs p50 <= half of FastMCP's.

Run: .venv/bin/python bench/call_to_result.py [--quick] [--json]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import anyio
import common
import peers
from common import Row, percentile, ratios, row
from mcp import Client
from roundtrip import server

WAIT_SECONDS = 10


async def call_to_result(client: Client) -> float:
    began = time.perf_counter()
    started = await client.call_tool("noop", {})
    job_id = started.structured_content["jobId"]
    result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": WAIT_SECONDS})
    took = (time.perf_counter() - began) * 1000
    status = result.structured_content["status"]
    if status != "completed":
        raise RuntimeError(f"job {job_id} is {status} after the long-poll")
    return took


async def plain(client: Client) -> float:
    began = time.perf_counter()
    await client.call_tool("plain-noop", {})
    return (time.perf_counter() - began) * 1000


def fastmcp_round(fastmcp: peers.PeerSeries, calls: int) -> None:
    fastmcp.run("fastmcp_call.py", "--calls", str(calls), "--warmup", "10")


async def measure(per_round: int, rounds: int) -> tuple[dict[str, list[list[float]]], peers.PeerSeries]:
    out: dict[str, list[list[float]]] = {"vibe": [], "vibe_plain": []}
    fastmcp = peers.PeerSeries()
    async with Client(server(), mode="auto") as client:
        for _ in range(10):  # warm-up
            await call_to_result(client)
            await plain(client)
        for _ in range(rounds):
            job: list[float] = []
            bare: list[float] = []
            for _ in range(per_round):
                job.append(await call_to_result(client))
                bare.append(await plain(client))
            out["vibe"].append(job)
            out["vibe_plain"].append(bare)
            await anyio.to_thread.run_sync(fastmcp_round, fastmcp, per_round)
    return out, fastmcp


def per_round(fastmcp: peers.PeerSeries, key: str, stat: Callable[[list[float]], float]) -> list[float | None]:
    """`stat` of each round's FastMCP figures (None for a round FastMCP did not finish)."""
    return [None if r is None else stat(r[key]) for r in fastmcp.rounds]


def flat_note(vibe: list[float], fastmcp: list[float], calls: int) -> str:
    note = (
        f"3: over all {calls} calls: vibe-jobs p50 {statistics.median(vibe):.2f} ms, p99 {percentile(vibe, 99):.2f} ms"
    )
    if fastmcp:
        note += f"; FastMCP task p50 {statistics.median(fastmcp):.2f} ms, p99 {percentile(fastmcp, 99):.2f} ms"
    return note


def bench_rows(quick: bool) -> list[Row]:
    peers.ensure()
    calls_per_round, rounds = (20, 2) if quick else (50, 4)
    data, fastmcp = anyio.run(measure, calls_per_round, rounds)
    p50 = {k: [statistics.median(r) for r in v] for k, v in data.items()}
    p99 = {k: [percentile(r, 99) for r in v] for k, v in data.items()}
    f50, f99 = per_round(fastmcp, "task_ms", statistics.median), per_round(fastmcp, "task_ms", p99_of)
    f50_plain = per_round(fastmcp, "plain_ms", statistics.median)
    half = ratios(p50["vibe"], f50)
    flat_fastmcp = [x for r in fastmcp.rounds if r for x in r["task_ms"]]
    note = "; ".join(
        filter(
            None,
            [
                flat_note([x for r in data["vibe"] for x in r], flat_fastmcp, calls_per_round * rounds),
                fastmcp.note("FastMCP"),
            ],
        )
    )
    status = fastmcp.status
    return [
        row("3", f"call -> result (long-poll), {calls_per_round * rounds} sequential, p50", "ms", p50["vibe"],
            peer_name="FastMCP 4 task", peer=f50, ratio=half, ratio_label="of FastMCP",
            goal="<= 0.5x FastMCP task p50", met=statistics.median(half) <= 0.5 if half else None,
            peer_status=status, note=note),
        row("3", "call -> result, p99 per round", "ms", p99["vibe"], peer_name="FastMCP 4 task", peer=f99,
            ratio=ratios(p99["vibe"], f99), ratio_label="of FastMCP", peer_status=status),
        row("3", "plain no-op tool on the same server, p50", "ms", p50["vibe_plain"], peer_name="FastMCP plain",
            peer=f50_plain, ratio=ratios(p50["vibe_plain"], f50_plain), ratio_label="of FastMCP",
            peer_status=status),
        row("3", "call -> result / plain tool (same server)", "x", ratios(p50["vibe"], p50["vibe_plain"]),
            peer_name="FastMCP task/plain", peer=[a / b for a, b in zip(f50, f50_plain, strict=True) if a and b],
            peer_status=status),
    ]  # fmt: skip


def p99_of(values: list[float]) -> float:
    return percentile(values, 99)


if __name__ == "__main__":
    common.cli(bench_rows)
