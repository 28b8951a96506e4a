"""The fault-injection harness: run the real product under a nemesis, then check the history.

    python -m tests.faults.run [--flavour cluster|sqlite|both] [--seed N] [--seconds S] [--kills K]
                               [--rate JOBS_PER_S] [--break fencing|limit] [--out DIR]

cluster: a PostgreSQL cluster of the run's own (pgcluster.py), 2 `vibe-jobs serve --no-worker
--transport streamable-http` replicas and 3 `vibe-jobs worker`s (each reaching the database through
a proxy the nemesis can cut), clients submitting through both replicas, the nemesis for `seconds`.
sqlite: one `vibe-jobs serve` on a SQLite file, SIGKILLed `kills` times under load.
Then: faults healed, submissions stopped, every acknowledged job read until final, the job table
and the audit dumped, the checker run. Prints the table; exit status 1 when there is a violation.

`--break` loads a test-only module into the job-running processes that disables one safeguard
(break_fencing.py, break_limit.py), to show that the checker catches it.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from tests.e2e.conftest import free_port
from tests.faults import audit
from tests.faults.check import Violation, check
from tests.faults.facts import derive
from tests.faults.fault_tools import EXEC_LOG_ENV, SAFE_RETRIES
from tests.faults.history import EXEC_LOG, HISTORY, HistoryWriter, load
from tests.faults.nemesis import Nemesis
from tests.faults.pgcluster import PgCluster
from tests.faults.procs import Slot
from tests.faults.proxy import Proxies
from tests.faults.report import table
from tests.faults.workload import Body, FinalReads, Session, Workload, canceller, final_reads, reader, submitter

BREAKS = {"fencing": "tests.faults.break_fencing", "limit": "tests.faults.break_limit"}
TOOLS = ["--tools", "tests.faults.fault_tools", "--no-builtin"]
FINAL_SECONDS = 240.0  # reading every job to the end after the faults stop


@dataclass
class Config:
    flavour: str  # cluster | sqlite
    seed: int
    out: Path
    seconds: float = 90.0  # cluster: how long the nemesis runs
    kills: int = 20  # sqlite: how many kills
    rate: float = 15.0  # submissions per second
    lease: float = 2.0
    slack: float = 4.0
    limit: int = 8
    worker_concurrency: int = 4
    brk: str | None = None

    def env(self) -> dict[str, str]:
        return {
            "VIBE_JOBS_LEASE_SECONDS": f"{self.lease:g}", "JOB_MANAGER_MAX_CONCURRENT": str(self.limit),
            EXEC_LOG_ENV: str(self.out / EXEC_LOG), "VIBE_JOBS_LOG_LEVEL": "info", "VIBE_JOBS_LOG_FORMAT": "json",
            "JOB_MANAGER_MAX_RETENTION": str(86_400_000), "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }  # fmt: skip

    def tools(self) -> list[str]:
        return [*TOOLS, *(["--tools", BREAKS[self.brk]] if self.brk else [])]


@dataclass
class Harness:
    cfg: Config
    history: HistoryWriter
    slots: list[Slot] = field(default_factory=list)

    def slot(self, name: str, args: list[str], port: int | None = None) -> Slot:
        s = Slot(name, args, self.cfg.env(), self.cfg.out, self.history, port)
        self.slots.append(s)
        return s

    def meta(self, **values: Any) -> None:
        c = self.cfg
        self.history.emit(
            "harness", "meta", None, flavour=c.flavour, seed=c.seed, seconds=c.seconds, kills=c.kills, rate=c.rate,
            lease=c.lease, slack=c.slack, limit=c.limit, safe_retries=SAFE_RETRIES, processes=len(self.slots),
            **{"break": c.brk}, **values,
        )  # fmt: skip

    async def monitor(self) -> None:
        """Restart (and log) any process that exits without being killed: the run goes on, the checker counts it."""
        while True:
            await anyio.sleep(0.5)
            for s in self.slots:
                if (code := s.exited_unexpectedly()) is not None:
                    why = s.exit_reason()
                    self.history.emit("harness", "proc-exit", None, process_name=s.name, pid=s.pid, code=code, last=why)
                    s.start()

    def stop_all(self) -> None:
        for s in self.slots:
            s.stop()


def sessions(work: Workload, url: str, prefix: str, bodies: list[tuple[str, Body]]) -> list[Callable[[], Any]]:
    return [partial(Session(f"{prefix}/{name}", url, work).run, body) for name, body in bodies]


CLIENTS: list[tuple[str, Body]] = [
    ("submitter-0", submitter), ("submitter-1", submitter), ("submitter-2", submitter), ("reader", reader),
    ("canceller", canceller),
]  # fmt: skip


async def drive(h: Harness, work: Workload, urls: dict[str, str], faults: Callable[[], Awaitable[None]]) -> None:
    """The workload under the faults; then, faults healed, every acknowledged job read until final."""
    async with anyio.create_task_group() as outer:
        outer.start_soon(h.monitor)
        async with anyio.create_task_group() as tg:
            for name, url in urls.items():
                for client in sessions(work, url, name, CLIENTS):
                    tg.start_soon(client)
            await faults()
            work.stopping = True
        work.final = FinalReads(list(work.acked), time.monotonic() + FINAL_SECONDS)
        async with anyio.create_task_group() as tg:
            for name, url in urls.items():
                for client in sessions(work, url, name, [(f"final-{i}", final_reads) for i in range(3)]):
                    tg.start_soon(client)
        outer.cancel_scope.cancel()


async def wait_store_final(count_unfinished: Callable[[], Awaitable[int]], seconds: float) -> int:
    """Poll the store (bounded) until no job is pending or running; answers how many still are."""
    deadline = time.monotonic() + seconds
    while True:
        left = await count_unfinished()
        if not left or time.monotonic() > deadline:
            return left
        await anyio.sleep(0.5)


# -- the cluster on PostgreSQL -------------------------------------------------------------------


UNFINISHED = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"


async def run_cluster(cfg: Config, history: HistoryWriter) -> None:
    pg = PgCluster(free_port())
    try:
        await anyio.to_thread.run_sync(pg.init)
        await anyio.to_thread.run_sync(pg.start)
        await prepare_postgres(pg.url)
        proxies = Proxies(pg.port)
        try:
            await cluster_under_faults(cfg, history, pg, proxies)
        finally:
            proxies.close()
    finally:
        await anyio.to_thread.run_sync(pg.remove, cfg.out)


async def prepare_postgres(url: str) -> None:
    """The product's schema (the store creates it on open), then the audit, before any job exists."""
    from vibe_jobs.store.postgres import PostgresStore

    store = PostgresStore(url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        await audit.install_postgres(conn)
    finally:
        await conn.close()


def cluster_slots(h: Harness, pg: PgCluster, proxies: Proxies) -> Nemesis:
    """2 replicas straight to PostgreSQL, 3 workers each through a proxy of its own; the nemesis over them."""
    cfg = h.cfg
    nemesis = Nemesis(h.history, random.Random(cfg.seed), cfg.lease, pg=pg, proxies=proxies)
    for i in range(2):
        port, url = free_port(), f"{pg.url}?application_name=vjf-replica-{i}"
        args = ["serve", "--no-worker", "--transport", "streamable-http", "--port", str(port), "--store", url]
        nemesis.replicas.append(h.slot(f"replica-{i}", [*args, *TOOLS], port))
    for i in range(3):
        port = free_port()
        proxies.add(port)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres?application_name=vjf-worker-{i}"
        args = ["worker", "--store", url, "--concurrency", str(cfg.worker_concurrency), "--drain-seconds", "1"]
        nemesis.workers.append(h.slot(f"worker-{i}", [*args, *cfg.tools()]))
        nemesis.proxy_port[f"worker-{i}"] = port
    return nemesis


async def cluster_under_faults(cfg: Config, history: HistoryWriter, pg: PgCluster, proxies: Proxies) -> None:
    h = Harness(cfg, history)
    nemesis = cluster_slots(h, pg, proxies)
    try:
        await start_all(h)
        h.meta(pg_port=pg.port)
        work = Workload(history, cfg.seed, cfg.rate, int(cfg.rate * cfg.seconds))
        urls = {s.name: server_url(s) for s in nemesis.replicas}
        await drive(h, work, urls, lambda: nemesis.run_cluster(cfg.seconds))
        conn = await asyncpg.connect(pg.url)
        try:
            await wait_store_final(lambda: conn.fetchval(UNFINISHED), 120)
            history.emit("harness", "end", None)
            await audit.dump_postgres(conn, cfg.out)
        finally:
            await conn.close()
    finally:
        h.stop_all()


async def start_all(h: Harness) -> None:
    for s in h.slots:
        s.start()
    for s in h.slots:
        await anyio.to_thread.run_sync(s.wait_ready)


# -- one server on SQLite --------------------------------------------------------------------------


def _sqlite_unfinished(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(UNFINISHED).fetchone()[0])
    finally:
        conn.close()


async def run_sqlite(cfg: Config, history: HistoryWriter) -> None:
    db = cfg.out / "jobs.db"
    h = Harness(cfg, history)
    port = free_port()
    args = ["serve", "--transport", "streamable-http", "--port", str(port), "--store", f"sqlite:///{db}"]
    server = h.slot("server", [*args, *cfg.tools()], port)
    try:
        await start_all(h)
        audit.install_sqlite(db)
        h.meta()
        nemesis = Nemesis(history, random.Random(cfg.seed), cfg.lease)
        work = Workload(history, cfg.seed, cfg.rate, int(cfg.rate * cfg.kills * 3.0))
        await drive(h, work, {"server": server_url(server)}, lambda: nemesis.run_sqlite(server, cfg.kills))
        await wait_store_final(lambda: anyio.to_thread.run_sync(_sqlite_unfinished, db), 120)
        history.emit("harness", "end", None)
    finally:
        h.stop_all()
    audit.dump_sqlite(db, cfg.out)


def server_url(slot: Slot) -> str:
    return f"http://127.0.0.1:{slot.port}/mcp"


# -- entry points ----------------------------------------------------------------------------------


def run(cfg: Config) -> tuple[list[Violation], str]:
    """Run one flavour into cfg.out and check it: (violations, the table)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    history = HistoryWriter(cfg.out / HISTORY)
    try:
        anyio.run(run_cluster if cfg.flavour == "cluster" else run_sqlite, cfg, history)
    finally:
        history.close()
    facts = derive(load(cfg.out))
    violations = check(facts)
    return violations, table(facts, violations)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--flavour", choices=["cluster", "sqlite", "both"], default="both")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seconds", type=float, default=90.0, help="cluster: how long the nemesis runs")
    p.add_argument("--kills", type=int, default=20, help="sqlite: how many times the server is killed")
    p.add_argument("--rate", type=float, default=15.0, help="jobs submitted per second")
    p.add_argument("--break", dest="brk", choices=sorted(BREAKS), help="disable a safeguard (shows the checker fail)")
    p.add_argument("--out", type=Path, help="the run directory (default: a new one under the temp dir)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    base = args.out or Path(tempfile.mkdtemp(prefix=f"vj-faults-{args.seed}-"))
    flavours = ["cluster", "sqlite"] if args.flavour == "both" else [args.flavour]
    failed = False
    for flavour in flavours:
        limit = 8 if flavour == "cluster" else 4
        cfg = Config(flavour, args.seed, base / flavour, args.seconds, args.kills, args.rate, limit=limit, brk=args.brk)
        violations, text = run(cfg)
        print(f"{text}\n\nhistory: {cfg.out}  (python -m tests.faults.check {cfg.out})\n", flush=True)
        failed = failed or bool(violations)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
