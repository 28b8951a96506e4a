"""Quotas per principal across processes that share one SQLite file: the count and the insert it admits are one
step in every process at once (before, each process counted on its own, and processes calling at the same moment
each let one more in)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from vibe_jobs import JobManager, Settings
from vibe_jobs.errors import StoreLocked
from vibe_jobs.identity import Viewer
from vibe_jobs.store.base import PRINCIPAL_LOCK_WAIT_MS
from vibe_jobs.store.sqlite import SQLiteStore, principals

pytestmark = pytest.mark.timeout(60)

QUOTA, PROCESSES, CALLS, ROUNDS = 2, 4, 3, 12

# A process creating jobs through the library on the shared file. Each line on stdin starts a round: CALLS jobs
# at once for the principal the line names; one line out answers what each call got (its job id or error code).
_CREATOR = """
import asyncio, json, sys
import anyio
from vibe_jobs import JobManager, Settings
from vibe_jobs.errors import JobError
from vibe_jobs.identity import Viewer
from vibe_jobs.store.sqlite import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    manager = JobManager(store, Settings(quota_pending=int(sys.argv[2])))

    async def create(principal):
        try:
            return await manager.create_job("t", {}, viewer=Viewer(principal))
        except JobError as exc:
            return exc.code

    print("ready", flush=True)
    while line := await anyio.to_thread.run_sync(sys.stdin.readline):
        got = await asyncio.gather(*(create(line.strip()) for _ in range(int(sys.argv[3]))))
        print(json.dumps(got), flush=True)
    await store.close()

asyncio.run(main())
"""


def pending_of(db: Path, principal: str) -> int:
    conn = sqlite3.connect(db)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE principal = ? AND status = 'pending'", (principal,)
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def test_processes_creating_at_once_never_pass_a_pending_quota(tmp_path: Path) -> None:
    """Four processes on one file, each making three calls at once for one principal, round after round (each
    round a new principal, started in every process by one line written to all of them): exactly the quota's
    jobs are stored, every other call is refused `quota_exceeded`. Before, the first round already stored up to
    twelve."""
    db = tmp_path / "jobs.db"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CREATOR, f"sqlite:///{db}", str(QUOTA), str(CALLS),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]  # fmt: skip
    try:
        with anyio.fail_after(40):
            for proc in procs:
                assert proc.stdout is not None
                assert await proc.stdout.readline() == b"ready\n"
            for r in range(ROUNDS):
                principal = f"user-{r}"
                for proc in procs:  # the round starts in every process at once
                    assert proc.stdin is not None
                    proc.stdin.write(f"{principal}\n".encode())
                await asyncio.gather(*(proc.stdin.drain() for proc in procs if proc.stdin is not None))
                got = [
                    outcome
                    for proc in procs
                    if proc.stdout is not None
                    for outcome in json.loads(await proc.stdout.readline())
                ]
                refused = [g for g in got if g == "quota_exceeded"]
                created = [g for g in got if g != "quota_exceeded"]
                stored = pending_of(db, principal)
                assert (stored, len(created), len(refused)) == (QUOTA, QUOTA, PROCESSES * CALLS - QUOTA), (
                    f"round {r}: {stored} stored, answers {got}"
                )
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            with anyio.fail_after(20):
                await proc.wait()


# A process that takes a principal's lock of the shared file and keeps it (as one stopped or killed while it counts)
_HOLDER = """
import asyncio, sys
from vibe_jobs.store.sqlite import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    async with store.principal_lock(sys.argv[2]) as held:
        print(held, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@asynccontextmanager
async def holder_of(db: Path, principal: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, f"sqlite:///{db}", principal, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            assert await proc.stdout.readline() == b"True\n"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process ends only once it runs again
        await proc.wait()


@asynccontextmanager
async def manager_on(db: Path) -> AsyncIterator[JobManager]:
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    try:
        yield JobManager(store, Settings(quota_pending=5))
    finally:
        await store.close()


async def test_a_holder_that_was_killed_holds_no_other_process_up(tmp_path: Path) -> None:
    """The kernel releases the lock of a process that died holding it (SIGKILL: nothing of its own ran): the
    call waiting for it goes on at once, not after the wait's bound."""
    db = tmp_path / "jobs.db"
    async with holder_of(db, "alice") as holder, manager_on(db) as manager:
        with pytest.raises(StoreLocked):  # the holder has it: a look that does not wait is refused
            async with principals.principal_held(str(db), "alice", wait_ms=0):
                raise AssertionError("alice's lock is the holder's")
        async with anyio.create_task_group() as tg:
            created: list[str] = []

            async def create() -> None:
                created.append(await manager.create_job("t", {}, viewer=Viewer("alice")))

            tg.start_soon(create)
            holder.kill()
            await holder.wait()
            killed = time.monotonic()
        assert time.monotonic() - killed < PRINCIPAL_LOCK_WAIT_MS / 1000 / 2
        assert [r.id for r in await manager.store.active(principal="alice")] == created


async def test_a_holder_that_stalled_gets_the_call_refused_after_the_bound_and_nothing_created(
    tmp_path: Path,
) -> None:
    """A process stopped (SIGSTOP) while it holds a principal's lock: another process's call for that principal
    is refused after PRINCIPAL_LOCK_WAIT_MS, saying to try again, and creates nothing; another principal's call
    goes on meanwhile."""
    db = tmp_path / "jobs.db"
    async with holder_of(db, "alice") as holder, manager_on(db) as manager:
        os.kill(holder.pid, signal.SIGSTOP)
        start = time.monotonic()
        bob_took: list[float] = []

        async def bob() -> None:  # another principal is not held up
            await manager.create_job("t", {}, viewer=Viewer("bob"))
            bob_took.append(time.monotonic() - start)

        with anyio.fail_after(PRINCIPAL_LOCK_WAIT_MS / 1000 + 10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(bob)
                with pytest.raises(StoreLocked, match=r"held this caller's quota count for over 5 s.*try again"):
                    await manager.create_job("t", {}, viewer=Viewer("alice"))
        assert PRINCIPAL_LOCK_WAIT_MS / 1000 <= time.monotonic() - start < PRINCIPAL_LOCK_WAIT_MS / 1000 + 3
        assert await manager.store.active(principal="alice") == []
        assert len(await manager.store.active(principal="bob")) == 1 and bob_took[0] < PRINCIPAL_LOCK_WAIT_MS / 1000
