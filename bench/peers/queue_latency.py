# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Peer pick-up latency: saq on PostgreSQL, a worker (concurrency 50) idle, jobs enqueued one every 5 ms.

Runs in the peers' venv (bench/peers.py). The latency of a job is saq's own `started - queued`
(epoch milliseconds). Prints one JSON line: {"system", "jobs", "p50", "p99"}.

Run: .bench-venv/bin/python bench/peers/queue_latency.py --jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid
from typing import Any

from queue_throughput import reset_bench_db


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def main(n: int) -> None:
    from saq import Queue, Worker

    logging.disable(logging.CRITICAL)
    queue = Queue.from_url(await reset_bench_db(), name=f"vibe-lat-{uuid.uuid4().hex[:8]}")
    await queue.connect()
    latencies: list[float] = []
    done = asyncio.Event()

    async def noop(ctx: Any) -> None:
        return None

    async def after(ctx: Any) -> None:
        job = ctx["job"]
        latencies.append(float(job.started - job.queued))
        if len(latencies) >= n:
            done.set()

    worker = Worker(queue, functions=[("noop", noop)], concurrency=50, after_process=after)
    worker.SIGNALS = []
    task = asyncio.create_task(worker.start())
    await asyncio.sleep(1.0)  # let the worker start listening
    for _ in range(n):
        await queue.enqueue("noop", timeout=60)
        await asyncio.sleep(0.005)
    await asyncio.wait_for(done.wait(), 120)
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()
    print(
        json.dumps(
            {"system": "saq-postgres", "jobs": n, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    asyncio.run(main(parser.parse_args().jobs))
