"""Scheduler: priority with aging, dependencies, limits, resources, retries, time-outs, cancel,
metrics and recovery. A fake clock drives every timestamp (created_at, run_after, durations);
job functions wait on anyio.Event gates that the tests open, so no test sleeps to wait for state.

The behaviour tests run on every store with the scheduler a deployment on it uses (`backend`):
memory and SQLite with the in-process queue (`LocalSource`), PostgreSQL with the `ClaimSource`, which
claims work in SQL (its claims use the manager's clock, so the fake clock drives them too).
PostgreSQL runs in a fresh schema per test against VIBE_JOBS_TEST_POSTGRES_URL; it skips with a
reason when that is unset (and fails instead when VIBE_JOBS_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import functools
import gc
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tests.pg import postgres_url, with_new_schema
from vibe_jobs import (
    EventType,
    JobManager,
    JobRecord,
    JobStatus,
    NonRetryableError,
    Priority,
    QueueFull,
    ResourceLimitExceeded,
    ResourceRequirements,
    Settings,
    TaskMetadata,
    TaskSpec,
    UnknownDependency,
)
from vibe_jobs.context import JobContext
from vibe_jobs.engine.claims import ClaimSource
from vibe_jobs.engine.local import LocalSource, QueuedJob
from vibe_jobs.engine.sources import JobSource, make_source
from vibe_jobs.events import JobEvent, Subscription
from vibe_jobs.jobtool import JobToolSpec, make_spec
from vibe_jobs.manager import MAX_DIAGNOSTICS
from vibe_jobs.metrics import HealthThresholds
from vibe_jobs.models import JobQueueConfig, ResourceLimits, RetryPolicyConfig, TimeoutPolicyConfig
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.store import JobStore, MemoryStore, open_store
from vibe_jobs.store.base import JobQuery, SharedJobStore
from vibe_jobs.store.sqlite import SQLiteStore

WAIT = 5.0  # upper bound for any awaited state change (a hang fails instead of blocking)
NO_RETRY = TaskMetadata(max_retries=0)
NO_NEEDS = ResourceRequirements.model_validate({"memoryMB": 0, "cpuWeight": 0, "diskSpaceMB": 0})
T0 = 1_700_000_000.0


class FakeClock:
    """`now` in epoch seconds; the manager reads it through `__call__`. Kept in whole
    microseconds so that advances add up exactly (0.999 + 0.001 s is exactly one second)."""

    def __init__(self, now: float = T0) -> None:
        self._us = round(now * 1_000_000)

    @property
    def now(self) -> float:
        return self._us / 1_000_000

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self._us += round(seconds * 1_000_000)


class Gates:
    """Job bodies record their start and wait until the test opens their gate (by key)."""

    def __init__(self) -> None:
        self.started: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.release: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.order: list[str] = []
        self.cancelled: list[str] = []
        self._changed = anyio.Event()

    async def run(self, key: str) -> str:
        self.order.append(key)
        self.started[key].set()
        self._changed.set()
        self._changed = anyio.Event()
        try:
            await self.release[key].wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(key)
            raise
        return key

    def open(self, *keys: str) -> None:
        for key in keys:
            self.release[key].set()

    async def wait_started(self, key: str) -> None:
        with anyio.fail_after(WAIT):
            await self.started[key].wait()

    async def wait_count(self, n: int) -> None:
        """Until `n` job bodies have started."""
        with anyio.fail_after(WAIT):
            while len(self.order) < n:
                await self._changed.wait()


def gated_tool(gates: Gates, name: str = "gated", **options: Any) -> JobToolSpec:
    async def body(key: str, job: JobContext) -> str:
        return await gates.run(key)

    return make_spec(body, name=name, **options)


async def _probe_body() -> str:
    return "probe"


PROBE = make_spec(_probe_body, name="probe")  # registered by `Backend.running` (see `probe`)


# -- stores and schedulers -------------------------------------------------------------------

POSTGRES_MARKS = [pytest.mark.postgres]


def store_param(kind: str, xfail_postgres: str | None = None) -> Any:
    """A `backend` parameter; `xfail_postgres` marks a known PostgreSQL product bug (strict)."""
    if kind != "postgres":
        return kind
    marks = [*POSTGRES_MARKS, *([pytest.mark.xfail(strict=True, reason=xfail_postgres)] if xfail_postgres else [])]
    return pytest.param(kind, marks=marks)


STORES = ["memory", "sqlite", store_param("postgres")]


def on_stores(*kinds: str, xfail_postgres: str | None = None) -> pytest.MarkDecorator:
    """Run a test on these stores only (default all), e.g. where a test does not apply to the others."""
    params = [store_param(k, xfail_postgres) for k in (kinds or ("memory", "sqlite", "postgres"))]
    return pytest.mark.parametrize("backend", params, indirect=True)


def make_store(kind: str, tmp_path: Path) -> JobStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    assert kind == "postgres", kind
    url = postgres_url("the scheduler tests against PostgreSQL")
    return open_store(with_new_schema(url, "vj_sched"))  # a schema per test, dropped after


class Backend:
    """A fresh store of one kind, and managers on it run by the scheduler a deployment on it uses."""

    def __init__(self, kind: str, store: JobStore) -> None:
        self.kind, self.store = kind, store
        self.shared = isinstance(store, SharedJobStore)
        assert self.shared is (kind == "postgres"), f"{kind}: shared is {self.shared}"

    @asynccontextmanager
    async def running(
        self,
        tools: Iterable[JobToolSpec],
        settings: Settings | None = None,
        clock: Callable[[], float] | None = None,
        ticks: Callable[[], float] | None = None,  # the monotonic clock (tests/test_clock_steps.py); default: `clock`
        **scheduler_options: Any,
    ) -> AsyncIterator[tuple[JobManager, JobSource]]:
        manager = JobManager(self.store, settings or Settings(), clock=clock or FakeClock(), ticks=ticks)
        specs = {spec.name: spec for spec in (*tools, PROBE)}
        sched = make_source(manager, specs, **scheduler_options)  # as a server on this store does
        listening = self._tell_when_listening()
        async with manager:
            if listening is not None:
                with anyio.fail_after(WAIT):
                    await listening.wait()
            yield manager, sched

    def _tell_when_listening(self) -> anyio.Event | None:
        """Tests start once the worker listens, so no change is missed to the poll interval. (This also
        worked around a connection leaked by a listen cancelled while starting, now fixed and tested in
        tests/store/test_postgres.py.)"""
        if not self.shared:
            return None
        listening, listen = anyio.Event(), self.store.listen  # type: ignore[attr-defined]

        async def listen_and_tell(*args: Any, **kwargs: Any) -> Any:
            listener = await listen(*args, **kwargs)
            listening.set()
            return listener

        self.store.listen = listen_and_tell  # type: ignore[attr-defined]
        return listening


@pytest.fixture(params=STORES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    store = make_store(request.param, tmp_path)
    try:
        yield Backend(request.param, store)
    finally:
        await store.close()
        if request.param == "postgres":
            await store.drop_schema()  # type: ignore[attr-defined]


async def finished(manager: JobManager, job_id: str) -> JobRecord:
    rec = await manager.wait(job_id, WAIT)
    assert rec.finished, f"job {job_id} is still {rec.status.value}: {rec.progress_message}"
    return rec


async def status(manager: JobManager, job_id: str) -> JobStatus:
    return (await manager.get_record(job_id)).status


async def stored(manager: JobManager, state: JobStatus | None = None) -> int:
    """How many jobs the store holds (in `state`, or in all)."""
    counts = await manager.store.counts()
    return counts.get(state, 0) if state is not None else sum(counts.values())


async def probe(manager: JobManager) -> None:
    """Run a job of the always-registered `probe` tool to its end: a barrier for admission. Every
    scheduler decides at a submission (the heap's pump, the claim statement), with the current clock,
    so once the probe finished, any other job due by now has been started too (needs a free slot).
    It needs no resources, so it fits beside any running job."""
    await finished(manager, await manager.create_job("probe", {}, task=TaskSpec(resource_requirements=NO_NEEDS)))


def queued(sched: JobSource) -> dict[str, QueuedJob]:
    """The jobs queued in this process (a claim source queues none: the queue is the database)."""
    return sched.queued if isinstance(sched, LocalSource) else {}


async def decide_now(sched: JobSource) -> None:
    """Have the scheduler take an admission decision now, and return once it did: the heap's pump,
    or one claim of the ClaimSource (whose own rounds may lag behind on a loaded machine). For
    where `probe` cannot serve: past the reservation window no job, the probe neither, may pass the head."""
    if isinstance(sched, ClaimSource):
        await sched._claim_available()
    else:
        sched.pump()


async def next_event(sub: Subscription, *types: EventType) -> JobEvent:
    with anyio.fail_after(WAIT):
        async for event in sub:
            if event.type in types:
                return event
    raise AssertionError("subscription closed")


def task(
    priority: Priority = Priority.MEDIUM,
    deps: Iterable[str] = (),
    *,
    needs: ResourceRequirements | None = None,
    **more: Any,
) -> TaskSpec:
    return TaskSpec(priority=priority, dependencies=list(deps), resource_requirements=needs, **more)


def needs(memory: float = 0, cpu: float = 0, disk: float = 0) -> ResourceRequirements:
    return ResourceRequirements.model_validate({"memoryMB": memory, "cpuWeight": cpu, "diskSpaceMB": disk})


def limits(memory: float = 1e9, cpu: float = 1e9, disk: float = 1e9) -> JobQueueConfig:
    caps = ResourceLimits.model_validate({"maxMemoryMB": memory, "maxCpuWeight": cpu, "maxDiskSpaceMB": disk})
    return JobQueueConfig(resource_limits=caps)


# -- 1. priority order -----------------------------------------------------------------------


async def test_priority_order_critical_high_medium_low_and_fifo_within_a_level(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1), clock) as (m, s):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        submitted = ["low0", "medium0", "high0", "critical0", "low1", "critical1", "medium1", "high1", "low2"]
        ids = []
        for key in submitted:
            clock.advance(0.001)  # later submissions are younger: FIFO within a level
            ids.append(await m.create_job("gated", {"key": key}, task=task(Priority(key[:-1]))))
            gates.open(key)
        assert await stored(m, JobStatus.PENDING) == len(submitted) and gates.order == ["blocker"]
        gates.open("blocker")
        for job_id in ids:
            assert (await finished(m, job_id)).status is JobStatus.COMPLETED
    assert gates.order[1:] == [
        "critical0", "critical1", "high0", "high1", "medium0", "medium1", "low0", "low1", "low2",
    ]  # fmt: skip
    assert s.executor.max_running_seen == 1


# -- 2. aging --------------------------------------------------------------------------------


async def test_aging_bounds_the_wait_of_a_low_job_under_a_stream_of_high_jobs(backend: Backend) -> None:
    """Weights low=1, high=3 and aging 60 s: no high job submitted 120 s or more after the low job
    starts before it, however many keep coming; highs submitted earlier still go first."""
    gates, clock = Gates(), FakeClock()
    settings = Settings(max_concurrent=1, aging_ms=60_000)
    async with backend.running([gated_tool(gates)], settings, clock) as (m, _):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        await m.create_job("gated", {"key": "low"}, task=task(Priority.LOW))
        created = {}
        for i in range(3):
            created[f"h{i}"] = clock.now
            await m.create_job("gated", {"key": f"h{i}"}, task=task(Priority.HIGH))
        step = 3
        while "low" not in gates.order:  # one job finishes and one high arrives every 10 s
            assert step < 40, "the low job starved"
            clock.advance(10)
            created[f"h{step}"] = clock.now
            await m.create_job("gated", {"key": f"h{step}"}, task=task(Priority.HIGH))
            started = len(gates.order)
            gates.open(gates.order[-1])
            await gates.wait_count(started + 1)
            step += 1
        low_at = gates.order.index("low")
        overtook = set(gates.order[1:low_at])
        assert overtook == {k for k, at in created.items() if at - T0 < 120}
        assert len(overtook) == 14  # 3 at once + one every 10 s for 110 s
        assert {k for k, at in created.items() if at - T0 >= 120} & overtook == set()
        gates.open(*gates.release)


# -- 3. dependencies -------------------------------------------------------------------------


async def test_dependency_success_waits_for_the_dependency_to_complete(backend: Backend) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)]) as (m, _):
        a = await m.create_job("gated", {"key": "a"})
        b = await m.create_job("gated", {"key": "b"}, task=task(deps=[a]))
        gates.open("b")
        await gates.wait_started("a")
        await probe(m)  # b's dependency is running: b is not started however often admission runs
        assert await status(m, b) is JobStatus.PENDING and gates.order == ["a"]
        gates.open("a")
        rec_b = await finished(m, b)
        rec_a = await m.get_record(a)
    assert rec_b.status is JobStatus.COMPLETED and gates.order == ["a", "b"]
    assert rec_a.finished_at is not None and rec_b.started_at is not None
    assert rec_b.started_at >= rec_a.finished_at


async def test_dependency_failure_cascades_and_the_dependents_never_run(backend: Backend) -> None:
    gates = Gates()

    async def boom(job: JobContext) -> None:
        raise NonRetryableError("boom")

    async with backend.running([gated_tool(gates), make_spec(boom, name="boom")], Settings(max_concurrent=1)) as (m, s):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        a = await m.create_job("boom", {})
        b = await m.create_job("gated", {"key": "b"}, task=task(deps=[a]))
        c = await m.create_job("gated", {"key": "c"}, task=task(deps=[b]))
        gates.open("blocker", "b", "c")
        rec_a, rec_b, rec_c = [await finished(m, j) for j in (a, b, c)]
        assert not queued(s) and not s.executor.running
    assert rec_a.status is rec_b.status is rec_c.status is JobStatus.FAILED
    assert rec_b.progress_message == f"Job failed: DependencyFailed: dependency '{a}' failed; this job did not run"
    assert f"DependencyFailed: dependency '{b}' failed" in (rec_c.progress_message or "")
    assert rec_b.attempt == rec_c.attempt == 0
    assert gates.order == ["blocker"]


@on_stores()
async def test_a_job_failed_by_its_dependency_says_so_in_its_stage(backend: Backend) -> None:
    async def boom() -> None:
        raise NonRetryableError("boom")

    async with backend.running([gated_tool(Gates()), make_spec(boom, name="boom")]) as (m, _):
        a = await m.create_job("boom", {})
        b = await m.create_job("gated", {"key": "b"}, task=task(deps=[a]))
        rec_b = await finished(m, b)
    assert rec_b.status is JobStatus.FAILED and rec_b.attempt == 0
    assert rec_b.current_stage == "dependency_failed"


async def test_cancelling_a_dependency_fails_its_dependents(backend: Backend) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)]) as (m, _):
        a = await m.create_job("gated", {"key": "a"})
        b = await m.create_job("gated", {"key": "b"}, task=task(deps=[a]))
        c = await m.create_job("gated", {"key": "c"}, task=task(deps=[b]))
        await gates.wait_started("a")
        await m.cancel_job(a, "not needed")
        rec_a, rec_b, rec_c = [await finished(m, j) for j in (a, b, c)]
    assert rec_a.status is JobStatus.CANCELLED and gates.cancelled == ["a"]
    assert rec_b.status is rec_c.status is JobStatus.FAILED
    assert f"dependency '{a}' cancelled" in (rec_b.progress_message or "")
    assert f"dependency '{b}' failed" in (rec_c.progress_message or "")
    assert gates.order == ["a"]


async def test_unknown_dependency_is_refused_at_submission_and_nothing_is_stored(backend: Backend) -> None:
    async with backend.running([gated_tool(Gates())]) as (m, s):
        with pytest.raises(UnknownDependency) as err:
            await m.create_job("gated", {"key": "x"}, task=task(deps=["no-such-job"]))
        assert err.value.context["dependency"] == "no-such-job" and "no-such-job" in str(err.value)
        assert await stored(m) == 0 and queued(s) == {}


async def test_dependency_on_a_finished_job_resolves_at_once(backend: Backend) -> None:
    gates = Gates()

    async def boom() -> None:
        raise NonRetryableError("boom")

    async with backend.running([gated_tool(gates), make_spec(boom, name="boom")]) as (m, s):
        gates.open("a", "b", "c")
        a = await m.create_job("gated", {"key": "a"})
        bad = await m.create_job("boom", {})
        assert (await finished(m, a)).status is JobStatus.COMPLETED
        assert (await finished(m, bad)).status is JobStatus.FAILED
        c = await m.create_job("gated", {"key": "c"}, task=task(deps=[a, bad]))
        if not backend.shared:  # the heap settles it during submission; a claim never sees it as ready
            assert c not in queued(s) and s.executor.starting == 0
        b = await m.create_job("gated", {"key": "b"}, task=task(deps=[a]))
        rec_b, rec_c = await finished(m, b), await finished(m, c)
    assert rec_b.status is JobStatus.COMPLETED
    assert rec_c.status is JobStatus.FAILED and f"dependency '{bad}' failed" in (rec_c.progress_message or "")
    assert gates.order == ["a", "b"]


# -- 4. concurrency --------------------------------------------------------------------------

THOUSAND = {"memory": 1000, "sqlite": 1000, "postgres": 100}  # claims are round trips: 100 keep it short


async def test_concurrency_limits_hold_under_a_thousand_jobs(backend: Backend) -> None:
    n = THOUSAND[backend.kind]
    go = anyio.Event()  # the first jobs hold their slots until every job is submitted
    live: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    violations: list[str] = []

    def make(tool: str, limit: int | None) -> JobToolSpec:
        async def body(i: int) -> int:
            live["all"] += 1
            live[tool] += 1
            peak["all"], peak[tool] = max(peak["all"], live["all"]), max(peak[tool], live[tool])
            if live["all"] > 5 or (limit is not None and live[tool] > limit):
                violations.append(f"job {i}: {dict(live)}")
            await go.wait()
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            live["all"] -= 1
            live[tool] -= 1
            return i

        return make_spec(body, name=tool, max_concurrent=limit)

    settings = Settings(max_concurrent=5, queue=limits())
    async with backend.running([make("free", None), make("limited", 2)], settings) as (m, s):
        ids = [await m.create_job("limited" if i % 4 == 0 else "free", {"i": i}) for i in range(n)]
        go.set()
        for job_id in ids:
            assert (await finished(m, job_id)).status is JobStatus.COMPLETED
        counts = await m.store.counts()
    assert violations == []
    assert peak["all"] == 5 and peak["limited"] == 2 and s.executor.max_running_seen == 5
    assert counts[JobStatus.COMPLETED] == n


async def test_a_tool_at_its_limit_does_not_block_other_tools_queued_behind_it(backend: Backend) -> None:
    """300 ready jobs of a tool limited to 2 (more than one decision of the heap scans) sit ahead of
    a job of another tool: that job still gets one of the three free slots."""
    n = 60 if backend.shared else 300  # the claim SQL filters the full tool out in its scan: fewer show it
    gates = Gates()
    tools = [gated_tool(gates, "limited", max_concurrent=2), gated_tool(gates, "free")]
    async with backend.running(tools, Settings(max_concurrent=5, queue=limits())) as (m, s):
        for i in range(n):
            await m.create_job("limited", {"key": f"l{i}"}, task=task(Priority.CRITICAL))
        free = await m.create_job("free", {"key": "free"}, task=task(Priority.LOW))
        await gates.wait_started("free")
        assert gates.order == ["l0", "l1", "free"] and s.executor.max_running_seen == 3
        gates.open("free", "l0")  # a limited slot frees: the next limited job (in order) starts
        await finished(m, free)
        await gates.wait_started("l2")
        assert gates.order == ["l0", "l1", "free", "l2"]
        gates.open(*(f"l{i}" for i in range(n)))
        await gates.wait_count(n + 1)
        assert gates.order[3:] == [f"l{i}" for i in range(2, n)]
        assert queued(s) == {}


async def test_the_queue_configs_max_concurrent_jobs_is_the_limit(backend: Backend) -> None:
    """Issue 4 item 10: the specification's JobQueueConfig (maxConcurrentJobs, ...) configures the queue. Given in
    Python (`Settings(queue=JobQueueConfig(max_concurrent_jobs=1))`) it was ignored: five jobs ran at once, as
    only the environment's and the config file's value reached `Settings.max_concurrent`."""
    gates = Gates()
    settings = Settings(queue=JobQueueConfig(max_concurrent_jobs=1))
    async with backend.running([gated_tool(gates)], settings) as (m, s):
        first = await m.create_job("gated", {"key": "first"})
        await gates.wait_started("first")
        second = await m.create_job("gated", {"key": "second"})
        await decide_now(s)
        assert await status(m, second) is JobStatus.PENDING and gates.order == ["first"]
        gates.open("first", "second")
        assert (await finished(m, first)).status is (await finished(m, second)).status is JobStatus.COMPLETED
    assert (settings.max_concurrent, settings.queue.max_concurrent_jobs) == (1, 1)


@on_stores()
async def test_queue_full_refuses_and_creates_nothing(backend: Backend) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1, max_pending=3)) as (m, _):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        for i in range(3):
            await m.create_job("gated", {"key": f"q{i}"})
        with pytest.raises(QueueFull, match="maximum of 3 pending"):
            await m.create_job("gated", {"key": "one-too-many"})
        assert await stored(m) == 4 and await stored(m, JobStatus.PENDING) == 3
        gates.open("blocker")
        await gates.wait_started("q0")  # a slot frees up: submissions are accepted again
        await m.create_job("gated", {"key": "q3"})
        assert await stored(m, JobStatus.PENDING) == 3
        gates.open("q0", "q1", "q2", "q3")


# -- 5. resources ----------------------------------------------------------------------------

RESOURCES = [
    ("memoryMB", {"memory": 1000}, {"memory": 400}),
    ("cpuWeight", {"cpu": 4}, {"cpu": 1.6}),
    ("diskSpaceMB", {"disk": 100}, {"disk": 40}),
]


@pytest.mark.parametrize(("name", "cap", "need"), RESOURCES, ids=[r[0] for r in RESOURCES])
async def test_resources_admit_by_summed_requirements(
    backend: Backend, name: str, cap: dict[str, float], need: dict[str, float]
) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=10, queue=limits(**cap))) as (m, _):
        ids = [await m.create_job("gated", {"key": k}, task=task(needs=needs(**need))) for k in "abc"]
        await gates.wait_started("b")
        await probe(m)
        assert gates.order == ["a", "b"] and await status(m, ids[2]) is JobStatus.PENDING  # 0.4 + 0.4 fits, + 0.4 not
        gates.open("a")
        await gates.wait_started("c")
        gates.open("b", "c")
        for job_id in ids:
            await finished(m, job_id)
        gates.open("all")  # every finished job gave its share back: a job needing the whole capacity runs
        assert (
            await finished(m, await m.create_job("gated", {"key": "all"}, task=task(needs=needs(**cap))))
        ).status is JobStatus.COMPLETED


@pytest.mark.parametrize(("name", "cap", "need"), RESOURCES, ids=[r[0] for r in RESOURCES])
async def test_a_job_that_could_never_fit_is_refused_at_submission(
    backend: Backend, name: str, cap: dict[str, float], need: dict[str, float]
) -> None:
    too_big = {k: v * 3 for k, v in need.items()}
    async with backend.running([gated_tool(Gates())], Settings(queue=limits(**cap))) as (m, s):
        with pytest.raises(ResourceLimitExceeded, match=f"needs {name}=") as err:
            await m.create_job("gated", {"key": "x"}, task=task(needs=needs(**too_big)))
        assert err.value.context["resource"] == name
        assert await stored(m) == 0 and queued(s) == {}


@on_stores()
async def test_small_jobs_backfill_but_do_not_starve_a_large_job_at_the_head(backend: Backend) -> None:
    """Memory 1000: three small jobs (300 each) run; a large one (900, high) waits at the head.
    Within the 5 s reservation window a small job backfills; after it, none does until the
    large job has started."""
    gates, clock = Gates(), FakeClock()
    settings = Settings(max_concurrent=10, queue=limits(memory=1000))
    small, large = task(Priority.LOW, needs=needs(memory=300)), task(Priority.HIGH, needs=needs(memory=900))
    async with backend.running([gated_tool(gates)], settings, clock, reservation_ms=5000) as (m, s):
        ids = {k: await m.create_job("gated", {"key": k}, task=small) for k in ("s1", "s2", "s3")}
        await gates.wait_count(3)
        ids["L"] = await m.create_job("gated", {"key": "L"}, task=large)
        for k in ("s4", "s5", "s6"):
            ids[k] = await m.create_job("gated", {"key": k}, task=small)

        gates.open("s1")  # 600 used: the head (900) does not fit; s4 backfills inside the window
        await gates.wait_started("s4")
        assert await status(m, ids["L"]) is JobStatus.PENDING

        clock.advance(6)  # past the reservation window
        await decide_now(s)  # (a claim round begun before the jump has ended; the next ones see the new time)
        for k in ("s2", "s3", "s4"):  # 600, 300, then 0 used: no small job may start meanwhile
            assert s.executor.busy > 0
            gates.open(k)
            await finished(m, ids[k])
            await decide_now(s)
            assert {await status(m, ids[k]) for k in ("s5", "s6")} == {JobStatus.PENDING}
        await gates.wait_count(5)  # L, once nothing runs; a small job that slipped in is always before it
        assert gates.order == ["s1", "s2", "s3", "s4", "L"]
        assert await status(m, ids["s5"]) is JobStatus.PENDING  # 900 + 300 does not fit while L runs
        gates.open("L")
        await gates.wait_count(7)
        gates.open("s5", "s6")
        for job_id in ids.values():
            assert (await finished(m, job_id)).status is JobStatus.COMPLETED


async def test_a_stored_job_that_could_never_fit_here_fails_and_blocks_nobody(backend: Backend) -> None:
    """A pending job accepted under larger limits (another configuration, another program on the store) and
    adopted by a process whose limits it can never fit: it fails with the refusal a new call gets, naming this
    process's limit, instead of holding the head of the queue (past the reservation window: no job starts)."""
    gates, clock, store = Gates(), FakeClock(), backend.store
    now = int(clock.now * 1000)
    big = JobRecord(
        "big", "gated", {"key": "big"}, JobStatus.PENDING, now - 10_000, now - 10_000,
        task=task(Priority.HIGH, needs=needs(memory=4096)), owner="dead-host:1",
    )  # fmt: skip
    await store.open()
    await store.insert(big)
    gates.open("small")
    settings = Settings(max_concurrent=10, queue=limits(memory=2048))
    async with backend.running([gated_tool(gates)], settings, clock, reservation_ms=0) as (m, _):
        failed = await finished(m, "big")
        small = await finished(m, await m.create_job("gated", {"key": "small"}, task=task(needs=needs(memory=100))))
    assert failed.status is JobStatus.FAILED and gates.order == ["small"]
    text = "ResourceLimitExceeded: the job needs memoryMB=4096 but the limit is 2048"
    assert failed.result is not None and failed.result["content"][0]["text"] == text
    assert failed.progress_message == f"Job failed: {text}"
    assert small.status is JobStatus.COMPLETED


# -- 6. retries ------------------------------------------------------------------------------

NO_JITTER = Settings(queue=JobQueueConfig(retry_policy=RetryPolicyConfig(jitter=0)))


def flaky_tool(fail_times: int, name: str = "flaky") -> tuple[JobToolSpec, list[int]]:
    attempts: list[int] = []

    async def body(job: JobContext) -> str:
        attempts.append(job.attempt)
        if len(attempts) <= fail_times:
            raise RuntimeError(f"flaky failure {len(attempts)}")
        return "ok"

    return make_spec(body, name=name, retry_safe=True), attempts  # retries are opt-in


def test_retry_delay_schedule() -> None:
    policy = RetryPolicy.from_config(RetryPolicyConfig(jitter=0, max_delay_ms=10_000))
    assert [policy.delay(n) for n in range(1, 7)] == [1000, 2000, 4000, 8000, 10_000, 10_000]
    assert [policy.decide(RuntimeError(), done) for done in range(4)] == [1000, 2000, 4000, None]
    assert policy.decide(NonRetryableError("no"), 0) is None
    assert policy.delay(5000) == 10_000  # no OverflowError from 2.0 ** 4999
    jittery = RetryPolicy(jitter=0.1)
    assert all(900 <= jittery.delay(1) <= 1100 for _ in range(100))


async def test_a_job_failing_twice_then_succeeding_completes_with_retry_count_two(backend: Backend) -> None:
    clock = FakeClock()
    spec, attempts = flaky_tool(2)
    async with backend.running([spec], NO_JITTER, clock) as (m, s):
        job_id = await m.create_job("flaky", {})
        with m.subscribe(job_id) as sub:
            for retry, delay in ((1, 1000), (2, 2000)):
                await next_event(sub, EventType.RETRIED)
                rec = await m.get_record(job_id)
                assert rec.status is JobStatus.PENDING and rec.retry_count == retry
                assert (rec.progress_message or "").startswith(f"retry {retry}/3 in {delay // 1000} s after: ")
                assert f"RuntimeError: flaky failure {retry}" in (rec.progress_message or "")
                assert rec.run_after == m.now() + delay
                clock.advance(delay / 1000 - 0.001)
                await probe(m)
                assert await status(m, job_id) is JobStatus.PENDING, "released before its delay"
                assert len(attempts) == retry
                clock.advance(0.001)
                s.pump()  # the clock moved: due now
                await next_event(sub, EventType.STARTED)
            rec = await finished(m, job_id)
    assert rec.status is JobStatus.COMPLETED and rec.retry_count == 2 and rec.error_count == 2
    assert attempts == [1, 2, 3] and rec.attempt == 3


async def test_the_final_failure_after_max_retries_names_the_error(backend: Backend) -> None:
    clock = FakeClock()
    spec, attempts = flaky_tool(99)
    async with backend.running([spec], NO_JITTER, clock) as (m, s):
        job_id = await m.create_job("flaky", {}, task=task(metadata=TaskMetadata(max_retries=2)))
        with m.subscribe(job_id) as sub:
            for delay in (1, 2):
                await next_event(sub, EventType.RETRIED)
                assert f"/2 in {delay} s" in ((await m.get_record(job_id)).progress_message or "")
                clock.advance(delay)
                s.pump()
            rec = await finished(m, job_id)
    assert rec.status is JobStatus.FAILED and rec.retry_count == 2 and len(attempts) == 3
    assert rec.progress_message == "Job failed: RuntimeError: flaky failure 3"
    assert rec.result is not None and rec.result["isError"] is True


async def test_non_retryable_errors_are_not_retried(backend: Backend) -> None:
    async def refuse() -> None:
        raise NonRetryableError("bad input")

    async with backend.running([make_spec(refuse, name="refuse", retry_safe=True)], NO_JITTER) as (m, _):
        rec = await finished(m, await m.create_job("refuse", {}))
    assert rec.status is JobStatus.FAILED and rec.retry_count == 0
    assert rec.progress_message == "Job failed: NonRetryableError: bad input"


async def test_cancellation_is_never_retried(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()
    spec, attempts = flaky_tool(99)
    async with backend.running([gated_tool(gates), spec], NO_JITTER, clock) as (m, s):
        running_job = await m.create_job("gated", {"key": "r"})
        await gates.wait_started("r")
        await m.cancel_job(running_job, "stop")
        rec_running = await finished(m, running_job)

        backing_off = await m.create_job("flaky", {})
        with m.subscribe(backing_off) as sub:
            await next_event(sub, EventType.RETRIED)
        await m.cancel_job(backing_off)  # cancelled while pending between attempts
        rec_backing_off = await finished(m, backing_off)

        clock.advance(60)
        await probe(m)
        assert queued(s) == {} and s.executor.running == {}
    assert rec_running.status is JobStatus.CANCELLED and rec_running.retry_count == 0
    assert gates.order == ["r"] and gates.cancelled == ["r"]
    assert rec_backing_off.status is JobStatus.CANCELLED and attempts == [1]


async def test_a_retry_of_a_job_with_dependencies_still_waits_for_its_backoff(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()
    spec, attempts = flaky_tool(1)
    async with backend.running([gated_tool(gates), spec], NO_JITTER, clock) as (m, s):
        gates.open("a")
        a = await m.create_job("gated", {"key": "a"})
        await finished(m, a)
        job_id = await m.create_job("flaky", {}, task=task(deps=[a]))
        with m.subscribe(job_id) as sub:
            await next_event(sub, EventType.RETRIED)
        await probe(m)
        assert await status(m, job_id) is JobStatus.PENDING and attempts == [1]
        clock.advance(1)
        s.pump()
        rec = await finished(m, job_id)
    assert rec.status is JobStatus.COMPLETED and attempts == [1, 2]


# -- 7. time-outs ----------------------------------------------------------------------------
# These wait in real time (the time-out timer is the scheduler's, not the clock's), so they run once
# per source: memory (LocalSource; SQLite runs the same one) and PostgreSQL (ClaimSource).


@pytest.mark.parametrize(
    ("backend", "given_by"),
    [*(("memory", by) for by in ("job", "tool", "operation")), pytest.param("postgres", "job", marks=POSTGRES_MARKS)],
    indirect=["backend"],
)
async def test_a_timed_out_job_is_warned_at_80_percent_then_cancelled(backend: Backend, given_by: str) -> None:
    observed: list[str] = []

    async def slow(job: JobContext) -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            observed.append("cancelled")
            raise

    spec = make_spec(slow, name="slow", timeout=0.3 if given_by == "tool" else None)
    ops = {"analysis": 300} if given_by == "operation" else {}
    settings = Settings(queue=JobQueueConfig(timeout_policy=TimeoutPolicyConfig(operation_timeouts=ops)))
    spec_task = task(
        metadata=NO_RETRY,
        timeout_seconds=0.3 if given_by == "job" else None,
        operation_type="analysis" if given_by == "operation" else None,
    )
    events: list[EventType] = []

    async def seen(event: JobEvent) -> None:
        events.append(event.type)

    async with backend.running([spec], settings) as (m, _):
        started = time.monotonic()
        job_id = await m.create_job("slow", {}, task=spec_task)
        rec = await m.wait(job_id, WAIT, seen)
        elapsed = time.monotonic() - started
    assert rec.status is JobStatus.FAILED and observed == ["cancelled"]
    assert rec.progress_message == "Job failed: JobTimeout: timed out: the job ran past its time-out and was cancelled"
    assert "warning: 80% of the 0.3 s time-out used" in (rec.diagnostics or [])
    assert EventType.PROGRESS in events and events.index(EventType.PROGRESS) < events.index(EventType.FAILED)
    assert 0.28 <= elapsed < 2


@on_stores("memory", "postgres")  # real time: once per scheduler (see above)
async def test_work_that_ignores_cancellation_is_abandoned_after_the_grace_period(backend: Backend) -> None:
    stop = threading.Event()
    returned: list[bool] = []

    async def stubborn() -> None:
        # A worker thread that is not abandoned on cancel: the await ignores cancellation.
        returned.append(await anyio.to_thread.run_sync(stop.wait, 10.0))

    stubborn_spec = make_spec(stubborn, name="stubborn", retry_safe=True)  # would be retried if it were not abandoned
    async with backend.running([stubborn_spec], Settings(max_concurrent=1), grace_seconds=0.2) as (m, _):
        started = time.monotonic()
        job_id = await m.create_job("stubborn", {}, task=task(timeout_seconds=0.3))
        rec = await m.wait(job_id, WAIT)
        elapsed = time.monotonic() - started
        await probe(m)  # the only slot is free again
        assert returned == []  # while the work still runs
        stop.set()
    assert rec.status is JobStatus.FAILED and 0.45 <= elapsed < 2
    assert rec.progress_message == (
        "Job failed: JobTimeout: timed out, and the work ignored cancellation for 0.2 s: abandoned"
    )
    assert rec.retry_count == 0  # abandoned work may still run: never retried alongside it
    assert returned == [True]


def test_timeout_selection_order() -> None:
    policy = TimeoutPolicyConfig(default_timeout_ms=7000, operation_timeouts={"analysis": 5000})
    m = JobManager(MemoryStore(), Settings(queue=JobQueueConfig(timeout_policy=policy)), clock=FakeClock())

    async def fn() -> None: ...

    plain, timed = make_spec(fn, name="plain"), make_spec(fn, name="timed", timeout=3.0)
    analysing = make_spec(fn, name="analysing", operation_type="analysis")
    s = LocalSource(m, {spec.name: spec for spec in (plain, timed, analysing)}).executor

    def rec(spec: TaskSpec | None) -> JobRecord:
        return JobRecord("id", "x", {}, JobStatus.RUNNING, 0, 0, task=spec)

    assert s.timeout_for(rec(TaskSpec(timeout_seconds=1, operation_type="analysis")), timed) == 1
    assert s.timeout_for(rec(TaskSpec(operation_type="analysis")), timed) == 3
    assert s.timeout_for(rec(TaskSpec(operation_type="analysis")), plain) == 5
    assert s.timeout_for(rec(None), analysing) == 5
    assert s.timeout_for(rec(TaskSpec(operation_type="execution")), plain) == 7
    assert s.timeout_for(rec(None), plain) == 7


async def test_a_finished_run_is_freed_without_the_garbage_collector(backend: Backend) -> None:
    """A run's context, timers and records go when its task ends: a reference cycle (the time-out timer's
    callback and the context's wait hook both hold the run) left every run, with its records and results,
    to the cyclic garbage collector, whose passes over them cost the scheduler about a sixth of its time."""
    contexts: list[weakref.ref[JobContext]] = []

    async def keeps(job: JobContext) -> str:
        contexts.append(weakref.ref(job))
        return "done"

    gc.disable()  # nothing but reference counting frees the run
    try:
        async with backend.running([make_spec(keeps, name="keeps")]) as (m, sched):
            assert (await finished(m, await m.create_job("keeps", {}))).status is JobStatus.COMPLETED
            await sched.drained()
            for _ in range(100):  # the run's task ends a few loop turns after its slot is given back
                if contexts[0]() is None:
                    break
                await anyio.lowlevel.checkpoint()
            assert contexts[0]() is None, "the finished run is kept alive by a reference cycle"
    finally:
        gc.enable()


# -- 8. cancel -------------------------------------------------------------------------------


async def test_cancelling_a_running_job_stops_the_work(backend: Backend) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1, queue=limits(memory=100))) as (m, _):
        job_id = await m.create_job("gated", {"key": "r"}, task=task(needs=needs(memory=100)))
        await gates.wait_started("r")
        await m.cancel_job(job_id, "user asked")
        rec = await finished(m, job_id)
        gates.open("next")  # the slot and the memory are free again
        after = await m.create_job("gated", {"key": "next"}, task=task(needs=needs(memory=100)))
        assert (await finished(m, after)).status is JobStatus.COMPLETED
    assert rec.status is JobStatus.CANCELLED and gates.cancelled == ["r"]
    assert rec.progress_message == "Job cancelled: user asked" and rec.retry_count == 0


# -- 9. metrics ------------------------------------------------------------------------------


async def test_statistics_and_health_on_a_known_workload(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()

    async def bad() -> None:
        raise NonRetryableError("bad")

    tools = [gated_tool(gates, "work"), make_spec(bad, name="bad")]
    async with backend.running(tools, Settings(max_concurrent=1), clock) as (m, _):
        for i in range(1, 11):  # durations 100, 200, ..., 1000 ms by the fake clock
            job_id = await m.create_job("work", {"key": f"w{i}"})
            await gates.wait_started(f"w{i}")
            clock.advance(i / 10)
            gates.open(f"w{i}")
            await finished(m, job_id)
        for _ in range(2):
            await finished(m, await m.create_job("bad", {}))
        await m.create_job("work", {"key": "blocker"})
        await gates.wait_started("blocker")
        for prio in ("low", "low", "high", "critical", "critical", "critical"):
            await m.create_job("work", {"key": prio}, task=task(Priority(prio)))
        await m.cancel_job(await m.create_job("work", {"key": "gone"}))

        stats = await m.statistics()
        assert stats.counts == {"pending": 6, "running": 1, "completed": 10, "failed": 2, "cancelled": 1}
        assert stats.total == 20 and stats.running == 1 and stats.queue_depth == 6
        work, bad_stats = stats.by_tool["work"], stats.by_tool["bad"]
        assert (work.completed, work.failed, work.cancelled, work.success_rate) == (10, 0, 1, 1.0)
        assert (work.p50_duration_ms, work.p95_duration_ms, work.average_duration_ms) == (500, 1000, 550)
        assert (bad_stats.completed, bad_stats.failed, bad_stats.success_rate) == (0, 2, 0.0)
        assert bad_stats.p50_duration_ms == 0
        assert stats.throughput_per_minute == 12 and stats.error_rate_5m == pytest.approx(2 / 12)
        assert stats.health.status == "healthy" and stats.health.reasons == []
        assert stats.wire()["byTool"]["work"]["p95DurationMs"] == 1000

        m.stats.thresholds = HealthThresholds(max_queue_depth=10, max_error_rate=0.1)
        health = (await m.statistics()).health
        assert health.status == "degraded"
        assert health.reasons == ["error rate 17% over the last 5 minutes is over 10%"]

        clock.advance(61)
        m.stats.thresholds = HealthThresholds(max_queue_depth=5, max_error_rate=0.1)
        stats = await m.statistics()
        assert stats.throughput_per_minute == 0 and stats.health.status == "unhealthy"
        assert stats.health.reasons == [
            "queue depth 6 is over 5",
            "error rate 17% over the last 5 minutes is over 10%",
        ]
        gates.open(*gates.release, "low", "high", "critical")


@on_stores()
async def test_statistics_report_the_queue_by_priority_and_its_oldest_job(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1), clock) as (m, _):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        for prio in ("low", "low", "high", "critical", "critical", "critical"):
            await m.create_job("gated", {"key": prio}, task=task(Priority(prio)))
        stats = await m.statistics()
        assert stats.queue_depth == 6 and stats.queue_depth_by_priority == {"low": 2, "high": 1, "critical": 3}
        assert stats.oldest_pending_age_ms == 0 and stats.health.status == "healthy"

        m.stats.thresholds = HealthThresholds(max_oldest_pending_ms=60_000)
        clock.advance(61)
        stats = await m.statistics()
        assert stats.oldest_pending_age_ms == 61_000 and stats.health.status == "degraded"
        assert stats.health.reasons == ["oldest pending job waited 61000 ms, over 60000 ms"]
        gates.open(*gates.release, "low", "high", "critical")


@on_stores()
async def test_a_job_deferred_on_purpose_does_not_make_the_queue_look_stuck(backend: Backend) -> None:
    """A job with runAt an hour ahead counted as waiting since its creation: health went degraded after five
    minutes ("oldest pending job waited ..."). A job waits from when it may run."""
    gates, clock = Gates(), FakeClock()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1), clock) as (m, _):
        m.stats.thresholds = HealthThresholds(max_oldest_pending_ms=60_000)
        await m.create_job("gated", {"key": "later"}, run_at=m.now() + 3_600_000)
        clock.advance(120)
        stats = await m.statistics()
        assert stats.queue_depth == 1 and stats.oldest_pending_age_ms is None
        assert stats.health.status == "healthy", stats.health.reasons


