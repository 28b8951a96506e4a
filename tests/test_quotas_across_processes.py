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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import anyio.lowlevel
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
            with suppress(ProcessLookupError):  # already reaped (asyncio's watcher waits for it)
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


async def test_calls_queued_in_one_process_behind_a_stalled_holder_are_all_refused_within_two_bounds(
    tmp_path: Path,
) -> None:
    """Calls of one principal made at once in one process wait for each other before they wait for the store's
    lock: behind a holder stopped in another process, each waited its own bound after those before it, so the
    k-th call was refused after about k x PRINCIPAL_LOCK_WAIT_MS (20 s for the fourth here). Every call is
    refused within two bounds now (its wait in the process, then the store's), and nothing is created."""
    db = tmp_path / "jobs.db"
    bound = PRINCIPAL_LOCK_WAIT_MS / 1000
    async with holder_of(db, "alice") as holder, manager_on(db) as manager:
        os.kill(holder.pid, signal.SIGSTOP)
        start = time.monotonic()
        took: list[float] = []

        async def alice() -> None:
            with pytest.raises(StoreLocked, match="try again"):
                await manager.create_job("t", {}, viewer=Viewer("alice"))
            took.append(time.monotonic() - start)

        with anyio.fail_after(5 * bound + 10):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(alice)
        assert len(took) == 4 and max(took) < 2 * bound + 2, took
        assert await manager.store.active(principal="alice") == []


# -- waiting in line (sqlite.principals: a holder that has waited LINE_AFTER holds a ticket, a byte of the lock file) --


def locks_on(path: str) -> int:
    """How many locks the kernel lists (/proc/locks) on the file at `path`: a holder's, and each waiting one's
    ticket."""
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as listing:
        return sum(line.split()[5] == ident for line in listing if "->" not in line)


def stopped(pid: int) -> bool:
    """Whether the process `pid` is stopped (its state in /proc, after its name in parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


async def until(check: Callable[[], bool]) -> None:
    """Poll `check` with a deadline (the kernel's locks and a process's state have no event to wait on)."""
    with anyio.fail_after(20):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def in_line(db: Path, locks: int) -> Callable[[], bool]:
    """Whether `locks` locks are held on `db`'s lock file (the holder's and the tickets of those in line)."""
    return lambda: locks_on(principals.lock_path(str(db))) >= locks


needs_byte_ranges = pytest.mark.skipif(not principals.BYTE_RANGES, reason="a line needs byte-range locks (Linux)")


@needs_byte_ranges
async def test_a_holder_waiting_in_line_takes_the_lock_before_any_that_came_after_it(tmp_path: Path) -> None:
    """Waiting is polling, yet in turn: once a holder has waited LINE_AFTER it is in line, and nobody who came
    after it takes the lock first, however often they try (here a holder whose attempts follow each other, as the
    creates of a busy process do: each gives it up and at once asks again). Before, such a process took the lock
    again and again while another process's wait, pauses of up to 16 ms between attempts, reached seconds (two
    holders in this one process stand for two processes: each has an open file description of its own)."""
    db = tmp_path / "jobs.db"
    took: list[str] = []
    asked, first_took = anyio.Event(), anyio.Event()

    async def first() -> None:
        async with principals.principal_held(str(db), "alice", wait_ms=60_000):
            took.append("first")
            first_took.set()

    async def later() -> None:
        while True:
            asked.set()
            async with principals.principal_held(str(db), "alice", wait_ms=60_000):
                took.append("later")
                await anyio.lowlevel.checkpoint()  # a holder's work: others run meanwhile

    async with anyio.create_task_group() as tg:
        async with principals.principal_held(str(db), "alice"):
            tg.start_soon(first)
            await until(in_line(db, 2))  # the holder's lock and the ticket of `first`
            tg.start_soon(later)
            await asked.wait()
        with anyio.fail_after(20):
            await first_took.wait()
        tg.cancel_scope.cancel()
    assert took[0] == "first", took


# A process waiting for a principal's lock of the shared file; it says when it took it
_WAITER = """
import asyncio, sys
from vibe_jobs.store.sqlite import principals

