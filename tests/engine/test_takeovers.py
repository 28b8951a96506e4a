"""A run that lost its job, or whose job was cancelled elsewhere, on every store with the scheduler a
deployment on it uses (product bugs the fault runs found, tests/faults).

"Elsewhere" is a second manager on the same store, as another process would be: it takes the job over
(adopts it and claims it as the next attempt) or asks for a cancel while this process runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import capture_logs

from tests.engine import test_scheduler
from tests.engine.test_scheduler import WAIT, Backend, FakeClock, Gates, gated_tool, make_store, on_stores
from vibe_jobs import JobManager, JobRecord, JobStatus, Settings
from vibe_jobs.arguments import ToolArguments
from vibe_jobs.context import JobContext
from vibe_jobs.engine.recovery import recover_orphans
from vibe_jobs.engine.sources import JobSource, make_source
from vibe_jobs.errors import StoreLocked, StoreUnavailable
from vibe_jobs.events import EventType
from vibe_jobs.jobtool import JobToolSpec, make_spec
from vibe_jobs.logs import configure_logging
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.store import JobStore, MemoryStore, open_store

backend = test_scheduler.backend  # the fixture: every store, with the scheduler a deployment on it uses


@asynccontextmanager
async def elsewhere(b: Backend, owner: str = "elsewhere") -> AsyncIterator[JobManager]:
    """Another process on the backend's store (the same store object in memory, a store of its own else)."""
    if isinstance(b.store, MemoryStore):
        yield JobManager(b.store, Settings(), owner=owner)
        return
    store = open_store(b.store.url)
    await store.open()
    try:
        yield JobManager(store, Settings(), owner=owner)
    finally:
        # shielded: used inside a job whose cancel it asks for, the close was cancelled and the pool leaked (its
        # connection's warning failed whichever test the garbage collector ran in)
        with anyio.CancelScope(shield=True):
            await store.close()


async def drained(sched: JobSource) -> None:
    with anyio.fail_after(WAIT):
        await sched.drained()


async def test_a_stale_attempts_retryable_failure_leaves_the_newer_attempt_running(backend: Backend) -> None:
    """Attempt 1 fails with a retryable error after the job was taken over (attempt 2 runs elsewhere):
    its retry is refused, so the newer attempt is not requeued under the process running it."""
    started, fail = anyio.Event(), anyio.Event()

    async def flaky(job: JobContext) -> str:
        started.set()
        await fail.wait()
        raise RuntimeError("flaky")

    spec = make_spec(flaky, name="flaky", retry_safe=True, max_retries=3)
    async with elsewhere(backend) as other, backend.running([spec], clock=FakeClock()) as (here, sched):
        job_id = await here.create_job("flaky")
        with anyio.fail_after(WAIT):
            await started.wait()
        # taken over: adopted and claimed elsewhere as attempt 2 (one change, so no claim here comes between)
        await other.mutate(job_id, lambda r: {"attempt": r.attempt + 1, "owner": other.owner})
        fail.set()
        await drained(sched)
        rec = await here.get_record(job_id)
    assert (rec.status, rec.attempt, rec.owner, rec.retry_count) == (JobStatus.RUNNING, 2, "elsewhere", 0)


async def test_a_cancel_requested_elsewhere_is_not_lost_when_the_run_fails_retryably(backend: Backend) -> None:
    """A cancel asked for by another process while this one runs the job (so it is only requested) and a
    retryable failure of the run: the job ends cancelled, it is not queued again (where a claim, which
    skips cancel requests, would leave it pending for ever)."""
    go = anyio.Event()

    async def flaky(job: JobContext) -> str:
        await go.wait()
        async with elsewhere(backend) as other:
            await other.cancel_job(job.job_id, "not wanted any more")
        raise RuntimeError("flaky")  # before this process could see the request

    spec = make_spec(flaky, name="flaky", retry_safe=True, max_retries=3)
    async with backend.running([spec], clock=FakeClock()) as (here, sched):
        job_id = await here.create_job("flaky")
        go.set()
        rec = await here.wait(job_id, WAIT)
        await drained(sched)
        rec = await here.get_record(job_id)
    assert rec.status is JobStatus.CANCELLED, (rec.status, rec.progress_message)
    assert rec.cancel_requested == "not wanted any more"


