"""What listing schedules costs (list-schedules, `vibe-jobs schedules list`, job-stats, the dashboard's jobs page):
N schedules of one principal (default 1,000, one principal's default quota), each having fired a job of its own
that completed with a 2 kB result, listed as that principal with their last outcomes (`Schedules.list`), on the
memory, SQLite and PostgreSQL stores (PostgreSQL at VIBE_JOBS_BENCH_POSTGRES_URL, in a schema of its own, dropped
afterwards; left out when it cannot be reached). Prints the median wall time of a listing and the store reads of
jobs one listing made (`get` and `get_many` calls).

Run: .venv/bin/python bench/schedule_list.py [--schedules N] [--rounds N] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vibe_jobs import JobManager, Settings
from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.identity import Viewer
from vibe_jobs.logs import configure_logging
from vibe_jobs.results import text_result
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.store import JobStore, MemoryStore, open_store

VIEWER = Viewer("alice")
POSTGRES_URL = os.environ.get("VIBE_JOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
JOB_READS = ("get", "get_many")


def counted(store: JobStore, calls: Counter[str]) -> None:
    """Count the store's reads of jobs on this instance (its class is untouched)."""
    for name in JOB_READS:
        method = getattr(store, name, None)
        if method is not None:
            setattr(store, name, _counting(name, method, calls))


def _counting(name: str, method: Callable[..., Awaitable[Any]], calls: Counter[str]) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return await method(*args, **kwargs)

    return call


async def fill(manager: JobManager, count: int) -> None:
    """`count` hourly schedules of VIEWER, each with a completed job of its own as its last."""
    store: Any = manager.store
    now = manager.now()
    for i in range(count):
        job_id = await manager.create_job("echo", {"i": i}, viewer=VIEWER)
        await manager.start_job(job_id)
        await manager.set_job_result(job_id, text_result("r" * 2000))
        rec = ScheduleRecord(
            f"s{i:05d}", "echo", {"i": i}, None, 3600.0, "UTC", None, None, False, "run_once", 10, "allow", "medium",
            None, now, now + 3_600_000, now + i, now + i, last_job_id=job_id, principal=VIEWER.principal,
        )  # fmt: skip
        await store.insert_schedule(rec)


async def listing_ms(schedules: Schedules, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        listed = await schedules.list(VIEWER)
        times.append((time.perf_counter() - started) * 1000)
        assert all(s.last_outcome == "completed" for s in listed), "a last outcome was not read"
    return statistics.median(times)


async def measure(kind: str, url: str, count: int, rounds: int) -> None:
    store = MemoryStore() if kind == "memory" else open_store(url)
    try:
        async with JobManager(store, Settings(max_pending=10 * count)) as manager:
            await fill(manager, count)
            schedules = Schedules(manager, {})
            await listing_ms(schedules, 1)  # warm-up
            calls: Counter[str] = Counter()
            counted(store, calls)
            ms = await listing_ms(schedules, rounds)
            reads = ", ".join(f"{name} {calls[name] // rounds:,}" for name in JOB_READS)
            print(f"  {kind:8} {ms:9.1f} ms a listing   job reads a listing: {reads}")
    finally:
        if kind == "postgres":
            await store.drop_schema()  # type: ignore[attr-defined]


async def main(count: int, rounds: int, kinds: list[str]) -> None:
    configure_logging("warning")
    print(f"schedule listing: {count:,} schedules of one principal, each with its last job; median of {rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == "postgres":
                schema = f"vj_bench_{os.urandom(4).hex()}"
                url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
            else:
                url = f"sqlite:///{Path(tmp) / 'jobs.db'}"
            try:
                await measure(kind, url, count, rounds)
            except OSError as exc:
                print(f"  {kind:8} left out: {exc}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stores", default="memory,sqlite,postgres")
    args = parser.parse_args()
    asyncio.run(main(args.schedules, args.rounds, args.stores.split(",")))
