"""The retention's sweep of N expired jobs: its wall time and the longest the event loop went unserved meanwhile
(a task that sleeps 1 ms at a time measures the gaps), at N and 10N.

Every job goes create -> running -> completed on a fake clock, which then moves past the retention; the figure
is `JobManager.cleanup()`. Before the sweep yielded between batches and the memory store stopped rebuilding its
paging order at each batch, 100,000 expired jobs held the loop for 250-450 ms and 1,000,000 for 24-37 s.

Run: .venv/bin/python bench/retention.py [--store memory|sqlite] [N]   (default memory 100000: N and 10N)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def sweep(store: JobStore, n: int) -> tuple[float, float]:
    """(wall ms of the sweep, longest gap of the event loop in ms)."""
    clock = Clock()
    manager = JobManager(store, Settings(max_pending=n + 1, max_retention_ms=1000), clock=clock, ticks=clock)
    await store.open()
    try:
        for i in range(n):
            job_id = await manager.create_job("noop", {"i": i})
            await manager.update_job_status(job_id, JobStatus.RUNNING)
            await manager.set_job_result(job_id, RESULT)
        clock.now += 10
        gaps: list[float] = []
        done = False

        async def watch() -> None:
            last = time.perf_counter()
            while not done:
                await anyio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.01)
            started = time.perf_counter()
            assert await manager.cleanup() == n
            wall = time.perf_counter() - started
            done = True
        return wall * 1000, max(gaps) * 1000
    finally:
        await store.close()


async def main(kind: str, n: int) -> None:
    configure_logging("warning")
    for count in (n, 10 * n):
        with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
            store = MemoryStore() if kind == "memory" else SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}")
            wall, gap = await sweep(store, count)
        print(f"{kind}: sweep of {count:,} expired jobs {wall:,.0f} ms wall, event loop unserved {gap:,.0f} ms at most")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    cli.add_argument("n", type=int, nargs="?", default=100_000, help="expired jobs (then 10x as many; default 100,000)")
    args = cli.parse_args()
    anyio.run(main, args.store, args.n)
