"""Model-based test of the job core: JobManager and its job source (local heap, or PostgreSQL claims) against a
small reference model, on the memory, SQLite and PostgreSQL stores (Hypothesis `RuleBasedStateMachine`).

Rules: create jobs (priority, dependencies, memory needs, retries, time-outs), make a running job report
progress, complete, fail (retryable or not), cancel a job, let time pass, restart (every manager stopped, a new
one on the same store), start a second manager on the same store (SQLite, PostgreSQL). After every step the
system is let settle and the invariants are checked against the model:
- only legal transitions (a finished job never changes again, attempts only grow);
- the first result wins (a finished job's result never changes);
- no job is lost or duplicated (the store holds exactly the jobs created; no job runs twice at once);
- a job with a failed or cancelled dependency never runs (and ends failed);
- running jobs never exceed the concurrency and memory limits (per process on one machine, cluster-wide on
  PostgreSQL), and work that can run does (no runnable job waits while nothing runs);
- every finished job's status and result match the model.

Time is virtual: one clock drives the managers (`clock=`) and the event loop (`loop.time`), so time-outs, retry
delays and leases happen exactly when a rule lets time pass. The jobs' bodies wait for the rules' commands.

`make test` runs a fast profile; VIBE_JOBS_MODEL_EXAMPLES=N (`make model`, `.ci/run`) runs N examples per store.
A failure prints the steps (Hypothesis shrinks it) and its seed (`--hypothesis-seed` replays it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.pg import postgres_url, with_new_schema
from vibe_jobs import JobManager, JobRecord, JobStatus, NonRetryableError, Priority, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.engine.claims import ClaimSource
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.engine.sources import make_source
from vibe_jobs.errors import InvalidTransition
from vibe_jobs.jobtool import make_spec
from vibe_jobs.models import (
    JobQueueConfig,
    ResourceLimits,
    ResourceRequirements,
    RetryPolicyConfig,
    TaskMetadata,
    TaskSpec,
    TimeoutPolicyConfig,
)
from vibe_jobs.states import FINAL, TRANSITIONS
from vibe_jobs.store import JobStore, MemoryStore, open_store
from vibe_jobs.store.base import SharedJobStore

EXAMPLES = int(os.environ.get("VIBE_JOBS_MODEL_EXAMPLES", "0"))
CONCURRENCY = 2
MEMORY_LIMIT = 300
RETRY_DELAY_MS = 1000
SETTLE_SECONDS = 20.0  # real time one step may take to settle before the test fails as stuck
T0 = 1_700_000_000.0


class VirtualTime:
    """The managers' clock (epoch seconds) and the event loop's (monotonic seconds), moved together."""

    def __init__(self) -> None:
        self._us = round(T0 * 1e6)
        self._mono_us = 1_000_000_000

    def wall(self) -> float:
        return self._us / 1e6

    def mono(self) -> float:
        return self._mono_us / 1e6

    def now_ms(self) -> int:
        return self._us // 1000

    def advance(self, seconds: float) -> None:
        step = round(seconds * 1e6)
        self._us += step
        self._mono_us += step

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        def make() -> asyncio.AbstractEventLoop:
            loop = asyncio.new_event_loop()
            loop.time = self.mono  # type: ignore[method-assign]
            return loop

        return make


# -- the system: job bodies that wait for commands ----------------------------------------------


@dataclass(eq=False)
class Body:
    """One running attempt of a job, waiting for the rules' commands."""

    job_id: str
    attempt: int
    manager: JobManager
    started: float  # virtual monotonic seconds
    needs: int
    commands: list[tuple[str, Any]] = field(default_factory=list)
    wake: anyio.Event = field(default_factory=anyio.Event)
    waiting: bool = False


class Bodies:
    def __init__(self, vt: VirtualTime) -> None:
        self.vt = vt
        self.live: dict[str, Body] = {}
        self.starts: list[tuple[str, int]] = []
        self.problems: list[str] = []

    async def run(self, job: JobContext, needs: int) -> dict[str, Any]:
        if job.job_id in self.live:
            self.problems.append(f"{job.job_id} started attempt {job.attempt} while attempt "
                                 f"{self.live[job.job_id].attempt} runs")  # fmt: skip
        body = Body(job.job_id, job.attempt, job.manager, self.vt.mono(), needs)
        self.live[job.job_id] = body
        self.starts.append((job.job_id, job.attempt))
        try:
            while True:
                while not body.commands:
                    body.waiting = True
                    await body.wake.wait()
                    body.wake = anyio.Event()
                body.waiting = False
                what, arg = body.commands.pop(0)
                if what == "progress":
                    await job.progress(arg)
                elif what == "complete":
                    return {"value": arg}
                elif what == "fail":
                    raise NonRetryableError("refused") if not arg else RuntimeError("boom")
        finally:
            body.waiting = False
            if self.live.get(job.job_id) is body:
                del self.live[job.job_id]

    def send(self, job_id: str, what: str, arg: Any) -> None:
        body = self.live[job_id]
        body.commands.append((what, arg))
        body.waiting = False
        body.wake.set()


