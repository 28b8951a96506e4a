"""The dashboard's HTTP surfaces at scale: time per request and the longest the event loop is held meanwhile.

Part 1 (`--part pages`): N retained jobs (memory store and SQLite, inserted directly) and a few with large results
(`--big` of `--big-mb` MB of text each); the dashboard alone (`dashboard_app`) under uvicorn in this process, a loop
probe (a task sleeping 0.5 ms and noting how late it wakes) beside it, and a client in a thread (its own loop does
not hold the server's) that GETs each path R times: the list pages (filters too), a job page (a large result and a
small one), /metrics, /healthz, /readyz and /events (until its first `stats` event). Each row: the median ms a
request, the longest the loop was held while they ran (ms), and the bytes of one answer.

Part 2 (`--part storm`): J running jobs report progress (`JobManager.update_progress`) as fast as the store takes
them, up to `--rate` a second, for `--seconds`, while one /events client reads and one never reads (its socket's
buffers full, its stream blocked in `send`). Figures: reports a second, the longest loop hold, events buffered for the
stalled reader's subscription, and the process's RSS before and after; another process GETs /healthz every 10 ms
meanwhile (how long a request waits for the loop).

Part 3 (`--part streams`): `--readers` /events streams (curl) open on N retained jobs: the store's counts a second
(each stream reads the statistics every 2 s) and another client's job page meanwhile, against no stream.

2026-12-06 (helper-133): streams, 100,000 jobs, 64 readers: SQLite 2.3 counts/s (1.0 with none: concurrent reads
share one count, `shared.SharedCall`), a job page median 2.0 ms (2.1 with none); memory 5.4 / 1.0 counts/s, 2.3 / 1.9
ms. Figures before / after in bench/MEASUREMENTS.md: storm, 2,000 running jobs, 6,018 / 9,994
reports a second reached of 10,000 asked, /healthz meanwhile median 20.3 / 2.6 ms; pages at 100,000 jobs, memory:
`/?status=running` 108 / 1.0 ms, a job page with a 10 MB result 10.5 MB / 168 kB, 199 / 71 ms.

Run: .venv/bin/python bench/dashboard_load.py [--jobs 100000] [--part pages|storm|both] [--stores memory,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2 as httpx
import uvicorn
from dashboard import fill, free_port, until_started

from vibe_jobs import JobManager, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.models import JobRecord
from vibe_jobs.server.http.dashboard import Dashboard, dashboard_app
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.base import JobQuery
from vibe_jobs.store.sqlite import SQLiteStore

MIB = 1024 * 1024


class LoopProbe:
    """The longest the event loop was held (a 0.5 ms sleep woke that much late), since `reset`."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await anyio.sleep(0.0005)
            self.worst = max(self.worst, time.perf_counter() - t0 - 0.0005)

    def reset(self) -> None:
        self.worst = 0.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def big_record(i: int, now: int, mb: int) -> JobRecord:
    rec = JobRecord(f"big{i:04d}" + "0" * 24, "echo", {"big": i}, JobStatus.COMPLETED, now + i, now + i)
    rec.started_at, rec.finished_at, rec.attempt, rec.progress_percentage = now, now + 5, 1, 100.0
    rec.result = {"content": [{"type": "text", "text": ("x" * 1023 + "\n") * (mb * 1024)}], "isError": False}
    return rec


def running_record(i: int, now: int) -> JobRecord:
    rec = JobRecord(f"run{i:05d}" + "0" * 23, "sleepy", {"r": i}, JobStatus.RUNNING, now + 1000 + i, now + 1000 + i)
    rec.started_at, rec.attempt = now, 1
    return rec


def client_times(base: str, path: str, rounds: int, stream_until: str | None = None) -> tuple[float, int]:
    """Median ms of `rounds` GETs of `path` and the bytes of the last answer (a stream: read until `stream_until`)."""
    times, size = [], 0
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(rounds + 2):
            t0 = time.perf_counter()
            if stream_until is None:
                answer = http.get(path)
                assert answer.status_code == 200, (path, answer.status_code)
                size = len(answer.content)
            else:
                with http.stream("GET", path) as answer:
                    size = 0
                    for line in answer.iter_lines():
                        size += len(line)
                        if line.startswith(stream_until):
                            break
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[2:]), size


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    return await anyio.to_thread.run_sync(fn, *args)