def stall_after_first_claim(store: JobStore, stall: Callable[[], Awaitable[None]]) -> None:
    """The first claim that takes a job answers only after `stall` ran: as when the worker is paused
    (SIGSTOP, a VM pause) while its claim is in flight, or the answer comes late after a reconnect."""
    claim_many = store.claim_many  # type: ignore[attr-defined]
    stalled = False

    async def late_claim(*args: Any, **kwargs: Any) -> list[JobRecord]:
        nonlocal stalled
        found: list[JobRecord] = await claim_many(*args, **kwargs)
        if found and not stalled:
            stalled = True
            await stall()
        return found

    store.claim_many = late_claim  # type: ignore[attr-defined]


@pytest.mark.parametrize("adopted", [True, False], ids=["adopted-elsewhere", "nobody-adopted"])
async def test_a_claim_answered_after_its_lease_lapsed_is_not_started(tmp_path: Path, adopted: bool) -> None:
    """The claim's lease lapsed before its answer arrived: the claimed attempt never starts (another process
    may have requeued or failed the job as an orphan, and may run it). Adopted elsewhere, the job is run
    again as that process's recovery decided; not adopted, the claim is given back as it was (no retry
    counted) and the job runs as the next attempt."""
    clock, started = FakeClock(), []

    async def work(job: JobContext) -> str:
        started.append(job.attempt)
        return "done"

    spec = make_spec(work, name="work", retry_safe=True, max_retries=3)
    settings = Settings(lease_ms=10_000)
    async with postgres_backend(tmp_path) as b, elsewhere(b) as other:
        other.clock = clock

        async def stall() -> None:
            clock.advance(settings.lease_ms / 1000 + 1)
            if adopted:
                assert len((await recover_orphans(other, {"work": spec}, RetryPolicy(), shared=True)).adopted) == 1

        stall_after_first_claim(b.store, stall)
        async with b.running([spec], settings, clock) as (here, _):
            job_id = await here.create_job("work")
            rec = await here.wait(job_id, WAIT)
    assert (rec.status, started, rec.attempt) == (JobStatus.COMPLETED, [2], 2)
    assert rec.retry_count == (1 if adopted else 0)


async def test_a_lapsed_claim_whose_give_back_fails_once_is_given_back_when_the_store_answers(tmp_path: Path) -> None:
    """The claim lapsed (answered late: a slow database) and the write that gives it back fails too (the same
    trouble): it is written again while the failure is transient. Left running, owned by this live worker,
    the job was no one's to recover (a process never adopts its own) and never ran (review helper-50 F5)."""
    clock, started = FakeClock(), []
    settings = Settings(lease_ms=10_000)

    async def work(job: JobContext) -> str:
        started.append(job.attempt)
        return "done"

    spec = make_spec(work, name="work", retry_safe=True, max_retries=3)
    async with postgres_backend(tmp_path) as b:

        async def stall() -> None:
            clock.advance(settings.lease_ms / 1000 + 1)
            fail_next_give_back(b.store)

        stall_after_first_claim(b.store, stall)
        async with b.running([spec], settings, clock) as (here, _):
            job_id = await here.create_job("work")
            rec = await here.wait(job_id, WAIT)
    assert (rec.status, started, rec.attempt, rec.retry_count) == (JobStatus.COMPLETED, [2], 2, 0)


async def test_a_claim_answered_late_has_its_lease_renewed_at_once(tmp_path: Path) -> None:
    """A claim answered late (here 70 % of its lease gone: it waited on the claim lock, a slow database) still
    starts its job (a quarter of the lease was left), and renews the job's lease at once: at the usual pace
    (a third of the lease) the renewal could come after the lease had lapsed, and another process would
    take the running job for an orphan. The lease (300 s here) makes that usual pace 100 s."""
    clock, gates = FakeClock(), Gates()
    settings = Settings(lease_ms=300_000)
    spec = gated_tool(gates, "work")
    renewed = anyio.Event()
    async with postgres_backend(tmp_path) as b, elsewhere(b) as other:
        other.clock = clock

        async def stall() -> None:
            clock.advance(0.7 * settings.lease_ms / 1000)

        stall_after_first_claim(b.store, stall)
        renew_state = b.store.renew_state  # type: ignore[attr-defined]

        async def noting_renewal(owner: str, job_ids: Any, expires_at: int) -> Any:
            held = await renew_state(owner, job_ids, expires_at)
            if job_ids:
                renewed.set()
            return held

        b.store.renew_state = noting_renewal  # type: ignore[attr-defined]
        async with b.running([spec], settings, clock) as (here, _):
            job_id = await here.create_job("work", {"key": "job"})
            await gates.wait_started("job")
            with anyio.fail_after(5):
                await renewed.wait()
            clock.advance(0.4 * settings.lease_ms / 1000)  # past the lease the claim wrote
            found = await recover_orphans(other, {"work": spec}, RetryPolicy(), shared=True)
            gates.open("job")
            rec = await here.wait(job_id, WAIT)
    assert not found.adopted
    assert (rec.status, rec.attempt) == (JobStatus.COMPLETED, 1)


