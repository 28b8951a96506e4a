"""A lease names its process. On one machine, a process that has ended is known at once and the SQLite
store ends its lease (a restart recovers a killed server's jobs without waiting for the lease); a
live process is never taken for dead; anything unsure (another host, an older row) keeps lease expiry."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store.liveness import ProcessId, has_ended, this_process
from vibe_jobs.store.sqlite import SQLiteStore

HOUR = 3_600_000
PIPE = asyncio.subprocess.PIPE

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start times come from /proc")

# Another process that holds a lease on the same file and runs a job, until its stdin closes.
OWNER = """
import asyncio, sys
from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store.sqlite import SQLiteStore
async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    await store.heartbeat("other", int(sys.argv[2]))
    await store.insert(JobRecord("its-job", "tool", {}, JobStatus.RUNNING, 1, 1, owner="other", attempt=1))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await store.close()
asyncio.run(main())
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{db}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def raw(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """SQL on a connection of our own, as another process would run it."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def now_ms() -> int:
    return int(time.time() * 1000)


async def orphan_ids(store: SQLiteStore, now: int) -> list[str]:
    return [rec.id for rec in await store.orphans(now)]


# -- the process behind a lease ----------------------------------------------------------------


def test_this_process_is_alive() -> None:
    me = this_process()
    assert me.pid == os.getpid() and me.started is not None
    assert not has_ended(me)


def test_a_process_that_exited_has_ended_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    proc = ProcessId(this_process().host, child.pid, None)
    try:
        assert not has_ended(proc)
        assert child.stdin is not None
        child.stdin.close()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left a zombie (not reaped)
        assert has_ended(proc)
    finally:
        child.wait()
    assert has_ended(proc)  # reaped: the pid is gone


def test_a_reused_pid_is_not_the_process_that_held_the_lease() -> None:
    me = this_process()
    assert me.started is not None
    assert has_ended(ProcessId(me.host, me.pid, me.started + 1))


async def ended_pid() -> int:
    """The pid of a process that has run and ended (and was reaped)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    return int(out)


async def test_a_process_of_another_host_is_never_judged_here() -> None:
    pid = await ended_pid()
    assert has_ended(ProcessId(this_process().host, pid, None))
    assert not has_ended(ProcessId("another-machine", pid, None))


# -- the SQLite store's leases -----------------------------------------------------------------


async def test_a_live_owner_here_is_never_dead_and_a_killed_one_is_known_at_once(store: SQLiteStore, db: Path) -> None:
    now = now_ms()
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, f"sqlite:///{db}", str(now + HOUR), stdin=PIPE, stdout=PIPE
    )
    assert owner.stdin is not None and owner.stdout is not None
    try:
        assert await asyncio.wait_for(owner.stdout.readline(), 30) == b"ready\n"
        for _ in range(3):  # asked again and again: alive is alive
            assert await orphan_ids(store, now) == []
        assert raw(db, "SELECT owner, pid FROM leases") == [("other", owner.pid)]
    finally:
        owner.kill()  # SIGKILL: no release of its lease
        await owner.wait()
    assert await orphan_ids(store, now) == ["its-job"]  # its lease had an hour left
    assert raw(db, "SELECT owner FROM leases") == []


async def test_where_the_process_is_unsure_the_lease_runs_to_its_expiry(store: SQLiteStore, db: Path) -> None:
    now, me = now_ms(), this_process()
    assert me.started is not None
    leases: list[tuple[str, int, str | None, int | None, int | None]] = [
        ("elsewhere", now + HOUR, "another-machine", await ended_pid(), 1),  # a pid of another host
        ("older-row", now + HOUR, None, None, None),  # written before leases named their process
        ("reused-pid", now + HOUR, me.host, me.pid, me.started + 1),  # this pid, another process
    ]
    for lease in leases:
        raw(db, "INSERT INTO leases VALUES (?, ?, ?, ?, ?)", lease)
    await store.heartbeat("late", now - 1)  # this very process, but its lease has expired
    for owner in [*(lease[0] for lease in leases), "late"]:
        await store.insert(JobRecord(f"{owner}'s", "tool", {}, JobStatus.RUNNING, 1, 1, owner=owner, attempt=1))
    assert sorted(await orphan_ids(store, now)) == ["late's", "reused-pid's"]
    assert sorted(raw(db, "SELECT owner FROM leases")) == [("elsewhere",), ("late",), ("older-row",)]
