"""Store throughput: create -> running -> completed for N no-op jobs through the JobManager,
on the memory store and on the SQLite store (a temp file; every step committed before it returns).

Concurrent: W workers (default 200) each run create -> running -> completed in a loop, so the
SQLite store can group-commit; sequential: one job after another (N/4 jobs). Median of 3 runs
(each run's figure is printed too, with the load average before and after: on a 2-core machine,
anything else running shows up directly in these figures).
Goal: SQLite concurrent >= 10,000 jobs/s.
Run: .venv/bin/python bench/store.py [N] [W]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


async def one_job(manager: JobManager, i: int) -> None:
    job_id = await manager.create_job("noop", {"i": i})
    await manager.update_job_status(job_id, JobStatus.RUNNING)
    await manager.set_job_result(job_id, RESULT)


async def worker(manager: JobManager, ids: range) -> None:
    for i in ids:
        await one_job(manager, i)


async def run_once(store: JobStore, n: int, workers: int) -> float:
    """Jobs/s for n jobs spread over `workers` concurrent workers (1 = sequential)."""
    async with JobManager(store, Settings()) as manager:
        start = time.perf_counter()
        await asyncio.gather(*(worker(manager, range(w, n, workers)) for w in range(workers)))
        elapsed = time.perf_counter() - start
        counts = await store.counts()
    assert counts[JobStatus.COMPLETED] == n, counts
    return n / elapsed


async def rates_of(make: Callable[[Path], JobStore], n: int, workers: int, runs: int = 3) -> list[float]:
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
            rates.append(await run_once(make(Path(tmp)), n, workers))
    return rates


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def memory(_: Path) -> JobStore:
    return MemoryStore()


def sqlite(tmp: Path) -> JobStore:
    return SQLiteStore(f"sqlite:///{tmp / 'jobs.db'}")


async def main(n: int, workers: int) -> None:
    configure_logging("warning")
    await run_once(MemoryStore(), 1000, workers)  # warm-up
    print(f"store: {n:,} jobs create->running->completed through the JobManager, median of 3 runs")
    print(f"  load average (1/5/15 min) before: {load()} on {os.cpu_count()} cores")
    print(f"  {'':28}{'memory':>12}{'sqlite':>12}{'sqlite/memory':>16}")
    runs = []
    for label, jobs, w in ((f"concurrent ({workers} workers)", n, workers), ("sequential", n // 4, 1)):
        mems, sqls = await rates_of(memory, jobs, w), await rates_of(sqlite, jobs, w)
        mem, sql = statistics.median(mems), statistics.median(sqls)
        print(f"  {label:<28}{mem:>12,.0f}{sql:>12,.0f}{sql / mem:>16.2f}   jobs/s ({jobs:,} jobs)")
        runs.append(f"  {label}: sqlite runs {', '.join(f'{r:,.0f}' for r in sqls)}")
    print("\n".join(runs))
    print(f"  load average after: {load()}")
    print("  goal: sqlite concurrent >= 10,000 jobs/s (durable: committed before each call returns)")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("jobs", type=int, nargs="?", default=20_000, help="jobs per run (default 20,000)")
    cli.add_argument("workers", type=int, nargs="?", default=200, help="concurrent workers (default 200)")
    args = cli.parse_args()
    asyncio.run(main(args.jobs, args.workers))
