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
from typing import Any

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


def fastmcp_round(calls: int) -> dict[str, Any]:
    return peers.run_peer("fastmcp_call.py", "--calls", str(calls), "--warmup", "10", timeout=300)


async def measure(per_round: int, rounds: int) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {"vibe": [], "vibe_plain": [], "fastmcp": [], "fastmcp_plain": []}
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
            peer = await anyio.to_thread.run_sync(fastmcp_round, per_round)
            out["fastmcp"].append(peer["task_ms"])
            out["fastmcp_plain"].append(peer["plain_ms"])
    return out


def bench_rows(quick: bool) -> list[Row]:
    peers.ensure()
    per_round, rounds = (20, 2) if quick else (50, 4)
    data = anyio.run(measure, per_round, rounds)
    p50 = {k: [statistics.median(r) for r in v] for k, v in data.items()}
    p99 = {k: [percentile(r, 99) for r in v] for k, v in data.items()}
    flat = {k: [x for r in v for x in r] for k, v in data.items()}
    half = ratios(p50["vibe"], p50["fastmcp"])
    calls = per_round * rounds
    return [
        row("3", f"call -> result (long-poll), {calls} sequential, p50", "ms", p50["vibe"],
            peer_name="FastMCP 4 task", peer=p50["fastmcp"], ratio=half, ratio_label="of FastMCP",
            goal="<= 0.5x FastMCP task p50", met=statistics.median(half) <= 0.5,
            note=f"3: over all {calls} calls: vibe-jobs p50 {statistics.median(flat['vibe']):.2f} ms, "
                 f"p99 {percentile(flat['vibe'], 99):.2f} ms; FastMCP task p50 "
                 f"{statistics.median(flat['fastmcp']):.2f} ms, p99 {percentile(flat['fastmcp'], 99):.2f} ms"),
        row("3", "call -> result, p99 per round", "ms", p99["vibe"], peer_name="FastMCP 4 task", peer=p99["fastmcp"],
            ratio=ratios(p99["vibe"], p99["fastmcp"]), ratio_label="of FastMCP"),
        row("3", "plain no-op tool on the same server, p50", "ms", p50["vibe_plain"], peer_name="FastMCP plain",
            peer=p50["fastmcp_plain"], ratio=ratios(p50["vibe_plain"], p50["fastmcp_plain"]),
            ratio_label="of FastMCP"),
        row("3", "call -> result / plain tool (same server)", "x", ratios(p50["vibe"], p50["vibe_plain"]),
            peer_name="FastMCP task/plain", peer=ratios(p50["fastmcp"], p50["fastmcp_plain"])),
    ]  # fmt: skip


if __name__ == "__main__":
    common.cli(bench_rows)
