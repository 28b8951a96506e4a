"""`vibe-jobs worker` and `vibe-jobs serve` live through PostgreSQL going away again and again (a product bug
the long fault run found: a worker and a replica exited with status 1, a `StoreUnavailable` escaping one of
their background loops while PostgreSQL restarted).

On a PostgreSQL cluster of the test's own (tests/faults/pgcluster.py; the shared server on 5432 is never
touched): two workers and one MCP replica (`serve --no-worker`) run while jobs are submitted, and
PostgreSQL is restarted over and over, in both ways (`-m fast`, `-m immediate`), at once and after
being down for longer than the lease (every lease lapses: each process then adopts the others' jobs as
orphans while PostgreSQL keeps restarting under it). Every process must still be running afterwards, the
replica still serving HTTP, and every job must reach a final state. Slow; needs PostgreSQL's binaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import ROOT, free_port, wait_for_port
from tests.faults.pgcluster import PgCluster
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.store.postgres import PostgresStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

LEASE = 2.0
# (shutdown mode, seconds down): quick restarts, crashes, and outages longer than the lease, each one
# followed at once by the next, so that restarts come while the processes recover from the last one
OUTAGES = [
    ("fast", 0.5), ("immediate", 0.0), ("immediate", LEASE + 2), ("immediate", 0.0), ("fast", 0.0),
    ("immediate", LEASE + 1), ("fast", 0.3), ("immediate", 0.0), ("immediate", LEASE + 3), ("fast", 0.0),
]  # fmt: skip
JOBS_PER_ROUND = 6
FINAL_SECONDS = 120.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> str | None:
        """None while it runs, else what it said on its way out."""
        if self.popen.poll() is None:
            return None
        return f"{self.name} exited with {self.popen.returncode}:\n{self.log.read_text()[-4000:]}"


def start(name: str, args: list[str], directory: Path) -> Proc:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LEASE_SECONDS": f"{LEASE:g}",
           "VIBE_JOBS_LOG_FORMAT": "json"}  # fmt: skip
    cmd = [sys.executable, "-m", "vibe_jobs", *args, "--tools", "tests.faults.fault_tools", "--no-builtin"]
    log = directory / f"{name}.stderr"
    with log.open("ab") as err:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    return Proc(name, popen, log)


def wait_started(proc: Proc, marker: str, seconds: float = 60) -> None:
    """Until `proc` logged `marker` (it opened the store and runs): a process that cannot open the store as
    it starts exits (status 2) by design, so the outages begin once every process is past its start."""
    deadline = time.monotonic() + seconds
    while marker not in proc.log.read_text():
        assert proc.alive() is None, proc.alive()
        assert time.monotonic() < deadline, f"{proc.name} did not start within {seconds:g} s"
        time.sleep(0.05)


def assert_alive(procs: list[Proc]) -> None:
    dead = [why for proc in procs if (why := proc.alive()) is not None]
    assert not dead, "\n\n".join(dead)


async def some_running(store: PostgresStore, seconds: float = 30) -> None:
    """Poll (bounded) until a job runs: the next outage comes while jobs run."""
    deadline = time.monotonic() + seconds
    while (await store.counts()).get(JobStatus.RUNNING, 0) == 0:
        assert time.monotonic() < deadline, "no job started running"
        await anyio.sleep(0.05)


async def outages(cluster: PgCluster, procs: list[Proc]) -> list[str]:
    """Submit jobs, restart PostgreSQL while they run, OUTAGES times; answer the jobs' ids."""
    store = PostgresStore(cluster.url)
    manager = JobManager(store, Settings())
    await store.open()
    jobs: list[str] = []
    try:
        for mode, down in OUTAGES:
            jobs += [await manager.create_job("fj_safe", {"seconds": 1.0}) for _ in range(JOBS_PER_ROUND)]
            await some_running(store)
            await anyio.to_thread.run_sync(cluster.shutdown, mode)
            await anyio.sleep(down)  # the fault: PostgreSQL stays down this long
            await anyio.to_thread.run_sync(cluster.start)
            assert_alive(procs)
    finally:
        await store.close()
    return jobs


async def final_statuses(cluster: PgCluster, jobs: list[str]) -> dict[str, JobStatus]:
    store = PostgresStore(cluster.url)
    manager = JobManager(store, Settings())
    await store.open()
    try:
        return {job_id: (await manager.wait(job_id, FINAL_SECONDS)).status for job_id in jobs}
    finally:
        await store.close()


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        return int(answer.status)


def test_workers_and_a_replica_live_through_postgresql_restarting(cluster: PgCluster, tmp_path: Path) -> None:
    port = free_port()
    serve = ["serve", "--no-worker", "--transport", "streamable-http", "--port", str(port), "--store", cluster.url]
    worker = ["worker", "--store", cluster.url, "--concurrency", "4", "--drain-seconds", "1"]
    procs = [start("replica", serve, tmp_path), *(start(f"worker-{i}", worker, tmp_path) for i in range(2))]
    try:
        wait_for_port(port, procs[0].popen, 60)
        for proc in procs[1:]:
            wait_started(proc, '"worker.started"')
        jobs = anyio.run(outages, cluster, procs)
        statuses = anyio.run(final_statuses, cluster, jobs)
        assert_alive(procs)
        unfinished = {job_id: s for job_id, s in statuses.items() if not s.finished}
        assert not unfinished, f"{len(unfinished)} of {len(jobs)} jobs never finished: {unfinished}"
        assert healthz(port) == 200
    finally:
        for proc in procs:
            proc.popen.terminate()
        for proc in procs:
            proc.popen.wait(30)