@on_stores("postgres")  # a cluster concern: several processes, each running some of the tools
async def test_health_reports_pending_jobs_of_a_tool_no_live_worker_runs(backend: Backend) -> None:
    gates = Gates()
    async with backend.running([gated_tool(gates)], Settings(max_concurrent=1)) as (m, _):
        await m.create_job("gated", {"key": "blocker"})
        await gates.wait_started("blocker")
        await m.create_job("gated", {"key": "queued"})  # pending, but a live worker runs its tool
        async with JobManager(open_store(backend.store.url), Settings()) as submitter:  # runs no jobs itself
            for _ in range(2):
                await submitter.create_job("nobody-runs-this", {})
        stats = await m.statistics()
        assert stats.unserved_tools == {"nobody-runs-this": 2}
        assert "no live worker runs tool 'nobody-runs-this' (2 pending)" in stats.health.reasons
        assert stats.wire()["unservedTools"] == {"nobody-runs-this": 2}
        gates.open("blocker", "queued")


@on_stores("postgres")
async def test_statistics_on_a_replica_count_the_jobs_other_processes_ran(backend: Backend) -> None:
    async def ok() -> str:
        return "ok"

    async def bad() -> None:
        raise RuntimeError("bad")

    tools, clock = [make_spec(ok, name="ok"), make_spec(bad, name="bad")], FakeClock()
    async with backend.running(tools, clock=clock) as (worker, _):
        ids = [await worker.create_job("ok") for _ in range(3)] + [await worker.create_job("bad")]
        for job_id in ids:
            await finished(worker, job_id)
        replica_store = open_store(backend.store.url)
        replica = JobManager(replica_store, Settings(), clock=clock)
        ClaimSource(replica, {}, run_jobs=False)  # a server replica that runs nothing itself
        async with replica:
            stats = await replica.statistics()
    assert stats.by_tool["ok"].completed == 3 and stats.by_tool["ok"].success_rate == 1.0
    assert stats.by_tool["bad"].failed == 1 and stats.by_tool["bad"].success_rate == 0.0
    assert stats.by_tool["ok"].p50_duration_ms is not None and stats.throughput_per_minute == 4
    assert stats.error_rate_5m == 0.25 and stats.counts["completed"] == 3