async def main():
    async with principals.principal_held(sys.argv[1], sys.argv[2], wait_ms=600_000):
        print("took", flush=True)

asyncio.run(main())
"""


@asynccontextmanager
async def stalled_in_line(db: Path, principal: str) -> AsyncIterator[None]:
    """A process that waits in line for `principal`'s lock, stopped (SIGSTOP) there: its ticket stays held, and
    the lock is free."""
    async with principals.principal_held(str(db), principal):
        waiter = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WAITER, str(db), principal, stdout=asyncio.subprocess.PIPE
        )
        try:
            await until(in_line(db, 2))
            os.kill(waiter.pid, signal.SIGSTOP)
            await until(lambda: stopped(waiter.pid))  # before the lock is let go: it tries every millisecond
        except BaseException:
            waiter.kill()
            raise
    try:
        yield
    finally:
        waiter.kill()
        with suppress(ProcessLookupError):  # already reaped (asyncio's watcher waits for it)
            os.kill(waiter.pid, signal.SIGCONT)  # a stopped process ends only once it runs again
        await waiter.wait()


@needs_byte_ranges
async def test_a_holder_that_stalled_in_line_holds_the_others_up_half_the_bound_at_most(tmp_path: Path) -> None:
    """A process stopped (SIGSTOP) while it waits in line: the others wait for it no longer than half the bound,
    then take the lock when it is free (first come, as without a line), and are not refused."""
    db, bound_ms = tmp_path / "jobs.db", 2_000
    async with stalled_in_line(db, "alice"):
        start = time.monotonic()
        async with principals.principal_held(str(db), "alice", wait_ms=bound_ms):
            waited = time.monotonic() - start
        assert waited < bound_ms / 1000, waited  # behind the stalled one's ticket until it is half the bound old


@needs_byte_ranges
async def test_a_ticket_older_than_half_the_bound_holds_nobody_up(tmp_path: Path) -> None:
    """Once the stopped process's ticket is half the bound old (a holder that runs has left the line by then),
    nobody waits for it: the calls that follow take the free lock at once. Before, each waited half the bound
    behind it for as long as the process stayed stopped, one after the other in a process (four creates of one
    principal: 10 s)."""
    db, bound_ms = tmp_path / "jobs.db", 2_000
    async with stalled_in_line(db, "alice"):
        with anyio.fail_after(bound_ms / 1000 + 10):
            async with principals.principal_held(str(db), "alice", wait_ms=bound_ms):
                pass  # behind the ticket until it is half the bound old
            for _ in range(3):
                start = time.monotonic()
                async with principals.principal_held(str(db), "alice", wait_ms=bound_ms):
                    waited = time.monotonic() - start
                assert waited < bound_ms / 4000, waited


async def test_a_child_forked_while_the_lock_is_held_does_not_keep_it(tmp_path: Path) -> None:
    """A job's process forks (a `multiprocessing` pool: fork is the start method on Linux) while a create holds
    the principal's lock: the child's copy of the descriptor is of the same open description, and kept it held
    for as long as the child lived, after the parent let it go: every call of that principal was refused."""
    db = tmp_path / "jobs.db"
    go_on_read, go_on = os.pipe()
    async with principals.principal_held(str(db), "alice"):
        child = os.fork()
        if child == 0:  # the child: waits to be told, then ends (nothing else of the parent's runs here)
            os.read(go_on_read, 1)
            os._exit(0)
    try:
        # the child closes its copy once it runs (at once, or when a loaded machine schedules it): not 0 ms
        async with principals.principal_held(str(db), "alice", wait_ms=2000) as held:
            assert held
    finally:
        os.write(go_on, b"x")
        await anyio.to_thread.run_sync(os.waitpid, child, 0)
        os.close(go_on_read)
        os.close(go_on)
