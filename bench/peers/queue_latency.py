# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Peer pick-up latency: saq on PostgreSQL, a worker (concurrency 50) idle, jobs enqueued one every 5 ms.

Runs in the peers' venv (bench/peers.py). The latency of a job is saq's own `started - queued`
(epoch milliseconds). Prints one JSON line: {"system", "jobs", "p50", "p99"}. The run works in a schema of its
own, named by its tag (bench/peers/peerlib.py), dropped at the end.

Run: .bench-venv/bin/python bench/peers/queue_latency.py --jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import peerlib
from queue_throughput import own_schema


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def main(n: int) -> None:
    peerlib.quiet_logging()
    peerlib.start_watchdog()
    async with own_schema(peerlib.TAG) as url:
        latencies = await measure(url, n)
    out = {"system": "saq-postgres", "jobs": n, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}
    print(json.dumps(out))


async def measure(url: str, n: int) -> list[float]:
    from saq import Queue, Worker

    queue = Queue.from_url(url, name=peerlib.TAG, saq_lock_keyspace=peerlib.lock_keyspace())
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
    await peerlib.maybe_hang("saq-latency")
    await peerlib.wait_done(done, "saq-postgres latency")
    await peerlib.finish(asyncio.ensure_future(worker.stop()), [*worker.tasks, task])
    await peerlib.cancel(task)
    await queue.disconnect()
    return latencies


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    asyncio.run(main(parser.parse_args().jobs))