# -- 10. recovery ----------------------------------------------------------------------------


def interrupted_message(backend: Backend) -> str:
    """What a running job of a dead owner fails with: a cluster (PostgreSQL) lost a worker (issue 8's words);
    a server's own store (SQLite) saw its server stop (issue 5's)."""
    return "interrupted: worker lost" if backend.shared else "interrupted: the server stopped while the job was running"


async def test_recovery_adopts_the_jobs_of_a_dead_owner(backend: Backend) -> None:
    gates, clock, store = Gates(), FakeClock(), backend.store
    now = int(clock.now * 1000)

    def orphan(job_id: str, tool: str, status: JobStatus, owner: str = "dead-host:1") -> JobRecord:
        started = now - 5000 if status is JobStatus.RUNNING else None
        attempt = 1 if status is JobStatus.RUNNING else 0
        return JobRecord(
            job_id, tool, {"key": job_id}, status, now - 10_000, now - 5000,
            owner=owner, attempt=attempt, started_at=started,
        )  # fmt: skip

    cancel_asked = orphan("cancel-asked", "safe", JobStatus.RUNNING)
    cancel_asked.cancel_requested = "user asked"  # the dead owner never acted on it
    gone_cancelled = orphan("gone-cancel-asked", "gone", JobStatus.PENDING)
    gone_cancelled.cancel_requested = "user asked"  # no process has its tool: any process ends it
    gone_running = orphan("gone-running-cancel-asked", "gone", JobStatus.RUNNING)
    gone_running.cancel_requested = "user asked"  # its run's leftovers are its tool's to end: left for it
    await store.open()
    for rec in (
        orphan("pending", "safe", JobStatus.PENDING),
        orphan("running-safe", "safe", JobStatus.RUNNING),
        orphan("running-fragile", "fragile", JobStatus.RUNNING),
        orphan("unknown-tool", "gone", JobStatus.PENDING),
        orphan("live-owner", "safe", JobStatus.PENDING, owner="alive-host:2"),
        orphan("live-running", "safe", JobStatus.RUNNING, owner="alive-host:2"),
        cancel_asked,
        gone_cancelled,
        gone_running,
    ):
        await store.insert(rec)
    await store.heartbeat("alive-host:2", now + 3_600_000)
    gates.open("pending", "running-safe", "running-fragile", "live-owner")
    tools = [gated_tool(gates, "safe", retry_safe=True), gated_tool(gates, "fragile")]
    async with backend.running(tools, clock=clock) as (m, _):
        pending, safe, fragile = [await finished(m, j) for j in ("pending", "running-safe", "running-fragile")]
        cancelled = await finished(m, "cancel-asked")
        gone_cancelled = await finished(m, "gone-cancel-asked")
        # in a cluster pending jobs are anyone's to claim; on a server's own store the live owner queued its
        # pending job in its own process
        live = await finished(m, "live-owner") if backend.shared else await m.get_record("live-owner")
        # a tool this process lacks: left to one that has it (a cluster's worker, or another program on the file)
        unknown = await m.get_record("unknown-tool")
        gone_running = await m.get_record("gone-running-cancel-asked")
        live_running = await m.get_record("live-running")
        reasons = (await m.statistics()).health.reasons
    assert pending.status is JobStatus.COMPLETED and pending.owner == m.owner
    assert safe.status is JobStatus.COMPLETED and safe.retry_count == 1 and safe.attempt == 2
    assert "requeued after an interruption (retry 1/3)" in (safe.diagnostics or [])
    assert fragile.status is JobStatus.FAILED
    assert fragile.progress_message == f"Job failed: {interrupted_message(backend)}"
    assert cancelled.status is JobStatus.CANCELLED and cancelled.progress_message == "Job cancelled: user asked"
    assert gone_cancelled.status is JobStatus.CANCELLED
    assert live_running.status is JobStatus.RUNNING and live_running.owner == "alive-host:2"
    assert live_running.attempt == 1 and live_running.retry_count == 0
    assert unknown.status is JobStatus.PENDING and unknown.owner == "dead-host:1"
    assert gone_running.status is JobStatus.RUNNING and gone_running.owner == "dead-host:1"
    if backend.shared:
        assert live.status is JobStatus.COMPLETED and live.owner == m.owner
        assert sorted(gates.order) == ["live-owner", "pending", "running-safe"]
        assert "no live worker runs tool 'gone' (1 pending)" in reasons, reasons
    else:
        assert live.status is JobStatus.PENDING and live.owner == "alive-host:2"
        assert sorted(gates.order) == ["pending", "running-safe"]
        assert "jobs wait for a server that has their tool (their own server stopped): 2 of tool 'gone'" in reasons, (
            reasons
        )


