"""The dashboard's jobs page at 100,000 retained jobs, on the memory store and on SQLite.

The store is filled with N finished and pending jobs (inserted directly: the figure is the page, not the
fill), the dashboard alone (`server/http`, the app `vibe-jobs dashboard` serves) runs under uvicorn on a
free port, and a client GETs pages over HTTP: the first page, a status filter, a tool filter, and the
tenth page through the cursor. Each figure is the median of R requests (after 5 warm-up ones).
Goal: under 50 ms per page at 100,000 jobs.

Run: .venv/bin/python bench/dashboard.py [N] [--json]
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import common
import httpx2 as httpx
import uvicorn
from common import Row, row

from vibe_jobs import JobManager, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.models import JobRecord
from vibe_jobs.server.http.dashboard import Dashboard, dashboard_app
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore
from vibe_jobs.testing.ports import free_port

GOAL_MS = 50.0
TOOLS = ("map-codebase", "run-command", "echo", "sleepy")
RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


def record(i: int, now: int) -> JobRecord:
    status = JobStatus.PENDING if i % 50 == 0 else JobStatus.FAILED if i % 17 == 0 else JobStatus.COMPLETED
    rec = JobRecord(os.urandom(16).hex(), TOOLS[i % len(TOOLS)], {"i": i}, status, now - 10 * i, now - 10 * i)
    if status is not JobStatus.PENDING:
        rec.started_at, rec.finished_at, rec.result = now - 10 * i, now - 10 * i + 5, RESULT
        rec.progress_percentage, rec.attempt = 100.0, 1
    return rec


async def fill(store: JobStore, n: int) -> None:
    now = int(time.time() * 1000)
    async with anyio.create_task_group() as tg:  # concurrent inserts: the SQLite store group-commits them

        async def insert(lo: int) -> None:
            for i in range(lo, min(n, lo + 1000)):
                await store.insert(record(i, now))

        for lo in range(0, n, 1000):
            tg.start_soon(insert, lo)


async def timed(http: httpx.AsyncClient, path: str, rounds: int) -> tuple[float, str]:
    for _ in range(5):
        answer = await http.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        answer = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), answer.text


async def until_started(server: uvicorn.Server) -> None:
    for _ in range(400):  # uvicorn sets `started` and offers no event to wait on: poll it, bounded
        if server.started:
            return
        await anyio.sleep(0.05)
    raise TimeoutError("uvicorn did not start within 20 s")


async def measure_store(kind: str, store: JobStore, n: int, rounds: int) -> list[Row]:
    await store.open()
    await fill(store, n)
    await store.close()
    manager = JobManager(store, Settings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(dashboard_app(Dashboard(manager)), port=port, log_level="warning"))
    rows: list[Row] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until_started(server)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            first_ms, text = await timed(http, "/", rounds)
            assert len(re.findall(r"<tr data-job=", text)) == 50
            cursor = "/"
            for _ in range(9):
                found = re.search(r'rel="next" href="([^"]+)"', (await http.get(cursor)).text)
                assert found is not None
                cursor = found.group(1).replace("&amp;", "&")
            pages = {
                "first page": first_ms,
                "status=failed": (await timed(http, "/?status=failed", rounds))[0],
                "tool=echo": (await timed(http, "/?tool=echo", rounds))[0],
                "10th page (cursor)": (await timed(http, cursor, rounds))[0],
            }
        server.should_exit = True
    for name, ms in pages.items():
        rows.append(
            row(
                "dash", f"jobs page, {kind}, {n:,} jobs: {name}", "ms", [ms], goal=f"< {GOAL_MS:g} ms", met=ms < GOAL_MS
            )
        )
    return rows


def bench_rows(quick: bool) -> list[Row]:
    configure_logging("warning")
    n = 10_000 if quick else int(next((a for a in sys.argv[1:] if a.isdigit()), "100000"))
    rounds = 20 if quick else 50
    rows = anyio.run(measure_store, "memory", MemoryStore(), n, rounds)
    with tempfile.TemporaryDirectory(prefix="vj-bench-dash-") as tmp:
        rows += anyio.run(measure_store, "SQLite", SQLiteStore(f"sqlite:///{Path(tmp) / 'jobs.db'}"), n, rounds)
    return rows


if __name__ == "__main__":
    common.cli(bench_rows)