def fail_next_give_back(store: JobStore) -> None:
    """The next write that moves a running job back to pending (and counts no retry) fails, once, as a
    connection lost on the way."""
    update = store.update
    failed = False

    async def failing_update(job_id: str, changes: Mapping[str, Any], guard: Any = None) -> JobRecord | None:
        nonlocal failed
        if not failed and changes.get("status") is JobStatus.PENDING and "retry_count" not in changes:
            failed = True
            raise StoreUnavailable("the connection was lost (injected)")
        return await update(job_id, changes, guard)

    store.update = failing_update  # type: ignore[method-assign]


@asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """A PostgreSQL backend in a schema of its own, closed and dropped after."""
    b = Backend("postgres", make_store("postgres", tmp_path))
    try:
        yield b
    finally:
        await b.store.close()
        await b.store.drop_schema()  # type: ignore[attr-defined]


class StallingArguments(ToolArguments):
    """A tool's arguments rule that stalls the process once, while the first run validates its arguments:
    after the run checked its claim and before the function is called (in the long fault run: SIGSTOP)."""

    def __init__(self, fn: Callable[..., Any], stall: Callable[[], None]) -> None:
        super().__init__("work", fn, "job")
        self.stall: Callable[[], None] | None = stall

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        stall, self.stall = self.stall, None
        if stall is not None:
            stall()
        return super().typed(params)


async def test_a_claim_that_lapses_while_its_run_is_set_up_is_not_started(tmp_path: Path) -> None:
    """The claim was fresh when its run began, but the process stalled before the function was called, past
    the point where another process may adopt the job: the claimed attempt is not started; the claim is
    given back as it was (no retry counted) and the job runs as the next attempt."""
    clock, started = FakeClock(), []
    settings = Settings(lease_ms=10_000)

    async def work(job: JobContext) -> str:
        started.append(job.attempt)
        return "done"

    rule = StallingArguments(work, lambda: clock.advance(settings.lease_ms / 1000))
    spec = make_spec(work, name="work", retry_safe=True, max_retries=3, argument_rule=rule)
    async with postgres_backend(tmp_path) as b, b.running([spec], settings, clock) as (here, _):
        job_id = await here.create_job("work")
        rec = await here.wait(job_id, WAIT)
    assert (rec.status, started, rec.attempt, rec.retry_count) == (JobStatus.COMPLETED, [2], 2, 0)


class TickingClock:
    """Each reading one millisecond later: the order of the changes shows in their `updated_at`."""

    def __init__(self) -> None:
        self._ms = 1_700_000_000_000

    def __call__(self) -> float:
        self._ms += 1
        return self._ms / 1000


async def test_recovery_adopts_running_orphans_before_the_pending_ones(backend: Backend) -> None:
    """A dead process left many pending jobs (those it had accepted) and one running: the running job, whose
    work stopped, is requeued first, not after the pending ones are adopted one by one (in the fault runs,
    hundreds of them held running orphans back for up to 20 s, past the lease bound)."""
    spec = make_spec(_quick, name="quick", retry_safe=True, max_retries=3)
    clock = TickingClock()
    async with elsewhere(backend) as dead:  # a process that never renews its lease: gone
        dead.clock = clock
        pending = [await dead.create_job("quick") for _ in range(60)]
        running = await dead.create_job("quick")  # accepted last, so an orphan scan in order finds it last
        await dead.start_job(running)
        adopter = JobManager(backend.store, Settings(), clock=clock, owner="adopter")
        await backend.store.open()
        adopted = (await recover_orphans(adopter, {"quick": spec}, RetryPolicy())).adopted
        records = {job_id: await adopter.get_record(job_id) for job_id in [*pending, running]}
    assert len(adopted) == 61 and all(rec.owner == "adopter" for rec in records.values())
    requeued = records[running]
    assert (requeued.status, requeued.retry_count) == (JobStatus.PENDING, 1)
    assert requeued.updated_at < min(records[job_id].updated_at for job_id in pending)