async def test_a_job_of_a_tool_no_longer_registered_fails_naming_it_when_its_program_is_this_one(
    backend: Backend,
) -> None:
    """Issue 5: a job whose tool is no longer registered ends failed naming the tool, on a server's own store,
    when its dead owner was this same program (`vibe_jobs.owners`); another program's (the SQLite file is every
    program's of its user) is left for it, and so is every one on a cluster's store (its workers serve different
    tools)."""
    clock, store = FakeClock(), backend.store
    now = int(clock.now * 1000)

    def orphan(job_id: str, status: JobStatus, program: str) -> JobRecord:
        running = status is JobStatus.RUNNING
        return JobRecord(
            job_id, "gone", {}, status, now - 10_000, now - 5000, owner=f"{program}@dead-host:1:0a0b",
            attempt=int(running), started_at=now - 5000 if running else None,
        )  # fmt: skip

    await store.open()
    for rec in (
        orphan("mine-pending", JobStatus.PENDING, "vibe-jobs"),
        orphan("mine-running", JobStatus.RUNNING, "vibe-jobs"),
        orphan("theirs", JobStatus.PENDING, "another-program"),
    ):
        await store.insert(rec)
    async with backend.running([], clock=clock) as (m, _):
        assert m.program == "vibe-jobs"
        read = m.get_record if backend.shared else functools.partial(finished, m)  # left, or failed at start
        mine = [await read(job_id) for job_id in ("mine-pending", "mine-running")]
        theirs = await m.get_record("theirs")
        reasons = (await m.statistics()).health.reasons
    if backend.shared:
        assert [rec.status for rec in (*mine, theirs)] == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PENDING]
        return
    for rec in mine:
        assert rec.status is JobStatus.FAILED, rec
        assert "the tool 'gone' is no longer registered on this server" in (rec.progress_message or ""), rec
    assert theirs.status is JobStatus.PENDING and theirs.owner == "another-program@dead-host:1:0a0b"
    assert "jobs wait for a server that has their tool (their own server stopped): 1 of tool 'gone'" in reasons