# -- the model ------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    deps: list[str]
    needs: int
    max_retries: int
    timeout: float | None
    status: JobStatus = JobStatus.PENDING
    retries: int = 0
    due_ms: int = 0
    value: int | None = None  # a completed job's result
    reason: str = ""  # how a failed job failed: error, timeout, interrupted, dependency
    attempt: int = 0
    started: float | None = None  # the running attempt's start (virtual monotonic seconds)


def legal(old: JobStatus, new: JobStatus) -> bool:
    """`new` can follow `old` through legal transitions (several may happen within one step)."""
    seen, todo = {old}, [old]
    while todo:
        for nxt in TRANSITIONS.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return new == old or new in seen


# -- the state machine ----------------------------------------------------------------------------


@dataclass
class Process:
    manager: JobManager
    source: Any
    stop: anyio.Event
    done: Any  # the hosting task's future


class JobModel(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.vt = VirtualTime()
        self.bodies = Bodies(self.vt)
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []
        self.seen: dict[str, tuple[JobStatus, int, Any]] = {}
        self.procs: list[Process] = []
        self.started = 0
        self.exits = contextlib.ExitStack()
        self.portal: BlockingPortal = self.exits.enter_context(
            start_blocking_portal("asyncio", {"loop_factory": self.vt.loop_factory()})
        )
        try:
            self.tmp = Path(self.exits.enter_context(_tempdir()))
            self.url = self._store_url()  # skips the test without PostgreSQL: close what was opened first
        except BaseException:
            self.exits.close()
            raise
        self.settings = Settings(
            max_concurrent=CONCURRENCY, max_retention_ms=10**12,
            queue=JobQueueConfig(
                max_concurrent_jobs=CONCURRENCY,
                resource_limits=ResourceLimits.model_validate({"maxMemoryMB": MEMORY_LIMIT}),
                retry_policy=RetryPolicyConfig(initial_delay_ms=RETRY_DELAY_MS, backoff_multiplier=1, jitter=0),
                timeout_policy=TimeoutPolicyConfig(default_timeout_ms=10**9),
            ),
        )  # fmt: skip
        self.memory = MemoryStore() if self.kind == "memory" else None
        spec = make_spec(self._work, name="work", retry_safe=True)
        self.tools = {"work": spec}

    def _store_url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp / 'jobs.db'}"
        if self.kind == "postgres":
            return with_new_schema(postgres_url("the model test on PostgreSQL"), "vj_model")
        return "memory://"

    async def _work(self, needs: int, job: JobContext) -> dict[str, Any]:
        return await self.bodies.run(job, needs)

    def _store(self) -> JobStore:
        return self.memory if self.memory is not None else open_store(self.url)

    # -- processes --------------------------------------------------------------------------

    def _start(self) -> None:
        self.started += 1
        manager = JobManager(self._store(), self.settings, clock=self.vt.wall, owner=f"process-{self.started}")
        source = make_source(manager, self.tools)
        stop = self.portal.call(anyio.Event)
        done, _ = self.portal.start_task(_host, manager, stop)
        self.procs.append(Process(manager, source, stop, done))

    def _stop_all(self) -> None:
        """Every process stops at once (a restart of the whole system): each is told before any is waited for. One
        by one, a job the first hands back as it stops (requeued: `recovery.hand_back`) was claimed and run by a
        process still running, and interrupted again as that one stopped: a second retry the model, which stops
        them together, does not count."""
        self.portal.call(_set_all, [p.stop for p in self.procs])  # in one step of the loop
        for p in self.procs:
            p.done.result(timeout=60)
        self.procs.clear()

    def teardown(self) -> None:
        try:
            self._stop_all()
            if self.kind == "postgres":
                self.portal.call(_drop_schema, self.url)
        finally:
            self.exits.close()

    # -- rules --------------------------------------------------------------------------------

    @initialize()
    def first_process(self) -> None:
        self._start()
        self._settle()

    @rule(
        data=st.data(),
        priority=st.sampled_from(list(Priority)),
        needs=st.sampled_from([0, 100, 200]),
        max_retries=st.integers(0, 2),
        timeout=st.sampled_from([None, None, 2.0, 4.0]),
    )
    def create(
        self, data: st.DataObject, priority: Priority, needs: int, max_retries: int, timeout: float | None
    ) -> None:
        deps = data.draw(st.lists(st.sampled_from(self.order), max_size=2, unique=True)) if self.order else []
        proc = data.draw(st.sampled_from(self.procs)) if len(self.procs) > 1 else self.procs[0]
        if self.kind == "sqlite" and len(self.procs) > 1:
            deps = []  # see module notes: a local queue learns of another process's finishes by polling only
        task = TaskSpec(
            priority=priority, dependencies=deps, timeout_seconds=timeout,
            resource_requirements=ResourceRequirements.model_validate({"memoryMB": needs, "cpuWeight": 0}),
            metadata=TaskMetadata(max_retries=max_retries),
        )  # fmt: skip
        job_id = self.portal.call(_create, proc.manager, task, needs)
        job = Job(job_id, deps, needs, max_retries, timeout, due_ms=self.vt.now_ms())
        self.jobs[job_id] = job
        self.order.append(job_id)
        if any(self.jobs[d].status in (JobStatus.FAILED, JobStatus.CANCELLED) for d in deps):
            self._finish(job, JobStatus.FAILED, "dependency")
        self._settle()

    def _running(self) -> list[str]:
        """The jobs the model has running, in the order they were created (not by id: ids are random)."""
        return [j for j in self.order if j in self.bodies.live and self.jobs[j].status is JobStatus.RUNNING]

    def _pick_running(self, data: st.DataObject) -> str | None:
        """One of the running jobs, or None. Which jobs run is the system's choice, made under real scheduling:
        the draw must not depend on it (a precondition on it, or a choice among a varying number of jobs, made
        Hypothesis see different draws for the same example and fail with FlakyStrategyDefinition)."""
        index = data.draw(st.integers(0, 63))
        running = self._running()
        return running[index % len(running)] if running else None

    @rule(data=st.data(), percent=st.integers(0, 100))
    def progress(self, data: st.DataObject, percent: int) -> None:
        job_id = self._pick_running(data)
        if job_id is None:
            return
        self.portal.call(self._send, job_id, "progress", percent)
        self._settle()
        rec = self.portal.call(self.procs[0].manager.get_record, job_id)
        if rec.status is JobStatus.RUNNING and rec.attempt == self.jobs[job_id].attempt:
            assert rec.progress_percentage == percent, (rec.progress_percentage, percent)

    @rule(data=st.data(), value=st.integers(0, 10**6))
    def complete(self, data: st.DataObject, value: int) -> None:
        job_id = self._pick_running(data)
        if job_id is None:
            return
        self.portal.call(self._send, job_id, "complete", value)
        job = self.jobs[job_id]
        job.value = value
        self._finish(job, JobStatus.COMPLETED)
        self._settle()

    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        job_id = self._pick_running(data)
        if job_id is None:
            return
        self.portal.call(self._send, job_id, "fail", retryable)
        self._failed_run(self.jobs[job_id], retryable, "error")
        self._settle()

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(self.order))]
        manager = self._owner_of(job.id)
        refused = self.portal.call(_cancel, manager, job.id)
        if job.status in FINAL:
            assert refused, f"cancelling {job.status.value} job {job.id} was not refused"
        else:
            assert not refused, f"cancelling {job.status.value} job {job.id} was refused"
            self._finish(job, JobStatus.CANCELLED)
        self._settle()

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5]))
    def time_passes(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.5)):
            self.vt.advance(0.5)
            self._settle()

    @rule()
    def restart(self) -> None:
        running = self._running()
        self._stop_all()
        for job_id in running:  # interrupted: requeued while retries remain, else failed
            self._failed_run(self.jobs[job_id], True, "interrupted", delay=False)
        self._start()
        self._settle()

    @precondition(lambda self: self.kind != "memory" and len(self.procs) == 1)
    @rule()
    def second_process(self) -> None:
        self._start()
        self._settle()

    # -- the model's transitions -------------------------------------------------------------

    def _finish(self, job: Job, status: JobStatus, reason: str = "") -> None:
        job.status, job.reason, job.started = status, reason, None
        if status is JobStatus.COMPLETED:
            return
        for other in self.jobs.values():  # its dependents will never run
            if job.id in other.deps and other.status not in FINAL:
                self._finish(other, JobStatus.FAILED, "dependency")

    def _failed_run(self, job: Job, retryable: bool, reason: str, *, delay: bool = True) -> bool:
        """A run of `job` failed: True when it is queued again for a retry (else it failed)."""
        if retryable and job.retries < job.max_retries:
            job.status, job.started = JobStatus.PENDING, None
            job.retries += 1
            if delay:
                job.due_ms = self.vt.now_ms() + RETRY_DELAY_MS
            return True
        self._finish(job, JobStatus.FAILED, reason)
        return False

    def _owner_of(self, job_id: str) -> JobManager:
        body = self.bodies.live.get(job_id)
        if body is not None and any(p.manager is body.manager for p in self.procs):
            return body.manager
        return self.procs[0].manager

    async def _send(self, job_id: str, what: str, arg: Any) -> None:
        self.bodies.send(job_id, what, arg)

    # -- settling and checking ---------------------------------------------------------------

    def _settle(self) -> None:
        future = self.portal.start_task_soon(self._settle_async)
        try:
            records = future.result(timeout=SETTLE_SECONDS + 5)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"stuck: {self._busy()}\n{self.portal.call(_where_tasks_wait)}") from None
        self._observe(records)

    async def _settle_async(self) -> dict[str, JobRecord]:
        """Let every process act until nothing changes: no run starting, every run task a body waiting for a
        command, no pending job left whose dependency failed (on PostgreSQL a sweep fails those, one process
        at a time: a round whose sweep found another process's in progress did not sweep), the store the same
        as the round before."""
        deadline = time.monotonic() + SETTLE_SECONDS
        last: Any = None
        calm = 0
        while calm < 3:
            for p in self.procs:
                await _decide(p.source)
            for _ in range(5):
                await asyncio.sleep(0)
            records = {r.id: r for r in await self.procs[0].manager.store.active()}
            snapshot = (
                sorted((r.id, r.version) for r in records.values()),
                self._quiet() and not await _blocked(self.procs[0]),
            )
            calm = calm + 1 if snapshot == last and snapshot[1] else 0
            last = snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"the system did not settle in {SETTLE_SECONDS} s: {self._busy()}")
        return {job_id: await self.procs[0].manager.get_record(job_id) for job_id in self.order}

    def _quiet(self) -> bool:
        for p in self.procs:
            ex = p.source.executor
            waiting = sum(1 for b in self.bodies.live.values() if b.manager is p.manager and b.waiting)
            if ex.starting or len(ex.runs) != waiting:
                return False
        return True

    def _busy(self) -> str:
        return "; ".join(
            f"{p.manager.owner}: starting {p.source.executor.starting}, run tasks {len(p.source.executor.runs)}"
            for p in self.procs
        )

    def _observe(self, records: dict[str, JobRecord]) -> None:
        assert not self.bodies.problems, self.bodies.problems
        for job_id in self.order:
            rec, job = records[job_id], self.jobs[job_id]
            self._check_legal(rec)
            self._follow(job, rec)
            self._check_matches(job, rec)

    def _check_legal(self, rec: JobRecord) -> None:
        before = self.seen.get(rec.id)
        if before is not None:
            status, attempt, result = before
            assert legal(status, rec.status), f"{rec.id}: {status.value} -> {rec.status.value}"
            assert rec.attempt >= attempt, f"{rec.id}: attempt {attempt} -> {rec.attempt}"
            if status in FINAL:
                assert rec.result == result, f"{rec.id}: its result changed after it finished"
        self.seen[rec.id] = (rec.status, rec.attempt, rec.result)

    def _follow(self, job: Job, rec: JobRecord) -> None:
        """Take the system's choices the model leaves open: which job starts when, and when exactly a
        time-out strikes (within its window)."""
        body = self.bodies.live.get(job.id)
        if job.status is JobStatus.PENDING and rec.status is JobStatus.RUNNING:
            for dep in job.deps:
                assert self.jobs[dep].status is JobStatus.COMPLETED, f"{job.id} started before {dep} completed"
            assert self.vt.now_ms() >= job.due_ms, f"{job.id} started {job.due_ms - self.vt.now_ms()} ms early"
            assert body is not None and body.attempt == rec.attempt, f"{job.id} running without its work"
            job.status, job.attempt, job.started = JobStatus.RUNNING, rec.attempt, body.started
        elif job.status is JobStatus.RUNNING and rec.status is not JobStatus.RUNNING:
            assert job.timeout is not None and job.started is not None, f"{job.id}: running -> {rec.status.value}"
            ran = self.vt.mono() - job.started
            assert ran >= job.timeout, f"{job.id} timed out after {ran} s (time-out {job.timeout} s)"
            if self._failed_run(job, True, "timeout"):
                job.due_ms = rec.run_after or job.due_ms  # the retry's delay counts from the time-out
        if job.status is JobStatus.RUNNING and job.timeout is not None and job.started is not None:
            ran = self.vt.mono() - job.started
            assert ran < job.timeout + 1.0, f"{job.id} ran {ran} s, its time-out is {job.timeout} s"

    def _check_matches(self, job: Job, rec: JobRecord) -> None:
        assert rec.status is job.status, f"{job.id}: the model says {job.status.value}, the store {rec.status.value}"
        assert rec.retry_count == job.retries, f"{job.id}: retries {rec.retry_count}, the model {job.retries}"
        if job.status is JobStatus.COMPLETED:
            assert rec.result is not None and rec.result.get("structuredContent") == {"value": job.value}
        elif job.status in FINAL:
            assert rec.result is not None and rec.result.get("isError") is True, rec.result
        if job.reason == "dependency":
            assert all(j != job.id for j, _ in self.bodies.starts), f"{job.id} ran although a dependency failed"

    @invariant()
    def limits_hold(self) -> None:
        if not self.procs:
            return
        groups: dict[int, list[Body]] = {}
        for b in self.bodies.live.values():
            key = 0 if self.kind == "postgres" else id(b.manager)  # cluster-wide on PostgreSQL, per process else
            groups.setdefault(key, []).append(b)
        for bodies in groups.values():
            assert len(bodies) <= CONCURRENCY, f"{len(bodies)} running, the limit is {CONCURRENCY}"
            assert sum(b.needs for b in bodies) <= MEMORY_LIMIT, f"{sum(b.needs for b in bodies)} MB running"

    @invariant()
    def runnable_work_runs(self) -> None:
        if self.bodies.live or not self.procs:
            return
        now = self.vt.now_ms()
        for job in self.jobs.values():
            ready = all(self.jobs[d].status is JobStatus.COMPLETED for d in job.deps)
            assert not (job.status is JobStatus.PENDING and ready and job.due_ms <= now), (
                f"{job.id} can run, and nothing runs"
            )

    @invariant()
    def no_job_lost_or_duplicated(self) -> None:
        if self.procs:
            count = self.portal.call(_count, self.procs[0].manager)
            assert count == len(self.jobs), f"the store holds {count} jobs, {len(self.jobs)} were created"


