"""A `vibe-jobs worker` survives PostgreSQL restarting under it (a product bug the fault runs found: it exited
with status 2, "the job store at ... failed: ConnectionError", once the store's quick reconnects ran out).

On a PostgreSQL cluster of the test's own (tests/faults/pgcluster.py; the shared server on 5432 is never
touched): a worker runs jobs, PostgreSQL is stopped for longer than the store's reconnect attempts last, in
both ways (`-m fast`, `-m immediate`), and started again; the worker must still be running and run the
jobs submitted after the restart. Slow (a cluster of its own, a worker process); needs PostgreSQL's binaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import ROOT
from tests.faults.pgcluster import PgCluster
from vibe_jobs import JobContext, JobManager, JobStatus, Settings
from vibe_jobs.engine.claims import ClaimSource
from vibe_jobs.jobtool import make_spec
from vibe_jobs.store.postgres import PostgresStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DOWN_SECONDS = 4.0  # longer than the store's own reconnect attempts (0 + 0.05 + 0.2 + 0.5 + 1 s)


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LEASE_SECONDS": "2", "VIBE_JOBS_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "vibe_jobs", "worker", "--store", url, "--tools", "tests.faults.fault_tools",
           "--no-builtin", "--concurrency", "4", "--drain-seconds", "1"]  # fmt: skip
    with log.open("ab") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


async def scenario(cluster: PgCluster, worker: subprocess.Popen[bytes], log: Path, mode: str) -> None:
    """Jobs run on the worker when PostgreSQL goes down; once it is back, the worker still runs and every
    job, those it held through the restart and new ones, finishes completed."""
    store = PostgresStore(cluster.url)
    manager = JobManager(store, Settings())
    await store.open()  # creates the schema
    try:
        first = [await manager.create_job("fj_safe", {"seconds": 0.2}) for _ in range(4)]
        assert [await finished(manager, job_id) for job_id in first] == [JobStatus.COMPLETED] * 4
        held = [await manager.create_job("fj_safe", {"seconds": 2}) for _ in range(4)]
        await anyio.to_thread.run_sync(cluster.shutdown, mode)
        await anyio.sleep(DOWN_SECONDS)  # the fault: PostgreSQL stays down this long
        await anyio.to_thread.run_sync(cluster.start)
        alive(worker, log)
        after = [await manager.create_job("fj_safe", {"seconds": 0.2}) for _ in range(8)]
        statuses = [await finished(manager, job_id) for job_id in [*held, *after]]
        alive(worker, log)
        assert statuses == [JobStatus.COMPLETED] * 12
    finally:
        await store.close()


async def finished(manager: JobManager, job_id: str) -> JobStatus:
    return (await manager.wait(job_id, 60)).status


def alive(worker: subprocess.Popen[bytes], log: Path) -> None:
    assert worker.poll() is None, f"the worker exited with {worker.returncode}: {log.read_text()[-3000:]}"


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_worker_survives_a_postgresql_restart(cluster: PgCluster, tmp_path: Path, mode: str) -> None:
    log = tmp_path / "worker.stderr"
    worker = start_worker(cluster.url, log)
    try:
        anyio.run(scenario, cluster, worker, log, mode)
    finally:
        worker.terminate()
        worker.wait(30)


async def quick(job: JobContext) -> str:
    return "done"


async def test_a_manager_starts_while_postgresql_is_down_after_its_store_opened(cluster: PgCluster) -> None:
    """PostgreSQL goes down between opening the store and the first heartbeat (a process restarted by its
    supervisor just as PostgreSQL restarts): the manager starts anyway and runs jobs once it is back, instead
    of failing its start-up with a store error (exit 2 from the command line)."""
    store = PostgresStore(cluster.url)
    manager = JobManager(store, Settings(lease_ms=2_000))
    ClaimSource(manager, {"quick": make_spec(quick, name="quick")})
    await store.open()
    await anyio.to_thread.run_sync(cluster.shutdown, "fast")
    try:
        async with manager:
            await anyio.to_thread.run_sync(cluster.start)
            job_id = await manager.create_job("quick")
            assert await finished(manager, job_id) is JobStatus.COMPLETED
    finally:
        await anyio.to_thread.run_sync(cluster.start_if_stopped)
