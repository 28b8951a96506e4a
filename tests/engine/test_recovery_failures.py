"""A store that refuses some of recovery's writes (here a SQLite rule refusing the update of chosen jobs) on the
real SQLite store: the pass adopts what it can and answers those it adopted (to be queued); those it could not
adopt stay orphans, for a later beat. It raised before: the jobs it had adopted were this process's, never
queued, and no later pass takes a job of its own, so they waited, pending, until a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vibe_jobs import JobManager, JobRecord, JobStatus, Settings
from vibe_jobs.engine.recovery import recover_orphans
from vibe_jobs.jobtool import make_spec
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.store import JobQuery
from vibe_jobs.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.timeout(60)


def echo(text: str = "") -> str:
    return text


TOOLS = {"echo": make_spec(echo, name="echo", retry_safe=True, max_retries=2)}

REFUSE = """CREATE TRIGGER refuse_{n} BEFORE UPDATE ON jobs WHEN OLD.id = '{job_id}'
BEGIN SELECT RAISE(ABORT, 'refused by a rule of this database'); END"""


def orphan(job_id: str, status: JobStatus, now: int) -> JobRecord:
    rec = JobRecord(job_id, "echo", {"text": job_id}, status, now - 1000, now - 1000)
    rec.owner = "gone"  # a process with no lease
    if status is JobStatus.RUNNING:
        rec.attempt, rec.started_at = 1, now - 500
    return rec


@pytest.mark.parametrize("refused", ["running-1", "pending-2"])
async def test_a_recovery_pass_a_store_write_fails_in_answers_what_it_adopted(tmp_path: Path, refused: str) -> None:
    db = tmp_path / "jobs.db"
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    try:
        manager = JobManager(store, Settings(), owner="here")
        now = manager.now()
        jobs = [orphan(f"running-{i}", JobStatus.RUNNING, now) for i in range(3)]
        jobs += [orphan(f"pending-{i}", JobStatus.PENDING, now) for i in range(4)]
        for rec in jobs:
            await store.insert(rec)
        rule = sqlite3.connect(db)
        rule.execute(REFUSE.format(n=0, job_id=refused))
        rule.commit()
        rule.close()

        recovered = await recover_orphans(manager, TOOLS, RetryPolicy())

        answered = {rec.id for rec in recovered.adopted}
        everything = {rec.id: rec for rec in await store.query(JobQuery(limit=100))}
        ours_pending = {i for i, rec in everything.items() if rec.owner == "here" and rec.status is JobStatus.PENDING}
        assert ours_pending == answered  # every job made ours and pending is answered, to be queued
        assert everything[refused].owner == "gone"  # not adopted: an orphan still, for a later beat
        assert everything["running-0"].owner == "here"  # the others were adopted
        assert (await manager.statistics()).health.status != "healthy"  # health names the failure
    finally:
        await store.close()
