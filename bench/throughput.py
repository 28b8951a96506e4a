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


SAQ = "saq-redis"


def peer_round(series: dict[str, peers.PeerSeries], system: str, n: int) -> None:
    series[system].run("queue_throughput.py", system, "--jobs", str(n), "--warmup", "200")


def measure(quick: bool) -> list[Row]:
    configure_logging("warning")
    peers.ensure()
    n, n_extra, rounds = (2_000, 300, 1) if quick else (10_000, 2_000, 3)
    vibe_memory(1_000), vibe_sqlite(1_000), vibe_scheduler(1_000)  # warm-up
    vibe: dict[str, list[float]] = {"mem": [], "sql": [], "sch": [], "sql_small": []}
    series = {system: peers.PeerSeries() for system in [SAQ, *EXTRA_PEERS]}
    for _ in range(rounds):
        vibe["mem"].append(vibe_memory(n))
        vibe["sql"].append(vibe_sqlite(n))
        vibe["sch"].append(vibe_scheduler(n))
        peer_round(series, SAQ, n)
        vibe["sql_small"].append(vibe_sqlite(n_extra))
        for system in EXTRA_PEERS:
            peer_round(series, system, n_extra)
    return saq_rows(n, vibe, series[SAQ]) + extra_rows(n_extra, vibe["sql_small"], series)


def saq_rows(n: int, vibe: dict[str, list[float]], saq: peers.PeerSeries) -> list[Row]:
    proc, e2e, enq = saq.values("processed_per_s"), saq.values("end_to_end_per_s"), saq.values("enqueue_per_s")
    mem, sql, sch = vibe["mem"], vibe["sql"], vibe["sch"]
    sql_ratio = ratios(sql, proc)
    enqueue = common.fmt_summary(common.summary(common.present(enq)), "jobs/s") if common.present(enq) else "-"
    met_sql = None if not sql_ratio else common.summary(sql)["median"] >= 10_000 and median(sql_ratio) >= 5
    status = saq.status
    return [
        row("1a", f"memory store, {n:,} jobs create->complete", "jobs/s", mem, peer_name="saq-redis processed",
            peer=proc, ratio=ratios(mem, proc), ratio_label="vs saq", goal=">= 50,000 jobs/s",
            met=common.summary(mem)["median"] >= 50_000, peer_status=status, note=saq.note("1a: saq-redis")),
        row("1b", f"SQLite durable, {n:,} jobs create->complete", "jobs/s", sql, peer_name="saq-redis processed",
            peer=proc, ratio=sql_ratio, ratio_label="vs saq", goal=">= 10,000 jobs/s and >= 5x saq-redis",
            met=met_sql, peer_status=status),
        row("1c", f"scheduler: create+run no-op tool, memory, {n:,}", "jobs/s", sch,
            peer_name="saq-redis enqueue+process", peer=e2e, ratio=ratios(sch, e2e), ratio_label="vs saq",
            peer_status=status,
            note="1c runs each job's function through vibe-jobs' scheduler (max_concurrent 50); saq's figure is "
                 f"enqueue + process ({enqueue} enqueue alone)"),
    ]  # fmt: skip


def extra_rows(n: int, sql_small: list[float], series: dict[str, peers.PeerSeries]) -> list[Row]:
    rows = []
    for i, system in enumerate(EXTRA_PEERS):
        values = series[system].values("processed_per_s")
        notes = [series[system].note(f"1d: {system}")]
        if i == 0:
            notes.insert(0, "1d: peers with worker concurrency 10 (arq: max_jobs 10, poll delay 10 ms); "
                            "PostgreSQL peers on 127.0.0.1, each run in a schema of its own")  # fmt: skip
        rows.append(
            row("1d", f"SQLite durable vs {system}, {n:,} jobs", "jobs/s", sql_small,
                peer_name=f"{system} processed", peer=values, ratio=ratios(sql_small, values),
                ratio_label=f"vs {system}", peer_status=series[system].status, note="; ".join(filter(None, notes)))
        )  # fmt: skip
    return rows


def median(values: list[float]) -> float:
    return common.summary(values)["median"]


if __name__ == "__main__":
    common.cli(measure)
