"""Figure 5: scale on the memory store, in-process.

- memory per retained finished job: tracemalloc growth while N (100,000) jobs go create -> running ->
  completed and stay retained, divided by N. Goal <= 2 KiB.
- get-job-result latency (JobManager.poll of a finished job, as the tool does) with 1,000 vs N retained jobs:
  rounds alternate between the two stores; ratio per round. Goal: ratio <= 1.2.
- list-jobs first page (50 jobs, newest first) at N jobs, against 1,000 jobs.

Run: .venv/bin/python bench/scale.py [--quick] [--json]
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import anyio
import common
from common import Row, ratios, row

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import MemoryStore

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


async def fill(manager: JobManager, n: int) -> list[str]:
    ids = []
    for i in range(n):
        job_id = await manager.create_job("noop", {"i": i})
        await manager.update_job_status(job_id, JobStatus.RUNNING)
        await manager.set_job_result(job_id, RESULT)
        ids.append(job_id)
    return ids


def settings(n: int) -> Settings:
    return Settings(max_pending=10 * n)


async def build(n: int, trace: bool) -> tuple[JobManager, list[str], float]:
    """A manager whose store retains n finished jobs; bytes per job when traced."""
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    manager = JobManager(MemoryStore(), settings(n))
    ids = await fill(manager, n)
    gc.collect()
    per_job = (tracemalloc.get_traced_memory()[0] - before) / n if trace else 0.0
    if trace:
        tracemalloc.stop()
    return manager, ids, per_job


async def timed_us(op: Callable[[], Awaitable[object]], calls: int) -> float:
    """Median µs of `calls` operations, measured in batches of 20."""
    batches = []
    for _ in range(max(1, calls // 20)):
        began = time.perf_counter()
        for _ in range(20):
            await op()
        batches.append((time.perf_counter() - began) / 20 * 1e6)
    return statistics.median(batches)


async def measure(n: int, rounds: int, calls: int) -> dict[str, list[float]]:
    big, big_ids, per_job = await build(n, trace=True)
    small, small_ids, _ = await build(1_000, trace=False)
    rng = random.Random(1)
    out: dict[str, list[float]] = {"bytes": [per_job], "get_small": [], "get_big": [], "list_small": [], "list_big": []}

    def poll(m: JobManager, ids: list[str]) -> Callable[[], Awaitable[object]]:
        return lambda: m.poll(rng.choice(ids))

    def page(m: JobManager) -> Callable[[], Awaitable[object]]:
        return lambda: m.list_jobs(limit=50)

    await timed_us(poll(small, small_ids), 200), await timed_us(poll(big, big_ids), 200)  # warm-up
    for _ in range(rounds):
        out["get_small"].append(await timed_us(poll(small, small_ids), calls))
        out["get_big"].append(await timed_us(poll(big, big_ids), calls))
        out["list_small"].append(await timed_us(page(small), calls // 10))
        out["list_big"].append(await timed_us(page(big), calls // 10))
    return out


def bench_rows(quick: bool) -> list[Row]:
    configure_logging("warning")
    n, rounds, calls = (20_000, 3, 400) if quick else (100_000, 7, 2_000)
    d = anyio.run(measure, n, rounds, calls)
    get_ratio = ratios(d["get_big"], d["get_small"])
    return [
        row("5", f"memory per retained finished job at {n:,}", "bytes", d["bytes"], goal="<= 2,048 bytes",
            met=d["bytes"][0] <= 2048),
        row("5", f"get-job-result (poll) at {n:,} retained", "µs", d["get_big"], peer_name="at 1,000 jobs",
            peer=d["get_small"], ratio=get_ratio, ratio_label=f"{n // 1000}k/1k", goal="ratio <= 1.2",
            met=statistics.median(get_ratio) <= 1.2),
        row("5", f"list-jobs first page (50) at {n:,} jobs", "µs", d["list_big"], peer_name="at 1,000 jobs",
            peer=d["list_small"], ratio=ratios(d["list_big"], d["list_small"]), ratio_label=f"{n // 1000}k/1k"),
    ]  # fmt: skip


if __name__ == "__main__":
    common.cli(bench_rows)
