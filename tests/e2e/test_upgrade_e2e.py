"""Upgrades: this version's server opens a SQLite file (or a PostgreSQL schema) that an older vibe-jobs wrote and
was killed on (jobs finished, running, waiting on a question, queued, pending on a dependency; a schedule), each kept
in tests/fixtures/upgrade as a SQL dump made with that version by scripts/old_store_fixture.py.

Every job is there and listed; a finished one reads as the old server answered it; queued ones run; running ones
are recovered as this version recovers a killed server's (a job safe to run again runs again, one not safe fails
as interrupted); the file is at this version's schema step."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.conftest import BASE_ENV, ROOT, free_port, stop, wait_for_port
from tests.e2e.upgrade_tools import MARK_ENV
from tests.pg import postgres_url
from vibe_jobs.engine.recovery import INTERRUPTED, WORKER_LOST
from vibe_jobs.store import liveness
from vibe_jobs.store.postgres import schema as pg_schema
from vibe_jobs.store.sqlite.schema import SCHEMA_VERSION

FIXTURES = ROOT / "tests" / "fixtures" / "upgrade"
PLACEHOLDER = "SCHEMA_NAME"  # the PostgreSQL dumps' schema
# the fixtures' finished jobs are older than the default retention (an hour) at every run but the first: kept
KEEP_FINISHED = {"JOB_MANAGER_MAX_RETENTION": str(10 * 365 * 86_400_000)}
# A fixture's schedule (every hour, misfire: run once) is made two hours older, as if the upgrade came that long
# after the old server stopped: its firing is due at every run of the test, not only at runs an hour after the
# fixture was made (it counts its ticks from its creation)
DUE = "UPDATE schedules SET " + ", ".join(f"{c} = {c} - 7200000" for c in ("created_at", "updated_at", "next_fire_at"))
# (store, revision): its schema step. 447a0cc: the first SQLite store on main, 83b1458: the first PostgreSQL one;
# e3048ff: questions and schedules; 32bde7a: the step before the last
REVISIONS = {
    ("sqlite", "447a0cc"): 1, ("sqlite", "e3048ff"): 10, ("sqlite", "32bde7a"): 13,
    ("postgres", "83b1458"): 1, ("postgres", "e3048ff"): 11, ("postgres", "32bde7a"): 13,
}  # fmt: skip
FINAL = ("completed", "failed", "cancelled")
# what a finished job's answer keeps across the upgrade (reads, timestamps and polling advice move on)
# (the first store's server answered a job that never reported progress with progress null, this one with 0)
KEPT = ("jobId", "toolName", "status", "message", "details", "result", "createdAt")


def restore_sqlite(rev: str, db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.executescript((FIXTURES / f"sqlite-{rev}.sql").read_text())
        assert conn.execute("PRAGMA user_version").fetchone() == (REVISIONS["sqlite", rev],)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schedules'").fetchone():
            conn.execute(DUE)


async def restore_postgres(rev: str, url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / f"postgres-{rev}.sql").read_text().replace(PLACEHOLDER, schema))
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schedules"):
            await conn.execute(DUE.replace("schedules", f"{schema}.schedules"))
        step = await conn.fetchval(f"SELECT max(version) FROM {schema}.vibe_jobs_migrations")
        assert step == REVISIONS["postgres", rev]
    finally:
        await conn.close()


async def schema_step(url: str, schema: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT max(version) FROM {schema}.vibe_jobs_migrations"))
    finally:
        await conn.close()


async def drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await pg_schema.drop_schema(conn, schema)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def server_on(store: str, mark: Path) -> Any:
    args = ["-m", "vibe_jobs", "serve", "--store", store, "--tools", "tests.e2e.upgrade_tools"]
    env = {"PATH": "", **BASE_ENV, **KEEP_FINISHED, MARK_ENV: str(mark)}
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with (mark.parent / "server.err").open("w") as errlog:
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


async def listed(client: Client) -> set[str]:
    return {job["id"] for job in (await call(client, "list-jobs", {"limit": 100}))["jobs"]}


async def until_listed(client: Client, known: set[str]) -> set[str]:
    """The jobs listed besides `known`, once there is one."""
    with anyio.fail_after(10):
        while not (new := await listed(client) - known):  # noqa: ASYNC110
            await anyio.sleep(0.05)  # the schedule's ticker fires in the server: there is no event to wait on here
    return new


def said(answer: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in answer["result"]["content"])


@pytest.mark.parametrize(("kind", "rev"), REVISIONS, ids=[f"{kind}-{rev}" for kind, rev in REVISIONS])
async def test_a_store_an_older_version_was_killed_on_opens_with_every_job(kind: str, rev: str, tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    mark.touch()  # a job run again finishes at once
    if kind == "sqlite":
        db = tmp_path / "jobs.db"
        restore_sqlite(rev, db)
        await upgraded(kind, rev, f"sqlite:///{db}", mark)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return
    url, schema = postgres_url("the PostgreSQL upgrade tests"), f"vj_upgrade_{os.urandom(6).hex()}"
    await restore_postgres(rev, url, schema)
    try:
        await upgraded(kind, rev, f"{url}{'&' if '?' in url else '?'}schema={schema}", mark)
        assert await schema_step(url, schema) == pg_schema.SCHEMA_VERSION
    finally:
        await drop(url, schema)


async def upgraded(kind: str, rev: str, store: str, mark: Path) -> None:
    """This version's server on `store`, restored from the fixture of (kind, rev): every job as it should be."""
    made = json.loads((FIXTURES / f"{kind}-{rev}.json").read_text())
    jobs, before = made["jobs"], made["answers"]
    interrupted = INTERRUPTED if kind == "sqlite" else WORKER_LOST
    async with server_on(store, mark) as client:
        assert await listed(client) >= set(jobs.values())
        after = {key: await finished(client, job) for key, job in jobs.items()}
        if made["schedule"] is not None:  # it fires once (its one firing due), as a job of its own
            fired = await until_listed(client, set(jobs.values()))
            assert len(fired) == 1 and said(await finished(client, fired.pop())).startswith('{"tag":"scheduled"')
        else:
            assert await listed(client) == set(jobs.values())
        for key in ("done", "failed", "cancelled", "cancelled_queued"):
            assert {f: after[key].get(f) for f in KEPT} == {f: before[key].get(f) for f in KEPT}, key
            assert after[key].get("progress") == (before[key].get("progress") or 0), key
        for key in ("queued", "queued2", "dependent"):
            assert after[key]["status"] == "completed" and f'"tag":"{key}"' in said(after[key]), after[key]
        for key in ("running_safe", "running_safe2"):
            assert after[key]["status"] == "completed" and said(after[key]) == f"released {key}", after[key]
        assert after["running"]["status"] == "failed" and interrupted in said(after["running"]), after["running"]
        if before["asking"].get("waitingFor"):  # waiting on a question (not safe to run again): interrupted
            assert after["asking"]["status"] == "failed" and interrupted in said(after["asking"]), after["asking"]
        else:  # (a version without questions: a job safe to run again in its place)
            assert rev in ("447a0cc", "83b1458") and after["asking"]["status"] == "completed"
        if made["schedule"] is not None:
            schedules = await call(client, "list-schedules", {})
            assert made["schedule"] in json.dumps(schedules)


