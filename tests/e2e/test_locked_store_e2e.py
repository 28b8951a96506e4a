"""Another process holding the SQLite file's write lock (a `vibe-jobs jobs purge`, a backup tool, a second
server's long transaction) costs a reader of `vibe-jobs serve` neither a finished job's result nor its figures."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from mcp import Client

from tests.e2e.conftest import HttpServer, http_client_for
from tests.e2e.test_health_metrics_e2e import serve_store
from tests.e2e.test_jobs_e2e import start, structured, texts

pytestmark = pytest.mark.timeout(120)


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's connection holds the SQLite file's write lock meanwhile."""
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@asynccontextmanager
async def client_on(busy_timeout: float) -> AsyncIterator[tuple[Client, Path]]:
    """A client of `vibe-jobs serve` on a new SQLite file waiting `busy_timeout` s for a lock, and the file."""
    with tempfile.TemporaryDirectory(prefix="vj-locked-") as tmp:
        db = Path(tmp) / "jobs.db"
        with serve_store(f"sqlite:///{db}?busy_timeout={busy_timeout}") as (port, _pid):
            async with http_client_for(HttpServer("streamable-http", port, None, None), "auto") as client:  # type: ignore[arg-type]
                yield client, db


async def test_a_finished_job_and_the_figures_are_read_while_another_process_holds_the_write_lock() -> None:
    """get-job-result records each read (a write): it waited out the busy time-out and failed with "the database
    is locked by another process", and job-stats failed with "Error executing tool job-stats"."""
    async with client_on(0.5) as (client, db):
        job_id = await start(client, "echo", {"text": "kept"})
        done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
        assert structured(done)["status"] == "completed"
        with write_lock(db):
            read = await client.call_tool("get-job-result", {"jobId": job_id})
            stats = await client.call_tool("job-stats", {})
    assert not read.is_error, texts(read)
    assert structured(read)["status"] == "completed" and "kept" in texts(read)
    assert not stats.is_error, texts(stats)
    health = structured(stats)["health"]
    assert health["status"] != "healthy" and any("locked" in reason for reason in health["reasons"]), health


async def test_a_store_failure_is_told_to_a_caller_by_its_condition_without_the_store_s_place() -> None:
    """A call the store failed answered with the store's own message: its file path here, on PostgreSQL its host,
    port and schema and the driver's words (whose DETAIL may quote a row) — the operator's, not a caller's
    (helper-114's note). The caller is told the condition and what to do; the code stays `store_error`."""
    async with client_on(0.3) as (client, db):
        with write_lock(db):  # no job can be stored
            refused = await client.call_tool("echo", {"text": "not stored"})
        listed = await client.call_tool("list-jobs", {})
    assert refused.is_error
    said = texts(refused)
    assert said.startswith("The job store is locked by another process") and "Try again" in said, said
    assert str(db.parent) not in said and "jobs.db" not in said and "sqlite" not in said.lower(), said
    assert structured(refused)["error"]["code"] == "store_error"
    assert structured(listed)["jobs"] == [], "the refused call stored a job"


async def test_health_stays_degraded_when_the_store_works_again_just_after_failing() -> None:
    """A transient store failure (the write lock held by another process) was cleared by the next write that
    worked, a moment later: a store failing every other write made health flap between healthy and degraded at
    each one, and a monitor polling it saw healthy half the time. Now the failure stays reported until the store has
    worked for STORE_CALM_MS after it."""
    async with client_on(0.3) as (client, db):
        with write_lock(db):  # the job cannot be stored
            assert (await client.call_tool("echo", {"text": "not stored"})).is_error
        job_id = await start(client, "echo", {"text": "stored"})  # its start and outcome: writes that work
        done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
        assert structured(done)["status"] == "completed"
        stats = await client.call_tool("job-stats", {})
    health = structured(stats)["health"]
    assert health["status"] == "degraded", health
    assert any("the job store failed" in reason and "locked" in reason for reason in health["reasons"]), health
