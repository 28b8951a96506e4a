"""What a page of jobs costs when their results are large: with results (`vibe-jobs jobs list`) and without
(list-jobs, `jobs://recent`, the dashboard's list page and its live watch), in one run.

JOBS finished jobs whose results are SIZE bytes of text each (the cap, max_result_bytes, is 4 MiB) on SQLite
(or on PostgreSQL with --postgres URL); a page of them newest first through `JobManager.list_jobs`, REPEAT
times each way, interleaved. Printed per page: wall time and CPU of the event loop's process (which decodes
what the store sends), median.

Run: .venv/bin/python bench/list_jobs.py [--jobs N] [--size BYTES] [--repeat R] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from vibe_jobs import JobManager, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.results import text_result
from vibe_jobs.store import JobStore, open_store
from vibe_jobs.store.sqlite import SQLiteStore


async def fill(manager: JobManager, jobs: int, size: int) -> None:
    for i in range(jobs):
        job_id = await manager.create_job("big", {"i": i})
        await manager.update_job_status(job_id, "running")
        await manager.set_job_result(job_id, text_result(f"{i:08d}" + "x" * (size - 8)))


async def measure(store: JobStore, jobs: int, size: int, repeat: int) -> dict[bool, list[tuple[float, float]]]:
    figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    async with JobManager(store, Settings()) as manager:
        await fill(manager, jobs, size)
        for _ in range(repeat):
            for with_result in (True, False):
                wall, cpu = time.perf_counter(), time.process_time()
                page = await manager.list_jobs(limit=jobs, with_result=with_result)
                figures[with_result].append((time.perf_counter() - wall, time.process_time() - cpu))
                assert len(page.jobs) == jobs
                del page  # freed outside the next timing
    return figures


def report(figures: dict[bool, list[tuple[float, float]]], jobs: int, size: int) -> None:
    print(f"a page of {jobs} jobs with results of {size:,} bytes each, median of {len(figures[True])}")
    for with_result, label in ((True, "with results (jobs list)"), (False, "without (list-jobs, pages)")):
        wall = statistics.median(w for w, _ in figures[with_result]) * 1000
        cpu = statistics.median(c for _, c in figures[with_result]) * 1000
        print(f"  {label:28} {wall:9.1f} ms wall {cpu:9.1f} ms event-loop CPU")
    ratio = statistics.median(w for w, _ in figures[True]) / statistics.median(w for w, _ in figures[False])
    print(f"  without / with: 1/{ratio:,.0f} of the wall time")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--size", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (a schema of its own is used)")
    args = parser.parse_args()
    configure_logging("warning")
    if args.postgres:
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema=bench_{os.urandom(4).hex()}"
        store = open_store(url)
        try:
            report(await measure(store, args.jobs, args.size, args.repeat), args.jobs, args.size)
        finally:
            await store.drop_schema()  # type: ignore[attr-defined]
        return
    with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
        store = SQLiteStore(f"sqlite:///{tmp}/jobs.db")
        report(await measure(store, args.jobs, args.size, args.repeat), args.jobs, args.size)


if __name__ == "__main__":
    asyncio.run(main())
