"""Make an upgrade fixture: jobs in every state written by an older vibe-jobs, as a small SQL dump.

    .venv/bin/python scripts/old_store_fixture.py REV [REV ...]
    .venv/bin/python scripts/old_store_fixture.py --postgres postgresql://postgres@127.0.0.1:5432/test REV [REV ...]

For each revision: a worktree of it (in a temporary directory), its `vibe-jobs serve` on a new SQLite file with
this checkout's .venv and `--tools tests.e2e.upgrade_tools`; through the real MCP client it makes a job completed
with a result, one failed, one cancelled while running, one cancelled while queued, three running (one not safe to
run again, two safe) with progress and a stage, one waiting on a question and a schedule (where the revision has
them), one pending on a dependency and two queued behind the concurrency limit; then SIGKILL. The file is dumped to
tests/fixtures/upgrade/sqlite-REV.sql (with its PRAGMA user_version), and what get-job-result answered before the
kill to sqlite-REV.json. With --postgres, the store is a new schema of that database instead, dumped by pg_dump
(INSERTs, the schema's name written SCHEMA_NAME) to postgres-REV.sql and .json, and the schema dropped.
tests/e2e/test_upgrade_e2e.py opens each with this version's server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "upgrade"
FINAL = ("completed", "failed", "cancelled")
PLACEHOLDER = "SCHEMA_NAME"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(src: Path, store: str, cwd: Path, mark: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}", "VIBE_JOBS_LOG_LEVEL": "warning",
           "VIBE_JOBS_TEST_UPGRADE_MARK": str(mark), "JOB_MANAGER_MAX_CONCURRENT": "4"}  # fmt: skip
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", store, "--tools",
           "tests.e2e.upgrade_tools", "--transport", "streamable-http", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server of {src} did not start")


async def call(c: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    answer = await c.call_tool(tool, args)
    assert answer.structured_content is not None, answer.content
    return dict(answer.structured_content)


async def until(c: Client, job: str, cond: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while not cond(answer := await call(c, "get-job-result", {"jobId": job})):
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    return answer


def until_file(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, path
        time.sleep(0.05)


async def scenario(url: str, mark: Path) -> dict[str, Any]:
    jobs: dict[str, str] = {}
    async with Client(url, read_timeout_seconds=30) as c:
        tools = {t.name for t in (await c.list_tools()).tools}

        async def submit(key: str, tool: str, **opts: Any) -> str:
            jobs[key] = str((await call(c, "submit-job", {"tool": tool, **opts}))["jobId"])
            return jobs[key]

        await submit("done", "rich", arguments={"tag": "done"}, priority="high", batchId="b1")
        await submit("failed", "explode", arguments={"message": "boom ✓"})
        await submit("cancelled", "hold", arguments={"tag": "cancelled"})
        for key in ("done", "failed"):
            await until(c, jobs[key], lambda r: r["status"] in FINAL)
        until_file(Path(f"{mark}.cancelled"))
        await call(c, "cancel-job", {"jobId": jobs["cancelled"]})
        await until(c, jobs["cancelled"], lambda r: r["status"] == "cancelled")
        for key, tool in (("running", "hold"), ("running_safe", "hold_safe"), ("running_safe2", "hold_safe")):
            await submit(key, tool, arguments={"tag": key})
            until_file(Path(f"{mark}.{key}"))
        await submit("dependent", "rich", arguments={"tag": "dependent"}, dependsOn=[jobs["running_safe"]])
        if "answer-job" in tools:
            await submit("asking", "ask", arguments={"tag": "asking"})
            await until(c, jobs["asking"], lambda r: r.get("waitingFor"))
        else:
            await submit("asking", "hold_safe", arguments={"tag": "asking"})  # fills the last place the same
            until_file(Path(f"{mark}.asking"))
        await submit("queued", "rich", arguments={"tag": "queued"}, priority="low")
        await submit("queued2", "rich", arguments={"tag": "queued2"}, priority="critical")
        await submit("cancelled_queued", "rich", arguments={"tag": "cancelled_queued"})
        await call(c, "cancel-job", {"jobId": jobs["cancelled_queued"]})
        schedule = None
        if "schedule-job" in tools:
            args = {"tool": "rich", "arguments": {"tag": "scheduled"}, "everySeconds": 3600}
            schedule = str((await call(c, "schedule-job", args))["scheduleId"])
        for key in ("running", "running_safe", "running_safe2"):
            await until(c, jobs[key], lambda r: r.get("progress") == 40)
        answers = {key: await call(c, "get-job-result", {"jobId": job}) for key, job in jobs.items()}
    return {"jobs": jobs, "answers": answers, "schedule": schedule}


def dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (step,) = conn.execute("PRAGMA user_version").fetchone()
        return f"PRAGMA user_version = {step};\n" + "\n".join(conn.iterdump()) + "\n"


def pg_dump(postgres: str, schema: str) -> str:
    cmd = ["pg_dump", "--schema", schema, "--no-owner", "--no-privileges", "--inserts", postgres]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    # comments, blank lines and psql's own commands (\restrict) left out: the text runs as one query string
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("--", "\\"))]
    drop = ["psql", "-q", postgres, "-c", f"SET client_min_messages = warning; DROP SCHEMA {schema} CASCADE"]
    subprocess.run(drop, check=True)
    return "\n".join(lines).replace(schema, PLACEHOLDER) + "\n"


def make(rev: str, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="vj-fixture-") as tmp:
        tree, db, mark = Path(tmp) / "tree", Path(tmp) / "jobs.db", Path(tmp) / "mark"
        schema = f"vj_fixture_{os.urandom(4).hex()}"
        store = f"{postgres}?schema={schema}" if postgres else f"sqlite:///{db}"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), rev], check=True)
        try:
            proc, url = start(tree / "src", store, Path(tmp), mark)
            try:
                made = asyncio.run(scenario(url, mark))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            time.sleep(0.5)  # the killed server's SQLite process ends with it (parent-death signal)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)
        OUT.mkdir(parents=True, exist_ok=True)
        kind = "postgres" if postgres else "sqlite"
        (OUT / f"{kind}-{rev}.sql").write_text(pg_dump(postgres, schema) if postgres else dump(db))
        (OUT / f"{kind}-{rev}.json").write_text(json.dumps(made, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    postgres = sys.argv[2] if sys.argv[1:2] == ["--postgres"] else None
    for rev in sys.argv[3 if postgres else 1 :]:
        make(rev, postgres)
