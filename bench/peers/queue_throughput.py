# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Peer throughput (figure 1): enqueue N no-op jobs, then process them with a worker of concurrency C in this process.

Runs in the peers' venv (bench/peers.py). Prints one JSON line:
{"system", "jobs", "enqueue_per_s", "processed_per_s", "end_to_end_per_s"}.

Systems: saq-redis, saq-postgres, arq (poll delay --poll-delay, default 10 ms), procrastinate.
Everything a run writes is named by its tag (bench/peers/peerlib.py): Redis queues and job ids carry it, and
PostgreSQL work happens in a schema of that name in the database vibe_jobs_bench, dropped at the end.
A worker that logs an error fails the run at once (it used to wait idle for jobs that could not run), and a
worker's shutdown is cancelled again until it ends (peerlib.finish: on Python 3.11 saq's Worker.stop() could lose
a cancellation and wait for good; "lost_cancellations" in the JSON counts the times it had to).
VIBE_JOBS_BENCH_HANG=<system> makes that system hang on purpose after enqueueing.

Run: .bench-venv/bin/python bench/peers/queue_throughput.py saq-redis --jobs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import peerlib


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


@asynccontextmanager
async def own_schema(tag: str) -> AsyncIterator[str]:
    """The schema `tag` (dropped afterwards, also on failure); yields the URL that uses it."""
    url = await peerlib.create_schema(tag)
    try:
        yield url
    finally:
        await asyncio.shield(peerlib.drop_schema(tag))


async def saq_run(system: str, url: str, tag: str, n: int, concurrency: int) -> tuple[float, float]:
    from saq import Queue, Worker

    extra = {"saq_lock_keyspace": peerlib.lock_keyspace(tag)} if system == "saq-postgres" else {}
    queue = Queue.from_url(url, name=tag, **extra)
    await queue.connect()
    global COUNTER
    COUNTER = counter = Counter(n)
    worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency, after_process=after)
    worker.SIGNALS = []
    try:
        start = time.perf_counter()
        for _ in range(n):
            await queue.enqueue("noop", timeout=60)
        enqueued = time.perf_counter()
        await peerlib.maybe_hang(system)
        task = asyncio.create_task(worker.start())
        await peerlib.wait_done(counter.event, system)
        done = time.perf_counter()
        await peerlib.finish(asyncio.ensure_future(worker.stop()), [*worker.tasks, task])
        await peerlib.cancel(task)
    finally:
        await queue.disconnect()
    check(counter)
    return enqueued - start, done - enqueued


async def arq_run(name: str, n: int, concurrency: int, poll_delay: float) -> tuple[float, float]:
    from arq import Worker, create_pool, func
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(peerlib.REDIS_URL), default_queue_name=name)
    global COUNTER
    COUNTER = counter = Counter(n)
    start = time.perf_counter()
    for i in range(n):
        await pool.enqueue_job("noop", _queue_name=name, _job_id=f"{name}:{i}")
    enqueued = time.perf_counter()
    await peerlib.maybe_hang("arq")
    worker = Worker(
        functions=[func(noop, name="noop")], redis_pool=pool, queue_name=name, max_jobs=concurrency,
        poll_delay=poll_delay, keep_result=0, after_job_end=after, handle_signals=False,
    )  # fmt: skip
    task = asyncio.create_task(worker.async_run())
    await peerlib.wait_done(counter.event, "arq")
    done = time.perf_counter()
    await peerlib.cancel(task)
    await worker.close()
    check(counter)
    return enqueued - start, done - enqueued


async def procrastinate_run(url: str, n: int, concurrency: int) -> tuple[float, float]:
    from procrastinate import App, PsycopgConnector

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
        await peerlib.maybe_hang("procrastinate")
        worker = app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=False)
        task = asyncio.create_task(worker)
        await peerlib.wait_done(counter.event, "procrastinate")
        done = time.perf_counter()
        await peerlib.cancel(task)
    check(counter)
    return enqueued - start, done - enqueued


async def run(system: str, tag: str, n: int, concurrency: int, poll_delay: float) -> tuple[float, float]:
    """One round under `tag`: its own queue name, schema and (saq) advisory-lock keyspace."""
    if system == "saq-redis":
        return await saq_run(system, peerlib.REDIS_URL, tag, n, concurrency)
    if system == "arq":
        return await arq_run(tag, n, concurrency, poll_delay)
    async with own_schema(tag) as url:
        if system == "saq-postgres":
            return await saq_run(system, url, tag, n, concurrency)
        return await procrastinate_run(url, n, concurrency)


async def main(args: argparse.Namespace) -> None:
    peerlib.quiet_logging()
    peerlib.start_watchdog()
    try:
        if args.warmup:
            await run(args.system, f"{peerlib.TAG}_w", args.warmup, args.concurrency, args.poll_delay)
        t_enqueue, t_process = await run(args.system, peerlib.TAG, args.jobs, args.concurrency, args.poll_delay)
    finally:
        if args.system in ("saq-redis", "arq"):
            await peerlib.delete_redis_keys(f"*{peerlib.TAG}*")
    n = args.jobs
    per_s = {
        "enqueue_per_s": n / t_enqueue,
        "processed_per_s": n / t_process,
        "end_to_end_per_s": n / (t_enqueue + t_process),
    }
    print(json.dumps({"system": args.system, "jobs": n, **per_s, "lost_cancellations": peerlib.LOST_CANCELLATIONS[0]}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["saq-redis", "saq-postgres", "arq", "procrastinate"])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--poll-delay", type=float, default=0.01)
    asyncio.run(main(parser.parse_args()))