async def test_recovery_adopts_pending_orphans_many_at_once_as_it_did_one_by_one(backend: Backend) -> None:
    """Pending orphans that only change owner are adopted in one store call (`JobManager.adopt_pending`): what is
    adopted, the order they are queued in (the orphans'), the log line, the event a subscriber to one of them is
    told, and the record the manager keeps as the base of its next change are those the one-by-one adoption
    gave. A pending orphan whose cancel was asked still ends cancelled, and a running one is requeued first."""
    spec = make_spec(_quick, name="quick", retry_safe=True, max_retries=3)
    clock = TickingClock()
    async with elsewhere(backend) as dead:  # a process that never renews its lease: gone
        dead.clock = clock
        jobs = [await dead.create_job("quick") for _ in range(40)]
        unwanted = jobs[7]
        await dead.mutate(unwanted, lambda _rec: {"cancel_requested": "not wanted"})
        running = await dead.create_job("quick")
        await dead.start_job(running)
        adopter = JobManager(backend.store, Settings(), clock=clock, owner="adopter")
        await backend.store.open()
        with adopter.subscribe(jobs[0]) as told, info_logs() as logs:
            found = await recover_orphans(adopter, {"quick": spec}, RetryPolicy(), shared=backend.shared)
            with anyio.fail_after(WAIT):
                event = await told.__anext__()
        records = {job_id: await adopter.get_record(job_id) for job_id in [*jobs, running]}
    expected = [job_id for job_id in [*jobs, running] if job_id != unwanted]
    assert [rec.id for rec in found.adopted] == expected  # the orphans' order (creation), the requeued one too
    assert found.adopted == [records[job_id] for job_id in expected]
    assert all(rec.owner == "adopter" and rec.status is JobStatus.PENDING for rec in found.adopted)
    assert {records[job_id].version for job_id in jobs if job_id != unwanted} == {2}
    assert records[unwanted].status is JobStatus.CANCELLED
    assert records[running].retry_count == 1
    assert records[running].updated_at < min(records[job_id].updated_at for job_id in jobs if job_id != unwanted)
    adopted = [e for e in logs if e["event"] == "recovery.adopted"]
    assert adopted == [{"event": "recovery.adopted", "log_level": "info", "jobs": 41, "now_pending": 40,
                        "now_cancelled": 1}]  # fmt: skip
    assert (event.type, event.job_id, event.version) == (EventType.PROGRESS, jobs[0], 2)
    assert adopter._recent.get(jobs[0]) == records[jobs[0]]  # the base of its start: not read again


@contextlib.contextmanager
def info_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The log events at info and above while it is held (the tests log warnings only)."""
    before = structlog.get_config()
    configure_logging("info")
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        configure_logging("warning")
        structlog.configure(**before)


async def test_two_processes_recovering_at_once_adopt_each_pending_orphan_once(backend: Backend) -> None:
    """Two processes find the same pending orphans at the same beat: each job is adopted by exactly one, and each
    queues exactly the ones it adopted."""
    spec = make_spec(_quick, name="quick")
    async with elsewhere(backend) as dead, elsewhere(backend, "b") as b:  # dead: it never renews its lease
        jobs = {await dead.create_job("quick") for _ in range(300)}
        await backend.store.open()
        a = JobManager(backend.store, Settings(), owner="a")
        for alive in (a, b):  # live processes: the jobs one adopts are not orphans to the other
            await alive.store.heartbeat(alive.owner, alive.now() + 60_000)
        found_a, found_b = await asyncio.gather(
            recover_orphans(a, {"quick": spec}, RetryPolicy(), shared=backend.shared),
            recover_orphans(b, {"quick": spec}, RetryPolicy(), shared=backend.shared),
        )
        records = [await a.get_record(job_id) for job_id in jobs]
    won = {rec.id: "a" for rec in found_a.adopted} | {rec.id: "b" for rec in found_b.adopted}
    assert len(found_a.adopted) + len(found_b.adopted) == len(won) and set(won) == jobs
    assert all((rec.owner, rec.version) == (won[rec.id], 2) for rec in records)


async def _quick() -> str:
    return "quick"


async def test_recovery_counts_the_orphans_it_leaves_only_when_asked(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's process does not report the orphans it leaves for a process with their tool (`count_left=False`:
    the store is not asked to count them, a query of every orphan at each beat); a process on a store of its own
    does (health names them)."""
    spec = make_spec(_quick, name="quick", retry_safe=True)
    async with elsewhere(backend) as dead:  # a process that never renews its lease: gone
        mine = await dead.create_job("quick")
        await dead.create_job("absent")  # a tool this process lacks
        adopter = JobManager(backend.store, Settings(), owner="adopter")
        await backend.store.open()

        async def not_asked(*_args: Any) -> dict[str, int]:
            raise AssertionError("orphans_left was asked")

        with monkeypatch.context() as patch:
            patch.setattr(backend.store, "orphans_left", not_asked)
            found = await recover_orphans(adopter, {"quick": spec}, RetryPolicy(), count_left=False)
        assert ([rec.id for rec in found.adopted], found.left) == ([mine], {})
        assert (await recover_orphans(adopter, {"quick": spec}, RetryPolicy())).left == {"absent": 1}


