"""The ticker's pass with schedules held by their previous job (overlap queue, that job still pending).

N schedules with `size` bytes of arguments each fire once; their jobs stay pending (no runner), so every
schedule is due and held. The figure is the time of one ticker pass (passes come every second): the wall
time, and the CPU of this process (the SQLite store's own process works on top of that).
Before the store left held schedules out of `due_schedules`, 120 of 1 MB took 1.4 s a pass.

Run: .venv/bin/python bench/ticker.py [N] [SIZE]   (default 120 1000000)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from vibe_jobs import JobManager, Settings
from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.engine.ticker import Ticker
from vibe_jobs.jobtool import make_spec
from vibe_jobs.logs import configure_logging
from vibe_jobs.store.sqlite import SQLiteStore

PASSES = 5


def echo(text: str) -> str:
    return text


async def main(n: int, size: int) -> None:
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="vibe-jobs-bench-") as tmp:
        store = SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}")
        async with JobManager(store, Settings(max_params_bytes=size + 1024)) as manager:
            ticker = Ticker(Schedules(manager, {"echo": make_spec(echo)}))
            spec = {"tool": "echo", "arguments": {"text": "x" * size}, "everySeconds": 1, "overlap": "queue"}
            for _ in range(n):
                await ticker.schedules.create(parse_spec(spec))
            await anyio.sleep(1.1)
            await ticker.tick()  # each fires once: its job stays pending and holds the schedule
            await anyio.sleep(1.1)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(PASSES):
                await ticker.tick()
            wall_ms = (time.perf_counter() - wall) / PASSES * 1000
            cpu_ms = (time.process_time() - cpu) / PASSES * 1000
    print(f"ticker pass with {n} held schedules of {size:,} bytes: {wall_ms:.1f} ms wall, {cpu_ms:.1f} ms CPU")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("schedules", type=int, nargs="?", default=120, help="held schedules (default 120)")
    cli.add_argument("size", type=int, nargs="?", default=1_000_000, help="bytes per schedule (default 1,000,000)")
    args = cli.parse_args()
    anyio.run(main, args.schedules, args.size)
