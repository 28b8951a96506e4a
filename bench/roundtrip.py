"""MCP round trip over stdio with the real client: a job tool's answer (jobId) and get-job-result,
against an ordinary no-op tool on the same server. Goal: job tool <= 1.3x the plain tool.

Run: .venv/bin/python bench/roundtrip.py [CALLS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
Call = Callable[[], Awaitable[object]]


def server(mode_env: dict[str, str]) -> StdioServerParameters:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_LEVEL": "warning", **mode_env}
    args = ["-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))


async def timed(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        await call()
        out.append((time.perf_counter() - began) * 1000)
    return out


async def measure(mode: str, n: int) -> dict[str, list[float]]:
    async with Client(server({}), mode=mode) as client:
        job_ids: list[str] = []

        async def job_call() -> None:
            result = await client.call_tool("noop", {})
            job_ids.append(result.structured_content["jobId"])  # type: ignore[index]

        async def plain_call() -> None:
            await client.call_tool("plain-noop", {})

        async def read_call() -> None:
            await client.call_tool("get-job-result", {"jobId": job_ids[len(job_ids) // 2]})

        await timed(plain_call, 50)  # warm-up
        await timed(job_call, 50)
        figures: dict[str, list[float]] = {"plain": [], "job": [], "get-job-result": []}
        for _ in range(5):  # interleave rounds so both see the same machine load
            figures["plain"] += await timed(plain_call, n // 5)
            figures["job"] += await timed(job_call, n // 5)
            figures["get-job-result"] += await timed(read_call, n // 5)
        return figures


def row(name: str, values: list[float], base: float) -> str:
    med = statistics.median(values)
    p99 = sorted(values)[int(len(values) * 0.99) - 1]
    return f"  {name:<16} p50 {med:6.2f} ms  p99 {p99:6.2f} ms  min {min(values):5.2f}  ratio {med / base:4.2f}x"


async def main(n: int) -> None:
    for mode in ("legacy", "auto"):
        figures = await measure(mode, n)
        base = statistics.median(figures["plain"])
        print(f"roundtrip over stdio, mode={mode}, {n} calls each (goal: job tool <= 1.3x plain)")
        for name, values in figures.items():
            print(row(name, values, base))


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 500)