async def test_a_cancelled_pending_job_of_this_program_does_not_hide_another_program_s_waiting_one(
    backend: Backend,
) -> None:
    """A pending job of this program asked to be cancelled, of a tool no longer registered, is ended cancelled
    (any process ends such a one) and is no job left waiting: it is not taken off the count of the jobs that wait
    for another program (health named none of them until the next recovery pass)."""
    clock, store = FakeClock(), backend.store
    if backend.shared:
        pytest.skip("a cluster's store leaves every job of a tool a process lacks (no program fails them)")
    now = int(clock.now * 1000)

    def orphan(job_id: str, program: str, cancel: str | None = None) -> JobRecord:
        return JobRecord(
            job_id, "gone", {}, JobStatus.PENDING, now - 10_000, now - 5000, owner=f"{program}@dead-host:1:0a0b",
            cancel_requested=cancel,
        )  # fmt: skip

    await store.open()
    for rec in (orphan("mine", "vibe-jobs", cancel="by the agent"), orphan("theirs", "another-program")):
        await store.insert(rec)
    async with backend.running([], clock=clock) as (m, _):
        mine = await finished(m, "mine")
        theirs = await m.get_record("theirs")
        reasons = (await m.statistics()).health.reasons
    assert mine.status is JobStatus.CANCELLED, mine
    assert theirs.status is JobStatus.PENDING
    assert "jobs wait for a server that has their tool (their own server stopped): 1 of tool 'gone'" in reasons


