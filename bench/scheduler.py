"""Scheduler throughput and the cost of one scheduling decision, on the memory store.

1. Throughput: N (default 100,000) no-op jobs queued over four priorities, 10 % of them in
   dependency chains of ten, run with max_concurrent=50: jobs/s from the first submission to the
   last job finished (submission, admission, picking, start, run, result, dependency release).
2. Decision cost: one `_pick` (the best ready job that fits) plus pushing it back, with 1k, 10k and
   100k ready jobs pending. The ready queue is a heap, so a decision should grow like log n.

Run: .venv/bin/python bench/scheduler.py [N]
"""

from __future__ import annotations

import argparse
import gc
import heapq
import math
import random
import time

import anyio

from vibe_jobs import JobManager, Priority, Settings, TaskSpec
from vibe_jobs.engine.local import LocalSource, QueuedJob
from vibe_jobs.jobtool import make_spec
from vibe_jobs.logs import configure_logging
from vibe_jobs.models import JobQueueConfig, JobRecord, ResourceLimits
from vibe_jobs.store import MemoryStore

PRIORITIES = [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL]
ROOMY = JobQueueConfig(
    resource_limits=ResourceLimits.model_validate({"maxMemoryMB": 1e12, "maxCpuWeight": 1e12, "maxDiskSpaceMB": 1e12})
)


async def noop(i: int = 0) -> None:
    return None


class CountingSource(LocalSource):
    """Sets `all_done` once `expected` jobs have finished."""

    expected = 0
    finished = 0
    all_done: anyio.Event

    def on_finished(self, rec: JobRecord) -> None:
        super().on_finished(rec)
        self.finished += 1
        if self.finished == self.expected:
            self.all_done.set()


async def throughput(n: int, max_concurrent: int = 50) -> dict[str, float]:
    settings = Settings(max_concurrent=max_concurrent, max_pending=10 * n, queue=ROOMY)
    manager = JobManager(MemoryStore(), settings)
    sched = CountingSource(manager, {"noop": make_spec(noop, name="noop")})
    sched.expected, sched.all_done = n, anyio.Event()
    ids: list[str] = []
    peak_queued = 0
    async with manager:
        start, cpu0 = time.perf_counter(), time.process_time()
        for i in range(n):
            deps = [ids[i - 10]] if i % 10 == 0 and i % 100 != 0 else []  # chains of ten: 0, 10, ..., 90
            ids.append(
                await manager.create_job("noop", {"i": i}, task=TaskSpec(priority=PRIORITIES[i % 4], dependencies=deps))
            )
            peak_queued = max(peak_queued, len(sched.queued))
        submitted = time.perf_counter()
        with anyio.fail_after(600):
            await sched.all_done.wait()
        done, cpu1 = time.perf_counter(), time.process_time()
        counts = await manager.store.counts()
    assert sum(v for k, v in counts.items() if k.value == "completed") == n, counts
    assert sched.executor.max_running_seen <= max_concurrent
    return {
        "submit_s": submitted - start,
        "drain_s": done - submitted,
        "total_s": done - start,
        "cpu_s": cpu1 - cpu0,
        "peak_queued": peak_queued,
        "max_running": sched.executor.max_running_seen,
    }


def loaded_scheduler(pending: int, seed: int = 1) -> LocalSource:
    """A local source (not running) whose ready heap holds `pending` jobs of mixed priority and age."""
    manager = JobManager(MemoryStore(), Settings(max_pending=10 * pending, queue=ROOMY))
    sched = LocalSource(manager, {"noop": make_spec(noop, name="noop")})
    rng = random.Random(seed)
    base = manager.now()
    for i in range(pending):
        entry = QueuedJob(f"job-{i}", "noop", rng.choice(PRIORITIES), base - rng.randrange(600_000), (1.0, 1.0, 0.0))
        sched.queued[entry.job_id] = entry
        sched._make_ready(entry, None)
    return sched


def decision_cost_us(pending: int, decisions: int = 20_000, repeats: int = 5) -> float:
    """Best-of-`repeats` CPU µs for one `_pick` plus pushing the picked job back (the queue size stays `pending`)."""
    sched = loaded_scheduler(pending)
    ready, seq = sched._ready, sched._seq
    weights, aging = sched.cfg.priority_weights, sched.aging_ms
    samples = []
    gc.collect()
    gc.disable()  # a collection pass over the other live objects is not part of a decision
    for _ in range(repeats):
        t0 = time.process_time()  # CPU time: other processes on the machine do not count
        for _ in range(decisions):
            entry = sched._pick()
            assert entry is not None
            key = entry.created_at - weights.get(entry.priority, 1.0) * aging
            heapq.heappush(ready, (key, next(seq), entry.job_id))
        samples.append((time.process_time() - t0) / decisions * 1e6)
    gc.enable()
    assert len(ready) == pending
    return min(samples)  # the least disturbed run


def main(n: int) -> None:
    configure_logging("warning")
    anyio.run(throughput, 2_000)  # warm-up
    r = anyio.run(throughput, n)
    print(f"scheduler throughput: {n:,} no-op jobs, 4 priorities, 10% in dependency chains, max_concurrent=50")
    print(f"  {'phase':<34}{'seconds':>10}{'jobs/s':>12}")
    print(f"  {'submit (create_job, all queued)':<34}{r['submit_s']:>10.2f}{n / r['submit_s']:>12,.0f}")
    print(f"  {'drain (schedule, run, finish)':<34}{r['drain_s']:>10.2f}{n / r['drain_s']:>12,.0f}")
    print(f"  {'total':<34}{r['total_s']:>10.2f}{n / r['total_s']:>12,.0f}")
    print(f"  {'total, CPU time of this process':<34}{r['cpu_s']:>10.2f}{n / r['cpu_s']:>12,.0f}")
    print(f"  peak queued {r['peak_queued']:,.0f}, max running {r['max_running']:.0f}; "
          f"{r['cpu_s'] / n * 1e6:.0f} µs CPU per job end to end")  # fmt: skip
    print()
    print("one scheduling decision (_pick + push-back) by pending jobs, best of 5 x 20,000, CPU time")
    print(f"  {'pending':>9}{'µs/decision':>14}{'ratio to 1k':>14}{'log n ratio':>14}")
    sizes = [1_000, 10_000, 100_000]
    costs = [decision_cost_us(size) for size in sizes]
    worst = 0.0
    for size, cost in zip(sizes, costs, strict=True):
        ratio, log_ratio = cost / costs[0], math.log(size) / math.log(sizes[0])
        worst = max(worst, ratio / log_ratio)
        print(f"  {size:>9,}{cost:>14.2f}{ratio:>14.2f}{log_ratio:>14.2f}")
    verdict = "yes" if worst <= 1.25 else "NO"
    print(f"  grows no faster than log n (ratio <= log-n ratio, 25% noise margin): {verdict} (worst {worst:.2f})")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("jobs", type=int, nargs="?", default=100_000, help="jobs in the throughput run (default 100,000)")
    main(cli.parse_args().jobs)
