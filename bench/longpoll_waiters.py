"""What many long-polls of one job cost each progress report: N waiters (`JobManager.wait`, as get-job-result's
waitSeconds does, with an `on_event` as its keepalive has) on one running job while it reports R times. A report is
timed from its store write until every waiter has judged the job as that report left it (its `stop` saw the
record); store reads (`get`) are counted over the whole run. A waiter that re-reads the job at each wake costs a
read per waiter per report (N x R); one that takes the record the event carries costs none.

2026-12-06 (helper-130), 30 reports, medians of 3 interleaved runs, us a report before / after (bench/MEASUREMENTS.md):
memory 100 / 1,000 waiters 1,215 / 783, 14,325 / 11,619 (8.7-9.6k in single runs); SQLite 3,390 / 919, 35,119 /
10,732; PostgreSQL (local) 1,000 waiters 229,564-290,951 / 10,587-30,680. Store reads N x R + N before, N after
(each waiter's first; a waiter also re-reads the job once a `refresh` second).

Run: .venv/bin/python bench/longpoll_waiters.py [--waiters 10,100,1000] [--reports 50] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import anyio

from vibe_jobs import JobManager, Settings
from vibe_jobs.events import JobEvent
from vibe_jobs.logs import configure_logging
from vibe_jobs.models import JobRecord
from vibe_jobs.store.postgres import PostgresStore
from vibe_jobs.testing.counting import CountingMemory, CountingReads, CountingSQLite


class CountingPostgres(CountingReads, PostgresStore):
    """The PostgreSQL store, counting the jobs read."""


Counting = CountingMemory | CountingSQLite | CountingPostgres


def open_store(kind: str, folder: Path, n: int, postgres_url: str) -> Counting:
    if kind == "memory":
        return CountingMemory()
    if kind == "sqlite":
        return CountingSQLite(f"sqlite:///{folder / f'w{n}.db'}")
    schema = f"vj_longpoll_{os.urandom(4).hex()}"  # a schema of its own, dropped afterwards
    return CountingPostgres(f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}")


async def measure(store: Counting, waiters: int, reports: int) -> tuple[float, int]:
    """Median microseconds from a report's write until all `waiters` saw it, and the store reads of the run."""
    manager = JobManager(store, Settings())
    job_id = await manager.create_job("echo", {})
    await manager.start_job(job_id)
    seen = [0]
    target = [waiters]
    all_seen = anyio.Event()

    def judge(rec: JobRecord) -> bool:  # the waiter's stop: called on each record it judges the job by
        if rec.progress_percentage is not None and rec.progress_percentage >= target[0]:
            seen[0] += 1
            if seen[0] == waiters:
                all_seen.set()
        return False

    async def on_event(event: JobEvent) -> None:
        pass

    async def waiter(ready: anyio.Event, started: list[int]) -> None:
        async def begin(rec: JobRecord) -> None:
            started[0] += 1
            if started[0] == waiters:
                ready.set()

        await manager.wait(job_id, 3600, on_event, stop=judge, on_start=begin)

    times = []
    async with anyio.create_task_group() as tg:
        ready, started = anyio.Event(), [0]
        for _ in range(waiters):
            tg.start_soon(waiter, ready, started)
        await ready.wait()
        reads_before = store.reads - waiters  # each waiter's first read is counted as the run's
        for r in range(1, reports + 1):
            seen[0], target[0], all_seen = 0, r, anyio.Event()
            began = time.perf_counter()
            await manager.update_progress(job_id, float(r), f"step {r}")
            await all_seen.wait()
            times.append((time.perf_counter() - began) * 1e6)
        reads = store.reads - reads_before
        tg.cancel_scope.cancel()
    times.sort()
    return times[len(times) // 2], reads


async def main(counts: list[int], reports: int, kinds: list[str], postgres_url: str) -> None:
    configure_logging("warning")
    print(f"long-poll waiters: N waiters on one job, {reports} progress reports; us a report, store reads in all")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for n in counts:
                store = open_store(kind, Path(tmp), n, postgres_url)
                await store.open()
                try:
                    await measure(store, min(n, 10), 5)  # warm-up
                    us, reads = await measure(store, n, reports)
                finally:
                    if isinstance(store, PostgresStore):
                        await store.drop_schema()
                    await store.close()
                per = reads / reports
                print(f"  {kind:7} {n:6,} waiters  {us:10,.0f} us a report  {reads:8,} reads ({per:,.1f} a report)")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--waiters", default="10,100,1000", help="comma-separated waiter counts (default 10,100,1000)")
    cli.add_argument("--reports", type=int, default=50, help="progress reports of each run (default 50)")
    cli.add_argument(
        "--stores", default="memory,sqlite", help="comma-separated: memory, sqlite, postgres (default memory,sqlite)"
    )
    cli.add_argument(
        "--postgres-url",
        default=os.environ.get("VIBE_JOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="the database of --stores postgres, a schema of its own made and dropped (default "
        "$VIBE_JOBS_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test)",
    )
    args = cli.parse_args()
    waiters = [int(n) for n in args.waiters.split(",")]
    asyncio.run(main(waiters, args.reports, args.stores.split(","), args.postgres_url))
