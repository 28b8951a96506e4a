"""Figure 1: in-process throughput, create -> complete N no-op jobs, vibe-jobs against the queues a user would pick.

vibe-jobs: N jobs create -> running -> completed through the JobManager (200 concurrent workers, as in
bench/store.py) on the memory store and on the durable SQLite store (every step committed before it returns),
and N jobs through the scheduler (create, admit, run a no-op tool, complete) on the memory store.
Peers (in the peers' venv, bench/peers/queue_throughput.py): saq on Redis with worker concurrency 10
(N jobs), and arq (10 ms poll delay), saq on PostgreSQL and procrastinate with fewer jobs.
Rounds are interleaved (vibe-jobs, then each peer) and ratios taken round by round.

Run: .venv/bin/python bench/throughput.py [--quick] [--json]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import common
import peers
import scheduler as sched_bench
from common import Row, ratios, row

import store as store_bench
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

EXTRA_PEERS = ["arq", "saq-postgres", "procrastinate"]


def vibe_memory(n: int) -> float:
    return anyio.run(store_bench.run_once, MemoryStore(), n, 200)


def vibe_sqlite(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
        return anyio.run(store_bench.run_once, SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}"), n, 200)


def vibe_scheduler(n: int) -> float:
    r = anyio.run(sched_bench.throughput, n)
    return n / r["total_s"]


def peer(system: str, n: int) -> dict[str, float]:
    return peers.run_peer("queue_throughput.py", system, "--jobs", str(n), "--warmup", "200", timeout=600)


def measure(quick: bool) -> list[Row]:
    configure_logging("warning")
    peers.ensure()
    n, n_extra, rounds = (2_000, 300, 1) if quick else (10_000, 2_000, 3)
    vibe_memory(1_000), vibe_sqlite(1_000), vibe_scheduler(1_000)  # warm-up
    mem: list[float] = []
    sql: list[float] = []
    sch: list[float] = []
    saq: dict[str, list[float]] = {"processed_per_s": [], "enqueue_per_s": [], "end_to_end_per_s": []}
    extra: dict[str, list[float]] = {p: [] for p in EXTRA_PEERS}
    sql_small: list[float] = []
    for _ in range(rounds):
        mem.append(vibe_memory(n))
        sql.append(vibe_sqlite(n))
        sch.append(vibe_scheduler(n))
        for key, value in peer("saq-redis", n).items():
            if key in saq:
                saq[key].append(value)
        sql_small.append(vibe_sqlite(n_extra))
        for system in EXTRA_PEERS:
            extra[system].append(peer(system, n_extra)["processed_per_s"])
    saq_proc = saq["processed_per_s"]
    rows = [
        row("1a", f"memory store, {n:,} jobs create->complete", "jobs/s", mem, peer_name="saq-redis processed",
            peer=saq_proc, ratio=ratios(mem, saq_proc), ratio_label="vs saq", goal=">= 50,000 jobs/s",
            met=common.summary(mem)["median"] >= 50_000),
        row("1b", f"SQLite durable, {n:,} jobs create->complete", "jobs/s", sql, peer_name="saq-redis processed",
            peer=saq_proc, ratio=ratios(sql, saq_proc), ratio_label="vs saq",
            goal=">= 10,000 jobs/s and >= 5x saq-redis",
            met=common.summary(sql)["median"] >= 10_000 and common.summary(ratios(sql, saq_proc))["median"] >= 5),
        row("1c", f"scheduler: create+run no-op tool, memory, {n:,}", "jobs/s", sch,
            peer_name="saq-redis enqueue+process", peer=saq["end_to_end_per_s"],
            ratio=ratios(sch, saq["end_to_end_per_s"]), ratio_label="vs saq",
            note="1c runs each job's function through vibe-jobs' scheduler (max_concurrent 50); saq's figure is "
                 f"enqueue + process ({common.fmt_summary(common.summary(saq['enqueue_per_s']), 'jobs/s')} "
                 "enqueue alone)"),
    ]  # fmt: skip
    for system in EXTRA_PEERS:
        rows.append(
            row(
                "1d",
                f"SQLite durable vs {system}, {n_extra:,} jobs",
                "jobs/s",
                sql_small,
                peer_name=f"{system} processed",
                peer=extra[system],
                ratio=ratios(sql_small, extra[system]),
                ratio_label=f"vs {system}",
            )
        )
    rows[-1]["note"] = (
        "1d: peers with worker concurrency 10 (arq: max_jobs 10, poll delay 10 ms); PostgreSQL peers on 127.0.0.1"
    )
    return rows


if __name__ == "__main__":
    common.cli(measure)