@contextlib.contextmanager
def servers_at_once(store: str, mark: Path, count: int) -> Iterator[list[str]]:
    """`count` servers on `store`, all started before any is waited for (they open and migrate it together)."""
    ports = [free_port() for _ in range(count)]
    env = {**os.environ, **BASE_ENV, **KEEP_FINISHED, MARK_ENV: str(mark)}
    args = ["--store", store, "--tools", "tests.e2e.upgrade_tools", "--transport", "streamable-http", "--port"]
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", *args]
    out = mark.parent / "servers.out"
    with out.open("w") as outlog, (mark.parent / "servers.err").open("w") as errlog:
        procs = [subprocess.Popen([*cmd, str(port)], cwd=ROOT, env=env, stdout=outlog, stderr=errlog) for port in ports]
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_for_port(port, proc)
            yield [f"http://127.0.0.1:{port}/mcp" for port in ports]
        finally:
            for proc in procs:
                stop(proc)
    assert out.read_text() == ""  # nothing on stdout (a failed migration's traceback went there once elsewhere)


@pytest.mark.parametrize(("kind", "rev"), [("sqlite", "447a0cc"), ("postgres", "83b1458")], ids=["sqlite", "postgres"])
async def test_servers_started_together_on_an_old_store_migrate_it_once_and_serve_every_job(
    kind: str, rev: str, tmp_path: Path
) -> None:
    mark = tmp_path / "mark"
    mark.touch()
    made = json.loads((FIXTURES / f"{kind}-{rev}.json").read_text())
    if kind == "sqlite":
        restore_sqlite(rev, tmp_path / "jobs.db")
        store = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url, schema = postgres_url("the PostgreSQL upgrade tests"), f"vj_upgrade_{os.urandom(6).hex()}"
        await restore_postgres(rev, url, schema)
        store = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    try:
        with servers_at_once(store, mark, 2) as urls:
            for url_ in urls:
                async with Client(url_, read_timeout_seconds=30) as client:
                    assert await listed(client) >= set(made["jobs"].values())
                    done = await finished(client, made["jobs"]["queued"])
                    assert done["status"] == "completed", done
        if kind == "postgres":
            conn = await asyncpg.connect(url)
            try:
                steps = await conn.fetch(f"SELECT version FROM {schema}.vibe_jobs_migrations ORDER BY version")
            finally:
                await conn.close()
            assert [row[0] for row in steps] == list(range(1, pg_schema.SCHEMA_VERSION + 1))
        else:
            with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as conn_:
                assert conn_.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
                assert conn_.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        if kind == "postgres":
            await drop(url, schema)