# -- helpers that run on the event loop ---------------------------------------------------------


async def _set_all(events: list[anyio.Event]) -> None:
    for event in events:
        event.set()


async def _host(manager: JobManager, stop: anyio.Event, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    async with manager:
        task_status.started()
        await stop.wait()


async def _create(manager: JobManager, task: TaskSpec, needs: int) -> str:
    return await manager.create_job("work", {"needs": needs}, task=task)


async def _cancel(manager: JobManager, job_id: str) -> bool:
    """True when the cancel was refused (the job had finished)."""
    try:
        await manager.cancel_job(job_id, "model")
    except InvalidTransition:
        return True
    return False


async def _count(manager: JobManager) -> int:
    return sum((await manager.store.counts()).values())


async def _decide(source: Any) -> None:
    if isinstance(source, ClaimSource):
        source._next_sweep = 0.0
        await source._round()
        await source._renew()
    else:
        assert isinstance(source, LocalSource)
        source.pump()


async def _blocked(p: Process) -> bool:
    """Whether a pending job waits on a dependency that failed (a sweep of a shared store has yet to fail it)."""
    store = p.manager.store
    return isinstance(store, SharedJobStore) and bool(await store.dependency_blocked())


async def _where_tasks_wait() -> str:
    """Every task's await chain: where a stuck system waits."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    return out.getvalue()


async def _drop_schema(url: str) -> None:
    store = open_store(url)
    await store.open()
    try:
        await store.drop_schema()  # type: ignore[attr-defined]
    finally:
        await store.close()


@contextlib.contextmanager
def _tempdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vj-model-") as d:
        yield d


# -- the test cases: one per store -----------------------------------------------------------------


def _settings(fast: int) -> settings:
    return settings(
        max_examples=EXAMPLES or fast, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )  # fmt: skip


class MemoryModel(JobModel):
    kind = "memory"


class SQLiteModel(JobModel):
    kind = "sqlite"


class PostgresModel(JobModel):
    kind = "postgres"


LONG = pytest.mark.timeout(max(60, EXAMPLES * 5))
TestMemory = LONG(MemoryModel.TestCase)
TestMemory.settings = _settings(12)
TestSQLite = LONG(SQLiteModel.TestCase)
TestSQLite.settings = _settings(5)
TestPostgres = pytest.mark.postgres(LONG(PostgresModel.TestCase))
TestPostgres.settings = _settings(5)
