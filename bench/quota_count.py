"""What a quota costs a create beside many retained jobs: one principal, quotas on (`quota_pending` and
`quota_params_bytes`, far above what is created), its creates timed beside FEW and beside MANY of its own finished
jobs kept by the store, on the memory and SQLite stores. A count that reads every retained job grows with MANY;
one that reads the principal's active jobs (a memory store's `_Principals`, the SQL stores' `jobs_active_by`
index, schema step 14) does not.

2026-12-06 (helper-124): memory 10,000 / 100,000 retained: 623 / 5,187 us a create before, 108 / 48 us after;
SQLite 10,000: 3.71 ms before, 0.80 ms after (bench/MEASUREMENTS.md).

Run: .venv/bin/python bench/quota_count.py [--few N] [--many N] [--stores memory,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from vibe_jobs import JobManager, Settings
from vibe_jobs.identity import Viewer
from vibe_jobs.logs import configure_logging
from vibe_jobs.results import text_result
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

VIEWER = Viewer("alice")
DONE = text_result("ok")
QUOTAS = Settings(max_pending=1_000_000, quota_pending=1_000_000, quota_params_bytes=1_000_000_000)


async def retain(store: JobStore, count: int) -> None:
    """`count` finished jobs of the principal, stored without quotas (200 at a time: SQLite commits them together)."""
    manager = JobManager(store, Settings(max_pending=1_000_000))

    async def one(i: int) -> None:
        job_id = await manager.create_job("echo", {"i": i}, viewer=VIEWER)
        await manager.start_job(job_id)
        await manager.set_job_result(job_id, DONE)

    for start in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))


async def create_us(store: JobStore, creates: int = 50, rounds: int = 5) -> float:
    """Median microseconds of one create of the principal's with quotas on (counted at each)."""
    manager = JobManager(store, QUOTAS)
    times = []
    for r in range(rounds):
        started = time.perf_counter()
        for i in range(creates):
            await manager.create_job("echo", {"r": r, "i": i}, viewer=VIEWER)
        times.append((time.perf_counter() - started) / creates * 1e6)
    return statistics.median(times)


def open_store(kind: str, folder: Path, name: str) -> JobStore:
    return MemoryStore() if kind == "memory" else SQLiteStore(f"sqlite:///{folder / name}.db")


async def main(few: int, many: int, kinds: list[str]) -> None:
    configure_logging("warning")
    print(f"quota count: a create with quotas on beside {few:,} and {many:,} retained jobs of its principal")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            figures = []
            for count in (few, many):
                store = open_store(kind, Path(tmp), f"{kind}-{count}")
                await store.open()
                try:
                    await retain(store, count)
                    await create_us(store, 10, 1)  # warm-up
                    figures.append(await create_us(store))
                finally:
                    await store.close()
            ratio = figures[1] / figures[0]
            beside = f"{figures[0]:8,.0f} us beside {few:,}   {figures[1]:8,.0f} us beside {many:,}"
            print(f"  {kind:7} {beside}   {ratio:.2f}x")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--few", type=int, default=200, help="retained jobs of the first run (default 200)")
    cli.add_argument("--many", type=int, default=20_000, help="retained jobs of the second run (default 20,000)")
    cli.add_argument("--stores", default="memory,sqlite", help="comma-separated: memory, sqlite (default both)")
    args = cli.parse_args()
    asyncio.run(main(args.few, args.many, args.stores.split(",")))
