"""A principal's lock across processes that share one SQLite file (`sqlite.principals`): how long each wait is.

N processes (default 3) on one SQLite file, each with quotas set (VIBE_JOBS_QUOTA_PENDING, far above what is
created) and C concurrent creates (default 30) of one principal until it has made J jobs (default 600). Every
create takes the principal's lock across the processes (the manager's own lock queues a process's creates
first: one waits on the file at a time). Started together (one line to every process once all are ready).
The figures, per process: the waits for the lock file's lock (from asking to holding; p50, p99, max, in ms),
the calls refused for waiting past PRINCIPAL_LOCK_WAIT_MS (StoreLocked), and jobs/s of all processes together
(first start to last end) and the CPU time of their event loops' processes per job (not the SQLite server
processes'), with the load average before each run (on a 2-core machine anything else running
shows up directly in these figures).
2026-12-05 (helper-83's runs, 20-50 creates at once in 3 busy processes): waits of a median of about 3 ms
reached 3.3 s, not far from the 5 s refusal. Here, load 14-16: the longest wait of a run 196-836 ms before the
line of waiters (`sqlite.principals`), 67-82 ms after (bench/MEASUREMENTS.md).

Run: .venv/bin/python bench/quota_lock.py [--procs N] [--concurrent C] [--jobs J] [--runs R] [TREE]
     TREE: another checkout (its src/ is imported instead of this one's), to compare two commits.
     --against OLD: OLD and this checkout measured in turn, R runs each, alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

PRINCIPAL = "alice"


async def worker(url: str, concurrent: int, jobs: int) -> None:
    """One process: on "go" from stdin, `jobs` creates, `concurrent` at once; prints its waits as JSON."""
    from vibe_jobs import JobManager, Settings
    from vibe_jobs.errors import StoreLocked
    from vibe_jobs.identity import Viewer
    from vibe_jobs.store.sqlite import SQLiteStore

    store = SQLiteStore(url)
    await store.open()
    waits: list[float] = []
    taken = store.principal_lock

    @asynccontextmanager
    async def timed(principal: str) -> AsyncIterator[bool]:
        asked = time.perf_counter()
        async with taken(principal) as held:
            waits.append((time.perf_counter() - asked) * 1000)
            yield held

    store.principal_lock = timed  # type: ignore[method-assign]
    manager = JobManager(store, Settings(quota_pending=10**9))
    left, refused = [jobs], [0]

    async def creates() -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                await manager.create_job("t", {}, viewer=Viewer(PRINCIPAL))
            except StoreLocked:
                refused[0] += 1

    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    began, cpu = time.time(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrent):
            tg.start_soon(creates)
    ended, cpu = time.time(), time.process_time() - cpu
    await store.close()
    figures = {"waits": waits, "refused": refused[0], "began": began, "ended": ended, "cpu": cpu}
    print(json.dumps(figures), flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def one_run(src: str, procs: int, concurrent: int, jobs: int) -> dict[str, Any]:
    """N worker processes on a new file, started at once: each one's waits, refusals and the jobs/s of all."""
    env = {**os.environ, "PYTHONPATH": src}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'jobs.db'}"
        args = ["--worker", url, str(concurrent), str(jobs)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, *args, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(procs)
        ]
        for w in workers:
            assert w.stdout is not None and await w.stdout.readline() == b"ready\n"
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(b"go\n")
        outs = [json.loads(await w.stdout.readline()) for w in workers if w.stdout is not None]
        for w in workers:
            await w.wait()
    span = max(o["ended"] for o in outs) - min(o["began"] for o in outs)
    cpu_ms_per_job = sum(o["cpu"] for o in outs) * 1000 / (procs * jobs)
    return {"procs": outs, "jobs_per_s": procs * jobs / span, "cpu_ms_per_job": cpu_ms_per_job}


def report(label: str, run: dict[str, Any], load: float) -> None:
    cells = [
        f"p50 {quantile(o['waits'], 0.5):6.1f} p99 {quantile(o['waits'], 0.99):7.1f} max {max(o['waits']):7.1f}"
        f" refused {o['refused']}"
        for o in run["procs"]
    ]
    print(
        f"{label:>7} load {load:4.2f} | {run['jobs_per_s']:5.0f} jobs/s {run['cpu_ms_per_job']:.2f} CPU ms/job | "
        + " | ".join(cells),
        flush=True,
    )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        url, concurrent, jobs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        asyncio.run(worker(url, concurrent, jobs))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=600, help="jobs per process")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", help="an older checkout, measured in turn with this one")
    a = ap.parse_args()
    trees = [("before", a.against), ("after", a.tree)] if a.against else [("run", a.tree)]
    print(f"{a.procs} processes x {a.concurrent} concurrent creates x {a.jobs} jobs; lock waits per process in ms")
    maxima: dict[str, list[float]] = {label: [] for label, _ in trees}
    for _ in range(a.runs):
        for label, tree in trees:
            load = os.getloadavg()[0]
            run = asyncio.run(one_run(os.path.join(os.path.abspath(tree), "src"), a.procs, a.concurrent, a.jobs))
            report(label, run, load)
            maxima[label].append(max(max(o["waits"]) for o in run["procs"]))
    for label, values in maxima.items():
        print(f"{label}: longest wait per run, median {statistics.median(values):.1f} ms, max {max(values):.1f} ms")


if __name__ == "__main__":
    main()
