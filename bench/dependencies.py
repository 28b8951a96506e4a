"""Dependencies at scale, in-process, at N and 10N: fan-in (one job depending on N), fan-out (N jobs depending on
one), a chain of N, a chain whose root fails (dependency-failed down it) and a chain whose root is cancelled.

Each shape prints the time to create it and the time from its root's end (completed, failed, cancelled) to the
last job's final state. Memory and SQLite run the in-process queue (`LocalSource`); PostgreSQL the claims
(`ClaimSource`), in a schema of its own that is dropped after.

2026-12-06 (helper-124), load 5-6: the PostgreSQL claim passes every dependency-blocked pending job on each claim
(16.7 ms a claim behind 10,000 of them, 3.9 ms behind 1,000): a chain of 200 ran in 0.5 s, of 2,000 in 66 s.

2026-12-06 (helper-131), load 4-7 on 2 cores, A/B runs alternating the code before and after schema step 15 (pending
jobs a dependency holds back flagged `blocked`, left out of the claim's index, released by the completing writer):
root's end -> last final, two rounds: chain 150 before 1.27, 2.46 s, after 1.13, 0.50 s; chain 1,500 before 85.9,
78.4 s, after 14.8, 4.4 s; fan-out 200 before 0.64, 0.19 s, after 0.61, 0.20 s; fan-out 2,000 before 5.18, 3.06 s,
after 6.60, 3.57 s (over all ten rounds, with the steps to this code: before 2.3-10.1 s, after 1.9-9.3 s).

Run: .venv/bin/python bench/dependencies.py [--store memory|sqlite|postgres] [--postgres URL] [--shapes a,b] [N]
     (default memory, N 500; shapes fanin,fanout,chain,failchain,cancel)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import anyio

from vibe_jobs import JobManager, NonRetryableError, Settings, TaskSpec
from vibe_jobs.engine.sources import make_source
from vibe_jobs.jobtool import make_spec
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import JobStore, MemoryStore, open_store
from vibe_jobs.store.sqlite import SQLiteStore

SHAPES = ("fanin", "fanout", "chain", "failchain", "cancel")
DEADLINE = 900.0


class Gate:
    def __init__(self) -> None:
        self.open = anyio.Event()

    async def held(self) -> str:
        await self.open.wait()
        return "ok"

    async def boom(self) -> None:
        await self.open.wait()
        raise NonRetryableError("boom")


async def noop() -> str:
    return "ok"


async def shape(manager: JobManager, gate: Gate, name: str, n: int) -> str:
    async def final(ids: list[str]) -> None:
        for job_id in ids:
            await manager.wait(job_id, DEADLINE)

    started = time.perf_counter()
    if name == "fanin":
        deps = [await manager.create_job("held", {}) for _ in range(n)]
        created = time.perf_counter()
        last = await manager.create_job("noop", {}, task=TaskSpec(dependencies=deps))
        joined = time.perf_counter()
        gate.open.set()
        await final([last])
        return (
            f"create {n:,} jobs {created - started:.2f} s, the one depending on them"
            f" {1000 * (joined - created):.0f} ms; their release -> its end {time.perf_counter() - joined:.2f} s"
        )
    root = await manager.create_job("boom" if name == "failchain" else "held", {})
    ids, prev = [], root
    for _ in range(n):
        prev = await manager.create_job("noop", {}, task=TaskSpec(dependencies=[root if name == "fanout" else prev]))
        ids.append(prev)
    created = time.perf_counter()
    if name == "cancel":
        await manager.cancel_job(root, "not needed")
    else:
        gate.open.set()
    await final(ids)
    last = await manager.get_record(ids[-1])
    ended = time.perf_counter() - created
    return f"create {created - started:.2f} s; root's end -> last final {ended:.2f} s ({last.status.value})"


async def run(kind: str, url: str | None, name: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
        store: JobStore
        if kind == "memory":
            store = MemoryStore()
        elif kind == "sqlite":
            store = SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}")
        else:
            assert url is not None
            store = open_store(f"{url}{'&' if '?' in url else '?'}schema=bench_{os.urandom(4).hex()}")
        gate = Gate()
        manager = JobManager(store, Settings(max_pending=10 * n + 100, max_concurrent=50))
        tools = (make_spec(gate.held, name="held"), make_spec(gate.boom, name="boom"), make_spec(noop, name="noop"))
        make_source(manager, {spec.name: spec for spec in tools})
        try:
            async with manager:
                print(f"{kind} {name} N={n:,}: {await shape(manager, gate, name, n)}", flush=True)
        finally:
            await store.close()
            if kind == "postgres":
                await store.drop_schema()  # type: ignore[attr-defined]


async def main(kind: str, url: str | None, shapes: list[str], n: int) -> None:
    configure_logging("critical")
    for name in shapes:
        for count in (n, 10 * n):
            await run(kind, url, name, count)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--store", choices=("memory", "sqlite", "postgres"), default="memory")
    cli.add_argument("--postgres", help="PostgreSQL URL (with --store postgres)")
    cli.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    cli.add_argument("n", type=int, nargs="?", default=500, help="jobs per shape (then 10x as many; default 500)")
    args = cli.parse_args()
    if args.store == "postgres" and not args.postgres:
        cli.error("--store postgres needs --postgres URL")
    chosen = [s for s in args.shapes.split(",") if s]
    if unknown := set(chosen) - set(SHAPES):
        cli.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    anyio.run(main, args.store, args.postgres, chosen, args.n)