async def pages(kind: str, store: JobStore, n: int, big: int, big_mb: int, rounds: int) -> None:
    await store.open()
    await fill(store, n)
    now = int(time.time() * 1000)
    for i in range(big):
        await store.insert(big_record(i, now, big_mb))
    for i in range(10):
        await store.insert(running_record(i, now))
    small = (await store.query(JobQuery(limit=1)))[0].id
    await store.close()
    manager = JobManager(store, Settings(max_result_bytes=64 * MIB))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(dashboard_app(Dashboard(manager)), port=port, log_level="warning"))
    base = f"http://127.0.0.1:{port}"
    probe = LoopProbe()
    paths = [
        ("/", None),
        ("/?status=running", None),
        ("/?status=failed", None),
        ("/?tool=echo", None),
        (f"/jobs/{small}", None),
        (f"/jobs/{big_record(0, now, 0).id}", None),
        ("/metrics", None),
        ("/healthz", None),
        ("/readyz", None),
        ("/events", "event: stats"),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until_started(server)
        tg.start_soon(probe.run)
        print(f"\n{kind}, {n:,} jobs + {big} of {big_mb} MB results + 10 running:")
        print(f"  {'path':48} {'median ms':>10} {'loop held ms':>13} {'answer bytes':>13}")
        for path, until in paths:
            await in_thread(client_times, base, path, 2, until)  # warm
            probe.reset()
            ms, size = await in_thread(client_times, base, path, rounds, until)
            print(f"  {path[:48]:48} {ms:10.1f} {probe.worst * 1000:13.1f} {size:13,}")
        server.should_exit = True
        tg.cancel_scope.cancel()


def stalled_reader(port: int) -> socket.socket:
    """A client that asks for /events and never reads: its receive buffer as small as the kernel allows."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def reading_client(base: str, out: Path) -> subprocess.Popen[bytes]:
    """A client that reads /events as fast as they come, in its own process (curl: no share of this one's GIL)."""
    with out.open("wb") as sink:
        return subprocess.Popen(["curl", "-sN", f"{base}/events"], stdout=sink)


PROBE = """
import http.client, statistics, sys, time
port, until, path = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), sys.argv[3]
times = []
while time.monotonic() < until:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t = time.perf_counter()
    c.request("GET", path)
    c.getresponse().read()
    times.append((time.perf_counter() - t) * 1000)
    c.close()
    time.sleep(0.01)
print(f"{statistics.median(times):.1f} {max(times):.1f} {len(times)}")
"""


def other_requests(port: int, seconds: float, path: str = "/healthz") -> subprocess.Popen[str]:
    """Another client's requests meanwhile (GET `path` every 10 ms, from its own process): how long each waits."""
    command = [sys.executable, "-c", PROBE, str(port), str(seconds), path]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


async def streams(kind: str, store: JobStore, n: int, readers: int, seconds: float) -> None:
    """`readers` /events streams open on N retained jobs: what they cost the store (statistics every 2 s each) and
    another client's job page meanwhile."""
    await store.open()
    await fill(store, n)
    job_id = (await store.query(JobQuery(limit=1)))[0].id
    await store.close()
    manager = JobManager(store, Settings())
    calls = [0]
    counts = store.counts

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return await counts(*args, **kwargs)

    store.counts = counted  # type: ignore[method-assign]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(dashboard_app(Dashboard(manager)), port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until_started(server)
        for label, opened in (("no stream", 0), (f"{readers} /events streams", readers)):
            tmp = Path(tempfile.mkdtemp(prefix="vj-bench-dl-"))
            clients = [reading_client(f"http://127.0.0.1:{port}", tmp / f"{i}.txt") for i in range(opened)]
            await anyio.sleep(2.5)  # every stream past its first statistics
            probe, calls[0], t0 = other_requests(port, seconds, f"/jobs/{job_id}"), 0, time.perf_counter()
            median_ms, worst_ms, asked = (await anyio.to_thread.run_sync(probe.communicate))[0].split()
            rate = calls[0] / (time.perf_counter() - t0)
            print(
                f"{kind}, {n:,} jobs, {label}: store counts {rate:.1f}/s; another client's job page ({asked}):"
                f" median {median_ms} ms, at most {worst_ms} ms"
            )
            for client in clients:
                client.terminate()
                client.wait()
        server.should_exit = True
        tg.cancel_scope.cancel()


def count_events(reader: subprocess.Popen[bytes], out: Path) -> int:
    reader.terminate()
    reader.wait()
    return out.read_bytes().count(b"event: job")


async def storm(kind: str, store: JobStore, jobs: int, rate: int, seconds: float) -> None:
    manager = JobManager(store, Settings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(dashboard_app(Dashboard(manager)), port=port, log_level="warning"))
    probe = LoopProbe()
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until_started(server)
        now = manager.now()
        ids = []
        for i in range(jobs):
            rec = running_record(i, now)
            await store.insert(rec)
            ids.append(rec.id)
        sock = stalled_reader(port)
        out = Path(tempfile.mkdtemp(prefix="vj-bench-dl-")) / "events.txt"
        reader = reading_client(f"http://127.0.0.1:{port}", out)
        while manager.bus.subscriber_count < 2:  # noqa: ASYNC110 (no event tells of a new subscriber)
            await anyio.sleep(0.01)
        tg.start_soon(probe.run)
        others = other_requests(port, seconds - 0.5)
        rss0, cpu0, t0 = rss_mb(), time.process_time(), time.perf_counter()
        reports, warm = 0, True
        deadline = t0 + seconds
        while (t := time.perf_counter()) < deadline:
            if warm and t > t0 + 0.5:  # the first half second: the reading client's first imports hold the GIL
                probe.reset()
                warm = False
            behind = int((t - t0) * rate) - reports
            for _ in range(min(behind, 20)):  # a few (as job tasks report, each in its turn), then the loop's
                await manager.update_progress(ids[reports % jobs], (reports // jobs) % 100, f"step {reports}")
                reports += 1
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - t0
        median_ms, worst_ms, asked = (await anyio.to_thread.run_sync(others.communicate))[0].split()
        buffered = [len(sub._buffer) for sub in manager.bus._all]
        dropped = [sub.dropped for sub in manager.bus._all]
        print(
            f"\n{kind}: {jobs} running jobs, asked {rate:,}/s for {seconds:g} s:\n"
            f"  reports/s {reports / elapsed:,.0f}; server CPU {(time.process_time() - cpu0) / reports * 1e6:.1f} us a"
            f" report; loop held at most {probe.worst * 1000:.1f} ms\n"
            f"  another client's GET /healthz meanwhile ({asked}): median {median_ms} ms, at most {worst_ms} ms\n"
            f"  events read by the reading client {count_events(reader, out):,}; buffered per /events subscription"
            f" {buffered},"
            f" dropped {dropped}\n  RSS {rss0:.1f} -> {rss_mb():.1f} MB"
        )
        sock.close()
        server.should_exit = True
        tg.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=3)
    ap.add_argument("--big-mb", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--part", default="both", choices=("pages", "storm", "both", "streams"))
    ap.add_argument("--readers", type=int, default=64, help="/events streams open (--part streams)")
    ap.add_argument("--stores", default="memory,sqlite")
    ap.add_argument("--running", type=int, default=2000, help="running jobs reporting in the storm")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    configure_logging("warning")
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="vj-bench-dl-") as tmp:

            def make(kind: str = kind, tmp: str = tmp) -> JobStore:
                return (
                    MemoryStore() if kind == "memory" else SQLiteStore(f"sqlite:///{Path(tmp) / os.urandom(4).hex()}")
                )

            if args.part in ("pages", "both"):
                anyio.run(pages, kind, make(), args.jobs, args.big, args.big_mb, args.rounds)
            if args.part == "streams":
                anyio.run(streams, kind, make(), args.jobs, args.readers, args.seconds)
            if args.part in ("storm", "both"):
                anyio.run(storm, kind, make(), args.running, args.rate, args.seconds)


if __name__ == "__main__":
    main()