def _serve_until_exit(store: str, mark: Path) -> subprocess.CompletedProcess[str]:
    """`vibe-jobs serve` on `store` over stdio with no client (its stdin at end): it exits once open, or refusing."""
    args = [sys.executable, "-m", "vibe_jobs", "serve", "--store", store, "--tools", "tests.e2e.upgrade_tools"]
    env = {"PATH": "", **BASE_ENV, **KEEP_FINISHED, MARK_ENV: str(mark)}
    return subprocess.run(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def _older_process_leasing(db: Path, owner: str) -> subprocess.Popen[bytes]:
    """The SQLite fixture e3048ff at `db`, with a live lease of a process of this machine (which is returned)."""
    restore_sqlite("e3048ff", db)
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    row = (owner, int(time.time() * 1000) + 120_000, liveness.this_process().host, older.pid)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("INSERT INTO leases (owner, expires_at, host, pid) VALUES (?, ?, ?, ?)", row)
    return older


@dataclasses.dataclass
class _Older:
    """A store of the fixture (kind, e3048ff) with a live lease of an older server: on SQLite a process of this
    machine (it ends: killed), on PostgreSQL a lease of another machine (it stops: its lease is released)."""

    kind: str
    store: str
    owner: str
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    schema: str = ""

    async def end(self) -> None:
        if self.process is not None:
            self.process.kill()
            await anyio.to_thread.run_sync(self.process.wait)
        else:
            await _execute(self.url, f"DELETE FROM {self.schema}.leases WHERE owner = $1", self.owner)

    async def step(self) -> int:
        if self.process is not None:
            with contextlib.closing(sqlite3.connect(self.store.removeprefix("sqlite:///"))) as conn:
                return int(conn.execute("PRAGMA user_version").fetchone()[0])
        return await schema_step(self.url, self.schema)


async def _older_server_on(kind: str, tmp_path: Path, owner: str) -> _Older:
    if kind == "sqlite":
        db = tmp_path / "jobs.db"
        return _Older(kind, f"sqlite:///{db}", owner, process=_older_process_leasing(db, owner))
    url, schema = postgres_url("the PostgreSQL upgrade tests"), f"vj_upgrade_{os.urandom(6).hex()}"
    await restore_postgres("e3048ff", url, schema)
    live = f"INSERT INTO {schema}.leases (owner, expires_at) VALUES ($1, {pg_schema.NOW_MS} + 120000)"
    await _execute(url, live, owner)
    return _Older(kind, f"{url}{'&' if '?' in url else '?'}schema={schema}", owner, url=url, schema=schema)


async def _execute(url: str, statement: str, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_store_an_older_server_still_runs_on_is_not_upgraded_under_it(kind: str, tmp_path: Path) -> None:
    """A newer server upgraded a store while a server of the older version still ran on it: the older one went on
    writing to a schema it did not know (a version from before step 11 fired a schedule's tick twice). The newer
    one now refuses, naming the older server and what to do, and changes nothing; once the older one is gone
    (stopped, or killed on this machine) it upgrades the store and serves."""
    mark, owner = tmp_path / "mark", "vibe-jobs@older-host:4242:0badc0de"
    mark.touch()
    older = await _older_server_on(kind, tmp_path, owner)
    before = await older.step()
    try:
        refused = await anyio.to_thread.run_sync(_serve_until_exit, older.store, mark)
        assert refused.returncode != 0 and refused.stdout == "", (refused.returncode, refused.stdout)
        assert owner in refused.stderr and "older vibe-jobs" in refused.stderr and "Traceback" not in refused.stderr
        assert await older.step() == before  # not a statement of the upgrade ran
        await older.end()
        served = await anyio.to_thread.run_sync(_serve_until_exit, older.store, mark)
        assert served.returncode == 0, served.stderr[-2000:]
        assert await older.step() == (SCHEMA_VERSION if kind == "sqlite" else pg_schema.SCHEMA_VERSION) > before
    finally:
        if kind == "postgres":
            await drop(older.url, older.schema)
        else:
            await older.end()


async def test_an_older_server_is_seen_on_a_file_whose_name_a_uri_would_read_otherwise(tmp_path: Path) -> None:
    """The look for older servers opened the file as a URI: a name with '#' (a fragment) or '%' (an escape) named
    another file, the look found no schema step there, and the store was upgraded under the older server."""
    mark, owner = tmp_path / "mark", "vibe-jobs@older-host:4242:0badc0de"
    mark.touch()
    for name in ("jobs#1.db", "jobs%41.db"):
        db = tmp_path / name
        older = _Older("sqlite", f"sqlite:///{db}", owner, process=_older_process_leasing(db, owner))
        try:
            refused = await anyio.to_thread.run_sync(_serve_until_exit, older.store, mark)
            assert refused.returncode == 2 and owner in refused.stderr, (name, refused.returncode, refused.stderr)
            assert await older.step() == REVISIONS["sqlite", "e3048ff"]
        finally:
            await older.end()
