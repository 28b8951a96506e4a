"""PostgreSQL cluster throughput and pick-up latency: `vibe-jobs worker` processes against saq on the same server.

vibe-jobs: 1, 2 and 4 `vibe-jobs worker` processes (concurrency 50 each, under a cluster-wide limit of 50 per
worker and resource limits that never bind, as saq has none) claim from one schema of the
database `vibe_jobs_bench` (created when missing, the schema dropped afterwards). Throughput: the
workers idle, N no-op jobs are inserted in one transaction, and the figure is N / (last finished_at -
insert commit). Pick-up latency: with the workers idle, jobs are created one at a time (every 5 ms)
and the latency of each is started_at - created_at (milliseconds, as stored).
Peer: saq on PostgreSQL (bench/peers/queue_throughput.py saq-postgres for throughput,
bench/peers/queue_latency.py for pick-up latency), in the peers' venv, on the same database.

Run: .venv/bin/python bench/postgres.py [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import common
import peers
from common import Row, percentile, row

from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store.postgres import PostgresStore, sql

BASE_URL = os.environ.get("VIBE_JOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DB = "vibe_jobs_bench"
WORKER_CONCURRENCY = 50
OWNER = "bench-creator"
# The default resource limits (2048 MB, cpu weight 8) admit 8 default-sized jobs at a time cluster-wide; saq has
# no such limit, so the workers get limits that never bind and run 50 jobs each, like saq's concurrency 50.
UNBOUNDED = {"maxMemoryMB": 1e12, "maxCpuWeight": 1e12, "maxDiskSpaceMB": 1e12}
# the server processes whose CPU is the bench's: the workers' sessions and the shared ones (WAL writer, ...)
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE application_name = 'vj-bench' OR backend_type <> 'client backend'"


def bench_url(schema: str) -> str:
    return f"{BASE_URL.rsplit('/', 1)[0]}/{BENCH_DB}?schema={schema}&application_name=vj-bench"


async def ensure_db() -> None:
    conn = await asyncpg.connect(BASE_URL)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DB) is None:
            await conn.execute(f"CREATE DATABASE {BENCH_DB}")
    finally:
        await conn.close()


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of `pids` (Linux /proc; the server's processes when on this machine)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICK


def new_record(i: int) -> JobRecord:
    now = int(time.time() * 1000)
    return JobRecord(
        id=f"{os.urandom(12).hex()}-{i}", tool_name="noop", params={}, status=JobStatus.PENDING,
        created_at=now, updated_at=now, owner=OWNER,
    )  # fmt: skip


@contextmanager
def workers(url: str, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "queue.json")
        config.write_text(json.dumps({"resourceLimits": UNBOUNDED}))
        with _workers(url, count, config) as procs:
            yield procs


@contextmanager
def _workers(url: str, count: int, config: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ, "PYTHONPATH": str(common.ROOT), "VIBE_JOBS_LOG_LEVEL": "error",
        "JOB_MANAGER_MAX_CONCURRENT": str(WORKER_CONCURRENCY * count), "VIBE_JOBS_CONFIG": str(config),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", url, "--no-builtin",
           "--tools", "tests.e2e.sample_tools", "--concurrency", str(WORKER_CONCURRENCY)]  # fmt: skip
    procs = [subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def wait_for_workers(conn: asyncpg.Connection, count: int) -> None:
    deadline = time.monotonic() + 30
    while await conn.fetchval("SELECT count(*) FROM leases WHERE owner <> $1", OWNER) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} workers did not start within 30 s")
        await asyncio.sleep(0.05)  # a bench: polling the lease table is the readiness signal


async def wait_done(conn: asyncpg.Connection, n: int, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'") < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {n} jobs completed within {seconds} s")
        await asyncio.sleep(0.02)


async def run_cluster(count: int, n: int, latency_jobs: int) -> dict[str, Any]:
    """Throughput of `count` workers over `n` jobs, then pick-up latencies of `latency_jobs` paced jobs."""
    await ensure_db()
    schema = f"vj_bench_{os.urandom(4).hex()}"
    url = bench_url(schema)
    store = PostgresStore(url)
    await store.open()
    try:
        await store.heartbeat(OWNER, int(time.time() * 1000) + 3_600_000)
        conn = await asyncpg.connect(store.dsn, server_settings={"search_path": schema})
        try:
            with workers(url, count) as procs:
                await wait_for_workers(conn, count)
                records = [new_record(i) for i in range(n)]
                pids = [p.pid for p in procs]
                backends = [r[0] for r in await conn.fetch(BACKENDS)]
                cpu0, pg0, wall0 = cpu_seconds(pids), cpu_seconds(backends), time.monotonic()
                async with conn.transaction():
                    await conn.executemany(sql.INSERT, [sql.insert_args(r) for r in records])
                committed = time.time() * 1000
                await wait_done(conn, n)
                wall = time.monotonic() - wall0
                # share of ONE core (2 cores: 200 % is the whole machine), insert to last completion
                cpu = {"workers_cpu_pct": round(100 * (cpu_seconds(pids) - cpu0) / wall),
                       "postgres_cpu_pct": round(100 * (cpu_seconds(backends) - pg0) / wall)}  # fmt: skip
                last = await conn.fetchval("SELECT max(finished_at) FROM jobs")
                per_s = n / max(1e-3, (last - committed) / 1000)
                latencies = []
                for i in range(latency_jobs):
                    await store.insert(new_record(n + i))
                    await asyncio.sleep(0.005)
                await wait_done(conn, n + latency_jobs)
                rows = await conn.fetch(
                    "SELECT started_at - created_at FROM jobs ORDER BY seq OFFSET $1", n
                )  # fmt: skip
                latencies = [float(r[0]) for r in rows]
        finally:
            await conn.close()
    finally:
        await store.close()
        await store.drop_schema()
    return {"per_s": per_s, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), **cpu}


def saq_throughput(n: int) -> float:
    out = peers.run_peer("queue_throughput.py", "saq-postgres", "--jobs", str(n), "--concurrency", "50")
    return float(out["processed_per_s"])


def saq_latency(k: int) -> dict[str, float]:
    return peers.run_peer("queue_latency.py", "--jobs", str(k))


def measure(quick: bool) -> list[Row]:
    n, k = (500, 100) if quick else (2_000, 300)
    rows: list[Row] = []
    figures: dict[int, dict[str, Any]] = {}
    for count in (1, 2, 4):
        figures[count] = asyncio.run(run_cluster(count, n, k))
        print(f"bench: {count} worker(s): {figures[count]}", file=sys.stderr, flush=True)
    peers.ensure(log=True)
    saq_tp = saq_throughput(n)
    saq_lat = saq_latency(k)
    print(f"bench: saq-postgres: {saq_tp:.0f} jobs/s, latency {saq_lat}", file=sys.stderr, flush=True)
    for count in (1, 2, 4):
        goal, met = ("", None) if count != 4 else (">= 2,000 jobs/s", figures[4]["per_s"] >= 2000)
        rows.append(
            row("pg", f"PostgreSQL jobs/s, {count} worker process(es)", "jobs/s", [figures[count]["per_s"]],
                peer_name="saq-postgres (1 worker, concurrency 50)", peer=[saq_tp],
                ratio=[figures[count]["per_s"] / saq_tp], ratio_label="vs saq", goal=goal, met=met)
        )  # fmt: skip
    p50, p99 = figures[4]["p50"], figures[4]["p99"]
    rows.append(
        row("pg", "pick-up latency p50 (4 workers)", "ms", [p50], peer_name="saq-postgres", peer=[saq_lat["p50"]],
            goal="<= 10 ms", met=p50 <= 10)
    )  # fmt: skip
    rows.append(row("pg", "pick-up latency p99 (4 workers)", "ms", [p99], peer_name="saq-postgres",
                    peer=[saq_lat["p99"]]))  # fmt: skip
    for count in (1, 2):
        for q in ("p50", "p99"):
            rows.append(row("pg", f"pick-up latency {q} ({count} worker(s))", "ms", [figures[count][q]]))
    return rows


if __name__ == "__main__":
    common.cli(measure)
