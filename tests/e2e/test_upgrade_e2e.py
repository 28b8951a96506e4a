"""Upgrades: this version's server opens a SQLite file that an older vibe-jobs wrote and was killed on (jobs
finished, running, waiting on a question, queued, pending on a dependency; a schedule), each kept in
tests/fixtures/upgrade as a SQL dump made with that version by scripts/old_store_fixture.py.

Every job is there and listed; a finished one reads as the old server answered it; queued ones run; running ones
are recovered as this version recovers a killed server's (a job safe to run again runs again, one not safe fails
as interrupted); the file is at this version's schema step."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT
from tests.e2e.upgrade_tools import MARK_ENV
from vibe_jobs.engine.recovery import INTERRUPTED
from vibe_jobs.store.sqlite.schema import SCHEMA_VERSION

FIXTURES = ROOT / "tests" / "fixtures" / "upgrade"
# revision: its SQLite schema step (447a0cc: the first store on main; e3048ff: step 10, questions and schedules;
# 32bde7a: the step before the last)
REVISIONS = {"447a0cc": 1, "e3048ff": 10, "32bde7a": 13}
FINAL = ("completed", "failed", "cancelled")
# what a finished job's answer keeps across the upgrade (reads, timestamps and polling advice move on)
# (the first store's server answered a job that never reported progress with progress null, this one with 0)
KEPT = ("jobId", "toolName", "status", "message", "details", "result", "createdAt")


def restore(rev: str, db: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.executescript((FIXTURES / f"sqlite-{rev}.sql").read_text())
        assert conn.execute("PRAGMA user_version").fetchone() == (REVISIONS[rev],)
    made: dict[str, Any] = json.loads((FIXTURES / f"sqlite-{rev}.json").read_text())
    return made


@contextlib.asynccontextmanager
async def server_on(db: Path, mark: Path) -> Any:
    args = ["-m", "vibe_jobs", "serve", "--store", f"sqlite:///{db}", "--tools", "tests.e2e.upgrade_tools"]
    env = {"PATH": "", **BASE_ENV, MARK_ENV: str(mark)}
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with (db.parent / "server.err").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=30) as client:
            yield client


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    answer = await client.call_tool(tool, args)
    assert answer.structured_content is not None, answer.content
    return dict(answer.structured_content)


async def finished(client: Client, job: str) -> dict[str, Any]:
    for _ in range(20):
        answer = await call(client, "get-job-result", {"jobId": job, "waitSeconds": 1})
        if answer["status"] in FINAL:
            return answer
    raise AssertionError(f"not finished: {answer}")


def said(answer: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in answer["result"]["content"])


@pytest.mark.parametrize("rev", REVISIONS)
async def test_a_file_an_older_version_was_killed_on_opens_with_every_job(rev: str, tmp_path: Path) -> None:
    db, mark = tmp_path / "jobs.db", tmp_path / "mark"
    made = restore(rev, db)
    mark.touch()  # a job run again finishes at once
    jobs, before = made["jobs"], made["answers"]
    async with server_on(db, mark) as client:
        listed = {job["id"] for job in (await call(client, "list-jobs", {"limit": 100}))["jobs"]}
        assert listed == set(jobs.values())
        after = {key: await finished(client, job) for key, job in jobs.items()}
        for key in ("done", "failed", "cancelled", "cancelled_queued"):
            assert {f: after[key].get(f) for f in KEPT} == {f: before[key].get(f) for f in KEPT}, key
            assert after[key].get("progress") == (before[key].get("progress") or 0), key
        for key in ("queued", "queued2", "dependent"):
            assert after[key]["status"] == "completed" and f'"tag":"{key}"' in said(after[key]), after[key]
        for key in ("running_safe", "running_safe2"):
            assert after[key]["status"] == "completed" and said(after[key]) == f"released {key}", after[key]
        assert after["running"]["status"] == "failed" and INTERRUPTED in said(after["running"]), after["running"]
        if rev != "447a0cc":  # a job waiting on a question (not safe to run again) is a running one, interrupted
            assert before["asking"]["waitingFor"] and after["asking"]["status"] == "failed", after["asking"]
            assert INTERRUPTED in said(after["asking"])
        if made["schedule"] is not None:
            schedules = await call(client, "list-schedules", {})
            assert made["schedule"] in json.dumps(schedules)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
