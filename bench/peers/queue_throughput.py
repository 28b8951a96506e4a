# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Peer throughput (figure 1): enqueue N no-op jobs, then process them with a worker of concurrency C in this process.

Runs in the peers' venv (bench/peers.py). Prints one JSON line:
{"system", "jobs", "enqueue_per_s", "processed_per_s", "end_to_end_per_s"}.

Systems: saq-redis, saq-postgres, arq (poll delay --poll-delay, default 10 ms), procrastinate.
Redis keys live under a unique queue name and are deleted afterwards; PostgreSQL work happens in a
separate database (vibe_jobs_bench) that is reset at each run.

Run: .bench-venv/bin/python bench/peers/queue_throughput.py saq-redis --jobs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from typing import Any

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DB = "vibe_jobs_bench"


def bench_db_url() -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + BENCH_DB


async def reset_bench_db() -> str:
    """Create (or empty) the benchmark database; return its URL."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
        if await cur.fetchone() is None:
            await conn.execute(f"CREATE DATABASE {BENCH_DB}")
    async with await psycopg.AsyncConnection.connect(bench_db_url(), autocommit=True) as conn:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    return bench_db_url()


class Counter:
    """Counts jobs whose no-op function ran; `event` is set once all `n` finished."""

    def __init__(self, n: int) -> None:
        self.n, self.ran, self.done, self.event = n, 0, 0, asyncio.Event()

    def tick(self) -> None:
        self.done += 1
        if self.done >= self.n:
            self.event.set()


COUNTER = Counter(0)


async def noop(ctx: Any = None) -> None:
    """The job: does nothing but count that it ran (so a job whose function was not found does not pass)."""
    COUNTER.ran += 1


async def after(ctx: Any) -> None:
    COUNTER.tick()


def check(counter: Counter) -> None:
    if counter.ran != counter.n:
        raise SystemExit(f"only {counter.ran} of {counter.n} jobs ran their function")


async def saq_run(url: str, n: int, concurrency: int) -> tuple[float, float]:
    from saq import Queue, Worker

    name = f"vibe-bench-{uuid.uuid4().hex[:8]}"
    queue = Queue.from_url(url, name=name)
    await queue.connect()
    global COUNTER
    COUNTER = counter = Counter(n)
    worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency, after_process=after)
    worker.SIGNALS = []
    start = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("noop", timeout=60)
    enqueued = time.perf_counter()
    task = asyncio.create_task(worker.start())
    await asyncio.wait_for(counter.event.wait(), 600)
    done = time.perf_counter()
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    check(counter)
    if url.startswith("redis"):
        await _delete_redis_keys(f"saq:*{name}*")
    await queue.disconnect()
    return enqueued - start, done - enqueued


async def _delete_redis_keys(pattern: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])
    await redis.aclose()


async def arq_run(n: int, concurrency: int, poll_delay: float) -> tuple[float, float]:
    from arq import Worker, create_pool, func
    from arq.connections import RedisSettings

    name = f"vibe-bench-arq-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings.from_dsn(REDIS_URL)
    pool = await create_pool(settings, default_queue_name=name)
    global COUNTER
    COUNTER = counter = Counter(n)
    start = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop", _queue_name=name)
    enqueued = time.perf_counter()
    worker = Worker(
        functions=[func(noop, name="noop")], redis_pool=pool, queue_name=name, max_jobs=concurrency,
        poll_delay=poll_delay,
        keep_result=0, after_job_end=after, handle_signals=False,
    )  # fmt: skip
    task = asyncio.create_task(worker.async_run())
    await asyncio.wait_for(counter.event.wait(), 600)
    done = time.perf_counter()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    check(counter)
    await _delete_redis_keys(f"*{name}*")
    return enqueued - start, done - enqueued


async def procrastinate_run(n: int, concurrency: int) -> tuple[float, float]:
    from procrastinate import App, PsycopgConnector

    url = await reset_bench_db()
    app = App(connector=PsycopgConnector(conninfo=url))
    counter = Counter(n)

    @app.task(name="noop")
    async def noop_task() -> None:
        counter.ran += 1
        counter.tick()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        start = time.perf_counter()
        for _ in range(n):
            await noop_task.defer_async()
        enqueued = time.perf_counter()
        task = asyncio.create_task(
            app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=False)
        )
        await asyncio.wait_for(counter.event.wait(), 600)
        done = time.perf_counter()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    check(counter)
    return enqueued - start, done - enqueued


async def run(system: str, n: int, concurrency: int, poll_delay: float) -> tuple[float, float]:
    if system == "saq-redis":
        return await saq_run(REDIS_URL, n, concurrency)
    if system == "saq-postgres":
        return await saq_run(await reset_bench_db(), n, concurrency)
    if system == "arq":
        return await arq_run(n, concurrency, poll_delay)
    if system == "procrastinate":
        return await procrastinate_run(n, concurrency)
    raise SystemExit(f"unknown system {system}")


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.CRITICAL)
    if args.warmup:
        await run(args.system, args.warmup, args.concurrency, args.poll_delay)
    t_enqueue, t_process = await run(args.system, args.jobs, args.concurrency, args.poll_delay)
    n = args.jobs
    print(
        json.dumps(
            {
                "system": args.system,
                "jobs": n,
                "enqueue_per_s": n / t_enqueue,
                "processed_per_s": n / t_process,
                "end_to_end_per_s": n / (t_enqueue + t_process),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["saq-redis", "saq-postgres", "arq", "procrastinate"])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--poll-delay", type=float, default=0.01)
    asyncio.run(main(parser.parse_args()))