@on_stores("sqlite", "postgres")
async def test_a_slow_maintenance_beat_never_lets_a_live_process_s_lease_lapse(backend: Backend) -> None:
    """A beat's recovery may wait (here on a tool's hook that ends a dead run's leftover processes): this
    process's lease is renewed meanwhile, so another process on the store never takes the job it runs for an
    orphan (a tool that is not retry_safe: it would fail as interrupted) and the job completes, as attempt 1."""
    gates, store = Gates(), backend.store
    in_hook, hook_done = anyio.Event(), anyio.Event()

    async def end_leftovers(_metadata: Mapping[str, Any] | None) -> None:
        in_hook.set()
        await hook_done.wait()

    work = gated_tool(gates, "work")
    leftovers = gated_tool(gates, "leftovers", on_interrupted=end_leftovers)
    settings = Settings(lease_ms=300)  # a beat every 0.1 s
    here = JobManager(store, settings, owner="here")
    make_source(here, {"work": work, "leftovers": leftovers})
    async with here:
        job_id = await here.create_job("work", {"key": "job"})
        await gates.wait_started("job")
        now = here.now()
        dead = JobRecord("dead-run", "leftovers", {"key": "x"}, JobStatus.RUNNING, now, now, owner="gone-host:1")
        dead.attempt, dead.started_at = 1, now
        await store.insert(dead)  # the next beat adopts it, and waits in its tool's hook
        with anyio.fail_after(WAIT):
            await in_hook.wait()
        async with other_process(backend, settings, {"work": work}):
            await anyio.sleep(1.5)  # the fault: five leases in the hook, while the other process beats
        hook_done.set()
        gates.open("job")
        rec = await here.wait(job_id, WAIT)
    assert rec.status is JobStatus.COMPLETED, rec.progress_message
    assert rec.attempt == 1 and gates.order.count("job") == 1


@asynccontextmanager
async def other_process(b: Backend, settings: Settings, tools: Mapping[str, JobToolSpec]) -> AsyncIterator[JobManager]:
    """A second server on the backend's store (a store object of its own), running `tools`."""
    store = open_store(b.store.url)
    manager = JobManager(store, settings, owner="other")
    make_source(manager, tools)
    async with manager:
        yield manager


_CANCELLING: contextvars.ContextVar[bool] = contextvars.ContextVar("cancelling", default=False)


class _CancelAtRetry:
    """A store (a real one, subclassed) that makes a client's cancel arrive while a failed run's retry is
    written: the retry's write waits until the cancel (a task of its own, tagged) has read the job still
    running, and so stops its run (which had finished: its work over, its retry not written yet)."""

    manager: JobManager
    read_running: anyio.Event

    async def get(self, job_id: str) -> JobRecord | None:
        rec = await super().get(job_id)  # type: ignore[misc]
        if _CANCELLING.get() and rec is not None and rec.status is JobStatus.RUNNING:
            self.read_running.set()
        return rec  # type: ignore[no-any-return]

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Any = None) -> JobRecord | None:
        if (
            changes.get("status") is JobStatus.PENDING
            and "retry_count" in changes
            and not hasattr(self, "read_running")
        ):
            self.read_running = anyio.Event()
            self.manager.task_group.start_soon(self._cancel, job_id)
            with anyio.fail_after(WAIT):
                await self.read_running.wait()
        return await super().update(job_id, changes, guard)  # type: ignore[misc, no-any-return]

    async def _cancel(self, job_id: str) -> None:
        _CANCELLING.set(True)
        await self.manager.cancel_job(job_id)


