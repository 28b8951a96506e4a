# mypy: disable-error-code="import-not-found"
"""What every peer run shares: its tag, its own PostgreSQL schema, the hang switch and fail-fast on errors.

A peer run is named by its tag (`VIBE_JOBS_BENCH_TAG`, set by bench/peers.py; `vjb_<run>_<nnn>`). The tag is
the run's PostgreSQL schema (in the database `vibe_jobs_bench`), the application_name of its sessions and
part of every Redis key it writes, so two runs never touch each other's state (before, every run dropped and
re-created the shared `public` schema, which pulled the tables from under a run still going) and one that is
killed can be cleaned up by name (bench/peers/cleanup.py).

`VIBE_JOBS_BENCH_HANG=saq-postgres` (comma-separated systems, or `all`) makes those systems hang on purpose,
idle, with their sessions and schema held, after their jobs are enqueued: it shows what bench/peers.py does
with a peer that never finishes.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import secrets
import sys
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BENCH_DB = "vibe_jobs_bench"
TAG = os.environ.get("VIBE_JOBS_BENCH_TAG") or f"vjb_{secrets.token_hex(4)}_000"
WAIT_SECONDS = 300.0  # a peer's own cap on waiting for its jobs; bench/peers.py kills it well before


def db_url(database: str = BENCH_DB) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + database


def tagged_url(tag: str = TAG) -> str:
    """The bench database, with this run's schema first on the search path and the tag as application_name."""
    options = quote(f"-c search_path={tag}")
    return f"{db_url()}?application_name={tag}&options={options}"


def lock_keyspace(tag: str = TAG) -> int:
    """saq takes a database-wide advisory lock (keyspace, 0) around its migrations: one key per run."""
    return zlib.crc32(tag.encode()) & 0x7FFFFFFF


async def create_schema(tag: str = TAG) -> str:
    """Create the bench database when missing and this run's schema; return the URL that uses it."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
        if await cur.fetchone() is None:
            try:
                await conn.execute(f"CREATE DATABASE {BENCH_DB}")
            except psycopg.errors.DuplicateDatabase:
                pass  # another run created it meanwhile
    async with await psycopg.AsyncConnection.connect(tagged_url(tag), autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
        await conn.execute(f'CREATE SCHEMA "{tag}"')
    return tagged_url(tag)


async def drop_schema(tag: str = TAG) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url(), autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')


def start_watchdog() -> None:
    """VIBE_JOBS_BENCH_DUMP_AFTER=<s> (set by bench/peers.py a little under the run's time-out): after that long,
    write where every asyncio task and thread waits to stderr, so a run that is then killed says why it hung."""
    after = float(os.environ.get("VIBE_JOBS_BENCH_DUMP_AFTER", "0") or 0)
    if after > 0:
        faulthandler.dump_traceback_later(after, exit=False)
        asyncio.get_running_loop().call_later(after, dump_tasks)


def dump_tasks() -> None:
    print(f"--- {TAG}: asyncio tasks still waiting (outermost -> innermost) ---", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"{task.get_name()}: {' -> '.join(awaiting(task.get_coro()))}", file=sys.stderr)
    sys.stderr.flush()


def awaiting(coro: Any) -> list[str]:
    """The chain of coroutines `coro` is suspended in (Task.print_stack shows only the outermost)."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


def hang_requested(system: str) -> bool:
    wanted = {s.strip() for s in os.environ.get("VIBE_JOBS_BENCH_HANG", "").split(",") if s.strip()}
    return system in wanted or "all" in wanted


async def maybe_hang(system: str) -> None:
    """Hang for good when VIBE_JOBS_BENCH_HANG names `system`: idle, holding whatever the run holds."""
    if hang_requested(system):
        print(f"{system}: hanging on purpose (VIBE_JOBS_BENCH_HANG)", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


class FailFast(logging.Handler):
    """Remembers the first error a peer system logs and wakes whoever waits on `failed`.

    saq, arq and procrastinate log a failing worker loop and carry on; a run whose jobs can no longer
    run must fail at once with that error, not wait idle for jobs that never finish.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.first: str | None = None
        self.failed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.first is None:
            self.first = self.format(record)
            self._loop.call_soon_threadsafe(self.failed.set)


def quiet_logging() -> None:
    """Only errors, to stderr (bench/peers.py shows the tail when a run fails)."""
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(name)s: %(message)s")


async def wait_done(done: asyncio.Event, what: str) -> None:
    """Wait until `done`; raise with the first error logged meanwhile by the peer system."""
    watch = FailFast()
    logging.getLogger().addHandler(watch)
    try:
        waiters = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(watch.failed.wait())]
        _finished, pending = await asyncio.wait(waiters, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
    finally:
        logging.getLogger().removeHandler(watch)
    if watch.first is not None:
        raise SystemExit(f"{what}: the worker logged an error: {watch.first}")
    if not done.is_set():
        raise SystemExit(f"{what}: not done after {WAIT_SECONDS:.0f} s")


LOST_CANCELLATIONS = [0]  # how often `finish` had to cancel again (reported in the peer's JSON)


async def finish(main: asyncio.Future[Any], tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for `main` (a worker's stop, or a cancelled task); while it is not done, cancel `tasks` again each second.

    On Python 3.11 a cancellation that arrives as asyncio.wait_for's inner future completes is lost (gh-86296,
    fixed in 3.12). saq's Worker.stop() cancels its tasks once and waits for them without a bound; a `process`
    task waiting for LISTEN notifications (saq's multiplexer: wait_for(queue.get(), 1)) that loses the
    cancellation goes on waiting for good. That hung the saq-postgres peer idle in worker.stop() about once in
    45 runs here; the same single cancel-and-wait is in arq's and procrastinate's shutdown paths.
    """
    while not main.done():
        await asyncio.wait({main}, timeout=1.0)
        running = [t for t in tasks if not t.done()]
        if not main.done() and running:
            LOST_CANCELLATIONS[0] += 1
            print(f"{TAG}: a cancellation was lost; cancelling {len(running)} task(s) again", file=sys.stderr)
            for task in running:
                task.cancel()
    await asyncio.gather(main, return_exceptions=True)


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await finish(task, [task])


async def delete_redis_keys(pattern: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        await redis.aclose()
