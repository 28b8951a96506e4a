"""The overhead of `vibe-jobs proxy`: the same upstream tool called directly, through the proxy as a direct tool,
and through the proxy as a job (call -> jobId, then get-job-result with waitSeconds -> the result).

Upstream: the reference server-everything (scripts/upstreams.sh installs it), its `echo` tool, over stdio; the
proxy over stdio on memory:// and on SQLite (the default kind of store), the official MCP client in legacy mode.
Each figure is the p50 (and p90) of CALLS sequential calls after WARMUP; the ratio is p50 / p50 of calling the
upstream directly.

Run: .venv/bin/python bench/proxy.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 20


def upstream() -> list[str]:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "upstreams.sh"), "everything"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scripts/upstreams.sh everything failed:\n{out.stderr}")
    return shlex.split(out.stdout.strip())


def proxy(store: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "vibe_jobs", "proxy", "--store", store, *options, "--", *upstream()]


async def measure(argv: list[str], call: Callable[[Client], Awaitable[None]], calls: int) -> list[float]:
    env = {**os.environ, "VIBE_JOBS_LOG_LEVEL": "warning"}
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=60) as client:
            await client.list_tools()
            for _ in range(WARMUP):
                await call(client)
            took = []
            for _ in range(calls):
                began = time.perf_counter()
                await call(client)
                took.append((time.perf_counter() - began) * 1000)
            return took


async def echo(client: Client) -> None:
    result = await client.call_tool("echo", {"message": "bench"})
    if result.is_error or "Echo: bench" not in str(result.content):
        raise RuntimeError(f"echo answered {result}")


async def echo_job(client: Client) -> None:
    started = await client.call_tool("echo", {"message": "bench"})
    job_id = _structured(started)["jobId"]
    done = _structured(await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 10}))
    if done["status"] != "completed":
        raise RuntimeError(f"job {job_id} is {done['status']}")


async def echo_job_id(client: Client) -> None:
    _structured(await client.call_tool("echo", {"message": "bench"}))["jobId"]


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"tool answered {result}")
    return dict(result.structured_content)


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/jobs.db"
        cases: list[tuple[str, list[str], Callable[[Client], Awaitable[None]]]] = [
            ("upstream directly: echo", upstream(), echo),
            ("proxy --direct echo (memory://)", proxy("memory://", "--direct", "echo"), echo),
            ("proxy job: call -> jobId (memory://)", proxy("memory://"), echo_job_id),
            ("proxy job: call -> result (memory://)", proxy("memory://"), echo_job),
            ("proxy --direct echo (sqlite)", proxy(sqlite, "--direct", "echo"), echo),
            ("proxy job: call -> jobId (sqlite)", proxy(sqlite), echo_job_id),
            ("proxy job: call -> result (sqlite)", proxy(sqlite), echo_job),
        ]
        base = None
        print(f"{'case':42} {'p50 ms':>8} {'p90 ms':>8} {'ratio':>7}   ({calls} calls after {WARMUP} warm-up)")
        for name, argv, call in cases:
            took = await measure(argv, call, calls)
            p50 = statistics.median(took)
            base = base or p50
            print(f"{name:42} {p50:8.2f} {p(took, 90):8.2f} {p50 / base:7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    anyio.run(main, parser.parse_args().calls)