async def test_a_recovery_pass_does_not_read_the_jobs_left_for_another_program(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs left for another program (their tool is not this process's) are only counted at each beat, never read
    (`JobStore.orphans`): a stopped program's 50,000 waiting jobs were read and decoded every 10 s, for as long as
    they waited, to find this program's among them."""
    clock, store = FakeClock(), backend.store
    if backend.shared:
        pytest.skip("a cluster's store fails no job of a tool a process lacks")
    now = int(clock.now * 1000)
    await store.open()
    for job_id, program in (("mine", "vibe-jobs"), ("theirs", "another-program")):
        owner = f"{program}@dead-host:1:0a0b"
        await store.insert(JobRecord(job_id, "gone", {}, JobStatus.PENDING, now - 10_000, now - 5000, owner=owner))
    async with backend.running([], clock=clock) as (m, source):
        assert (await finished(m, "mine")).status is JobStatus.FAILED
        read: list[str] = []
        orphans = store.orphans

        async def reading(*args: Any, **kwargs: Any) -> list[JobRecord]:
            found = await orphans(*args, **kwargs)
            read.extend(rec.id for rec in found)
            return found

        monkeypatch.setattr(store, "orphans", reading)
        assert isinstance(source, LocalSource)
        await source.recover()  # a beat's pass
        assert "theirs" not in read
        assert (await m.get_record("theirs")).status is JobStatus.PENDING


async def test_recovery_applies_the_retry_limit_a_failure_would(backend: Backend) -> None:
    """An interrupted job runs again exactly when a failed one would: the tool's own RetryPolicy
    counts as opting in and its max_retries is the limit; the job's diagnostics keep their cap."""
    gates, clock, store = Gates(), FakeClock(), backend.store
    now = int(clock.now * 1000)

    def interrupted(job_id: str, tool: str, retries_done: int, diagnostics: list[str] | None = None) -> JobRecord:
        return JobRecord(
            job_id, tool, {"key": job_id}, JobStatus.RUNNING, now - 10_000, now - 5000, owner="dead-host:1",
            attempt=retries_done + 1, retry_count=retries_done, started_at=now - 5000, diagnostics=diagnostics,
        )  # fmt: skip

    full = [f"line {i}" for i in range(MAX_DIAGNOSTICS)]
    await store.open()
    for rec in (
        interrupted("own-policy-first", "own-policy", 0, full),
        interrupted("own-policy-spent", "own-policy", 1),
        interrupted("safe-spent", "safe-one", 1),
    ):
        await store.insert(rec)
    one_retry = RetryPolicy(max_retries=1)
    tools = [
        gated_tool(gates, "own-policy", retry=one_retry),
        gated_tool(gates, "safe-one", retry_safe=True, retry=one_retry),
    ]
    gates.open("own-policy-first")
    async with backend.running(tools, clock=clock) as (m, _):
        first, spent, safe_spent = [
            await finished(m, j) for j in ("own-policy-first", "own-policy-spent", "safe-spent")
        ]
    assert first.status is JobStatus.COMPLETED and first.retry_count == 1 and gates.order == ["own-policy-first"]
    assert first.diagnostics is not None and len(first.diagnostics) == MAX_DIAGNOSTICS
    assert first.diagnostics[-1] == "requeued after an interruption (retry 1/1)" and first.diagnostics[0] == "line 1"
    for rec in (spent, safe_spent):
        assert rec.status is JobStatus.FAILED and rec.retry_count == 1
        assert rec.progress_message == f"Job failed: {interrupted_message(backend)}"


async def test_recovery_never_adopts_this_processs_own_jobs_after_a_late_heartbeat(backend: Backend) -> None:
    gates, clock = Gates(), FakeClock()
    async with backend.running([gated_tool(gates, retry_safe=True)], Settings(lease_ms=30_000), clock) as (m, s):
        job_id = await m.create_job("gated", {"key": "r"})
        await gates.wait_started("r")
        clock.advance(120)  # the lease (renewed every 10 s of real time) has lapsed by the clock
        assert [rec.id for rec in await m.store.orphans(m.now())] == [job_id]
        assert await s.recover() == 0
        rec = await m.get_record(job_id)
        assert rec.status is JobStatus.RUNNING and rec.retry_count == 0 and rec.attempt == 1
        gates.open("r")
        assert (await finished(m, job_id)).status is JobStatus.COMPLETED
    assert gates.order == ["r"]


@on_stores("sqlite", "postgres")  # the memory store answers without yielding: no cancel lands in a create
async def test_a_call_cancelled_while_its_job_is_stored_leaves_no_job_unqueued(backend: Backend) -> None:
    """A tool call cancelled by its client (notifications/cancelled, a dropped HTTP request) while `create_job`
    stores the job: the insert commits in the store whatever happens to its caller, so the job is queued
    too and runs; none is left pending, owned by this live process, until a restart (130 of 200 were)."""

    cancelled = 0  # calls cancelled while `create_job` was still at work
    calling = False

    async def cancel_soon(scope: anyio.CancelScope) -> None:
        nonlocal cancelled
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        cancelled += calling
        scope.cancel()

    async with backend.running([]) as (m, _):
        for _ in range(100):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_soon, scope)
                    calling = True
                    await m.create_job("probe", {})
                    calling = False
        stored = await m.store.query(JobQuery(limit=200))
        outcomes = Counter([(await m.wait(rec.id, WAIT)).status for rec in stored])
    assert cancelled, "no call was cancelled: the test proves nothing"
    assert set(outcomes) <= {JobStatus.COMPLETED}, outcomes
