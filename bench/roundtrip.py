"""Figure 2: MCP round trip over stdio with the real client: a job tool's answer (jobId) and get-job-result,
against an ordinary no-op tool on the same server. Goal: job tool <= 1.3x the plain tool.

Calls are made in interleaved rounds (plain, job, get-job-result) so all three see the same machine load;
the ratio is taken round by round (p50 of the job calls / p50 of the plain calls in that round).

Run: .venv/bin/python bench/roundtrip.py [--quick] [--json]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import common
from common import Row, percentile, ratios, row
from mcp import Client, StdioServerParameters

Call = Callable[[], Awaitable[object]]
KINDS = ("plain", "job", "get-job-result")


def server(mode_env: dict[str, str] | None = None) -> StdioServerParameters:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(common.ROOT),
        "VIBE_JOBS_LOG_LEVEL": "warning",
        **(mode_env or {}),
    }
    args = ["-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(common.ROOT))


async def timed(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        await call()
        out.append((time.perf_counter() - began) * 1000)
    return out


async def measure(mode: str, per_round: int, rounds: int) -> dict[str, list[list[float]]]:
    """Milliseconds per call, one list per round, for each kind of call."""
    async with Client(server(), mode=mode) as client:
        job_ids: list[str] = []

        async def job_call() -> None:
            result = await client.call_tool("noop", {})
            job_ids.append(result.structured_content["jobId"])

        async def plain_call() -> None:
            await client.call_tool("plain-noop", {})

        async def read_call() -> None:
            await client.call_tool("get-job-result", {"jobId": job_ids[len(job_ids) // 2]})

        calls = {"plain": plain_call, "job": job_call, "get-job-result": read_call}
        for call in calls.values():  # warm-up
            await timed(call, 30)
        figures: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
        for _ in range(rounds):
            for kind, call in calls.items():
                figures[kind].append(await timed(call, per_round))
        return figures


def rows_for(mode: str, figures: dict[str, list[list[float]]]) -> list[Row]:
    p50 = {kind: [statistics.median(r) for r in rounds] for kind, rounds in figures.items()}
    plain = p50["plain"]
    job_ratio = ratios(p50["job"], plain)
    calls_per_s = [1000 / v for v in plain]
    out = [
        row("2", f"stdio {mode}: job tool answer (jobId) p50", "ms", p50["job"], peer_name="plain tool",
            peer=plain, ratio=job_ratio, ratio_label="of plain", goal="<= 1.3x plain tool",
            met=statistics.median(job_ratio) <= 1.3),
        row("2", f"stdio {mode}: get-job-result p50", "ms", p50["get-job-result"], peer_name="plain tool",
            peer=plain, ratio=ratios(p50["get-job-result"], plain), ratio_label="of plain",
            goal="<= 1.3x plain tool", met=statistics.median(ratios(p50["get-job-result"], plain)) <= 1.3),
    ]  # fmt: skip
    all_job = [v for r in figures["job"] for v in r]
    all_plain = [v for r in figures["plain"] for v in r]
    out[0]["note"] = (
        f"2 ({mode}): p99 job {percentile(all_job, 99):.2f} ms, plain {percentile(all_plain, 99):.2f} ms; "
        f"plain tool {statistics.median(calls_per_s):,.0f} sequential calls/s"
    )
    return out


def bench_rows(quick: bool) -> list[Row]:
    modes, per_round, rounds = (["auto"], 60, 3) if quick else (["legacy", "auto"], 100, 5)
    out: list[Row] = []
    for mode in modes:
        out += rows_for(mode, anyio.run(measure, mode, per_round, rounds))
    return out


if __name__ == "__main__":
    common.cli(bench_rows)