@on_stores("sqlite", "postgres")
async def test_a_cancel_that_arrives_while_a_retry_is_written_ends_the_job_cancelled(backend: Backend) -> None:
    """The job's run failed (retryable) and its retry is being written when the client cancels: the cancel
    stops the (finished) run and reaches the job, pending again by then, which ends cancelled. The retry
    is not run to its end (SQLite ran it to completion: a retry that started before the cancel's write is
    stopped) and the job never waits for ever (PostgreSQL: claims pass over a pending job whose cancel
    was asked)."""
    store = type("CancelAtRetry", (_CancelAtRetry, type(backend.store)), {})(backend.store.url)
    runs: list[int] = []

    async def flaky(job: JobContext) -> str:
        runs.append(job.attempt)
        if job.attempt == 1:
            raise RuntimeError("flaky")
        await anyio.sleep(WAIT)  # a retry, if it starts, runs until it is stopped
        return "the retry ran"

    spec = make_spec(flaky, name="flaky", retry=RetryPolicy(max_retries=3, initial_delay_ms=10, jitter=0))
    manager = JobManager(store, Settings(), owner="here")
    store.manager = manager
    make_source(manager, {"flaky": spec})
    try:
        async with manager:
            job_id = await manager.create_job("flaky", {})
            rec = await manager.wait(job_id, WAIT)
    finally:
        await store.close()
    assert rec.status is JobStatus.CANCELLED, (rec.status, rec.progress_message)
    assert runs[0] == 1 and len(runs) <= 2


@on_stores("sqlite", "postgres")
async def test_a_first_lease_renewal_that_fails_is_tried_again_at_once(backend: Backend) -> None:
    """The store failed the renewal a server makes as it starts (a file locked past its busy timeout): the
    server runs jobs meanwhile, with no live lease (on SQLite nothing else renews it), so another process would
    take them for orphans. It renews again after the backoff (0.1 s), not a third of the lease later (10 s by
    default). Review helper-50 F4."""
    store, renewed = backend.store, anyio.Event()
    heartbeat, failed = store.heartbeat, False

    async def first_fails(owner: str, expires_at: int) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise StoreLocked("the database is locked (injected)")
        await heartbeat(owner, expires_at)
        renewed.set()

    store.heartbeat = first_fails  # type: ignore[method-assign]
    manager = JobManager(store, Settings(), owner="here")
    async with manager:
        with anyio.fail_after(3):
            await renewed.wait()
        assert manager.lease_until > manager.now()
    assert failed


async def test_a_job_started_after_a_stall_starts_under_a_renewed_lease(backend: Backend) -> None:
    """The process stalled past its lease (a suspended laptop, SIGSTOP, a swapped-out VM) and a job comes up
    before the renewal loop wakes (a third of the lease: 100 s here). The job starts only once this process's
    lease is live again: started under a lapsed lease, another process on the store would take the running job
    for an orphan and run it a second time. Every source renews first (the claim source did; the local queue,
    used on SQLite and memory, did not)."""
    clock = FakeClock()
    settings = Settings(lease_ms=300_000)
    left_at_start: list[int] = []

    async def body(job: JobContext) -> str:
        left_at_start.append(job.manager.lease_until - job.manager.now())
        return "ran"

    spec = make_spec(body, name="work")
    async with backend.running([spec], settings, clock) as (here, _):
        first = await here.wait(await here.create_job("work", {}), WAIT)  # the renewal loop is asleep by now
        clock.advance(settings.lease_ms / 1000 + 1)  # the stall: the lease lapsed a second ago
        rec = await here.wait(await here.create_job("work", {}), WAIT)
    assert first.status is rec.status is JobStatus.COMPLETED, rec.progress_message
    assert left_at_start[1] > settings.lease_ms // 2, left_at_start
