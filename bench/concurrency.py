"""Figure 4: concurrency over MCP on streamable HTTP: job tool calls from 4 clients, 50 in flight each.

Starts `vibe-jobs serve --transport streamable-http --store memory:// --tools tests.e2e.sample_tools` on a
free port (default settings otherwise). Each round: 1,000 calls of the `noop` job tool (250 per client),
then 1,000 calls of the plain no-op tool on the same server as the baseline. Figures: answers/s and p99
answer time, and jobs/s from the first call until job-stats counts every job completed.

Run: .venv/bin/python bench/concurrency.py [--quick] [--json]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import anyio
import common
from common import Row, percentile, ratios, row
from mcp import Client

from vibe_jobs.testing.ports import free_port, stop, wait_for_port

CLIENTS, IN_FLIGHT = 4, 50


@contextmanager
def http_server() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "VIBE_JOBS_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools",
           "--transport", "streamable-http", "--port", str(port)]  # fmt: skip
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            wait_for_port(port, proc, seconds=60)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            stop(proc)


async def one_client(client: Client, tool: str, calls: int, out: list[float]) -> None:
    limit = anyio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with limit:
            began = time.perf_counter()
            result = await client.call_tool(tool, {})
            out.append((time.perf_counter() - began) * 1000)
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content}")

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one)


# keep_warm: an HTTP connection that sits idle for just under uvicorn's keep-alive time-out (5 s) is closed by the
# server as the client sends its next request on it, and the client fails with httpx2.ReadError (seen in
# `make bench` on a loaded machine, where waiting for 1,000 jobs to complete took 10-20 s while three of the four
# clients sat idle; reproduced with an idle gap of 4.90-4.95 s between bursts, not with 3 s or 5.05 s).
async def completed(client: Client) -> int:
    stats = await client.call_tool("job-stats", {})
    return int(stats.structured_content["counts"].get("completed", 0))


async def burst(clients: list[Client], tool: str, total: int, expect_done: int | None) -> dict[str, float]:
    """`total` calls spread over the clients; for job calls also wait until `expect_done` jobs completed."""
    latencies: list[float] = []
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in clients:
            tg.start_soon(one_client, c, tool, total // len(clients), latencies)
    answered = time.perf_counter()
    done = answered
    if expect_done is not None:
        with anyio.fail_after(120):
            polls = 0  # round the clients: none may sit idle for uvicorn's 5 s keep-alive (see keep_warm)
            while await completed(clients[polls % len(clients)]) < expect_done:
                polls += 1
                await anyio.sleep(0.01)
        done = time.perf_counter()
    return {
        "answers_per_s": total / (answered - began),
        "p99_ms": percentile(latencies, 99),
        "p50_ms": statistics.median(latencies),
        "jobs_per_s": total / (done - began),
    }


async def measure(total: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {"job": [], "plain": []}
    with http_server() as url:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(url, mode="auto")) for _ in range(CLIENTS)]
            await burst(clients, "plain-noop", 200, None)  # warm-up
            await burst(clients, "noop", 200, 200)
            done = 200
            for _ in range(rounds):
                done += total
                out["job"].append(await burst(clients, "noop", total, done))
                out["plain"].append(await burst(clients, "plain-noop", total, None))
    return out


def bench_rows(quick: bool) -> list[Row]:
    total, rounds = (400, 1) if quick else (1_000, 3)
    data = anyio.run(measure, total, rounds)

    def pick(kind: str, key: str) -> list[float]:
        return [r[key] for r in data[kind]]

    return [
        row("4", f"HTTP {CLIENTS}x{IN_FLIGHT} in flight: {total:,} job calls, answers/s", "calls/s",
            pick("job", "answers_per_s"), peer_name="plain tool", peer=pick("plain", "answers_per_s"),
            ratio=ratios(pick("job", "answers_per_s"), pick("plain", "answers_per_s")), ratio_label="of plain"),
        row("4", "HTTP: p99 answer time", "ms", pick("job", "p99_ms"), peer_name="plain tool",
            peer=pick("plain", "p99_ms"), ratio=ratios(pick("job", "p99_ms"), pick("plain", "p99_ms")),
            ratio_label="of plain"),
        row("4", "HTTP: jobs/s, first call -> all completed", "jobs/s", pick("job", "jobs_per_s"),
            note=f"4: p50 answer time job {statistics.median(pick('job', 'p50_ms')):.1f} ms, plain "
                 f"{statistics.median(pick('plain', 'p50_ms')):.1f} ms; server defaults (max_concurrent 5)"),
    ]  # fmt: skip


if __name__ == "__main__":
    common.cli(bench_rows)
