"""JobManager: the single facade everything else calls. It owns state logic; stores only persist."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import os
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from pydantic import ValidationError

from vibe_jobs.clocks import ClockSteps, StoreClock
from vibe_jobs.durations import Durations
from vibe_jobs.errors import (
    DuplicateJob,
    InvalidParams,
    InvalidTask,
    InvalidTransition,
    JobError,
    JobNotFound,
    NotWaiting,
    ParamsTooLarge,
    QuotaExceeded,
    ResultAlreadySet,
    StaleWrite,
    StoreError,
    StoreLocked,
    UnknownDependency,
)
from vibe_jobs.events import STATUS_EVENTS, EventBus, EventType, JobEvent, Subscription, job_event
from vibe_jobs.identity import LOCAL_PRINCIPAL, Viewer
from vibe_jobs.ids import new_job_id
from vibe_jobs.logs import default_logging, get_logger, without_input
from vibe_jobs.metrics import ClusterFigures, HealthThresholds, QueueView, Statistics, StatsCollector, job_metrics
from vibe_jobs.models import (
    Job,
    JobMetrics,
    JobRecord,
    JobStatusMessage,
    PollingRecommendation,
    TaskSpec,
    priority_of,
)
from vibe_jobs.outages import StoreRetry
from vibe_jobs.owners import DEFAULT_PROGRAM, new_owner
from vibe_jobs.polling import decide, estimate_remaining
from vibe_jobs.questions import check_answer, open_question, pending_question, plain_answer, question_view
from vibe_jobs.recent import RecentRecords
from vibe_jobs.results import (
    as_result_dict,
    bounded_result,
    canonical_json,
    encodable,
    first_text,
    json_safe,
    json_size,
    safe_text,
    text_result,
    where_not_json,
)
from vibe_jobs.settings import Settings
from vibe_jobs.shared import SharedCall
from vibe_jobs.states import COMPLETED, FAILED, FINAL, PENDING, RUNNING, JobStatus, check_transition
from vibe_jobs.store import Guard, JobQuery, JobStore, open_store
from vibe_jobs.store.base import (
    NO_GUARD,
    PRINCIPAL_LOCK_WAIT_MS,
    PrincipalLocking,
    QueueReading,
    ScheduleStore,
    SharedJobStore,
    VersionGuard,
)

log = get_logger("vibe_jobs.manager")
MAX_DIAGNOSTICS = 100
MIN_PERIOD_SECONDS = 0.05  # the shortest beat and clean-up interval (settings of 0 given in Python: no busy loop)
MAX_DIAGNOSTIC_CHARS = 2000  # a diagnostic (or progress message) line longer than this is cut
MAX_STAGES = 50  # stage changes a job keeps (its history on the dashboard)
RECENT_RECORDS = 4096  # records remembered for the next change of their job
QUESTION_SHARE = 4  # a job's question takes at most 1/4 of an answer (every read of the job shows it)
MAX_RACES = 32  # compare-and-set attempts of one change before it gives up (StaleWrite)
Plan = Callable[[JobRecord], dict[str, Any] | None]
AnswerCheck = Callable[[Mapping[str, Any]], object]  # raises InvalidParams for an answer its job cannot take


class Runner(Protocol):
    """What the engine's job source offers the manager (admission, queueing, cancellation of running work)."""

    async def admit(self, rec: JobRecord) -> None: ...

    async def enqueue(self, rec: JobRecord) -> None: ...

    def on_finished(self, rec: JobRecord) -> None: ...

    def cancel_running(self, job_id: str, reason: str) -> bool: ...

    async def queue_view(self) -> QueueView: ...

    async def cluster_figures(self) -> ClusterFigures | None: ...

    async def run_timers(self) -> None: ...

    async def recover(self) -> int: ...

    async def hand_back(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None

    def first(self, kept: int) -> JobPage:
        """The page cut to its first `kept` jobs, its cursor going on after the last one kept."""
        if kept >= len(self.jobs):
            return self
        last = self.jobs[kept - 1]
        return JobPage(self.jobs[:kept], _encode_cursor(last.created_at, last.id))


class JobManager:
    """Create, update, read, cancel and clean up jobs. Use `async with JobManager(...)` to run it."""

    def __init__(
        self,
        store: JobStore | None = None,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        bus: EventBus | None = None,
        ticks: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        default_logging(self.settings.log_level, self.settings.log_format)  # never stdout: a program's own loop
        self.store: JobStore = store or open_store(self.settings.store_url)  # Settings(): memory://
        # The last record this manager wrote of each active job, tried first by the next change of that
        # job instead of a read. Compare-and-set makes a stale copy (another process wrote since) cost
        # one missed update and a re-read, never a lost change.
        self._recent = RecentRecords(RECENT_RECORDS)
        self._answer_checks: dict[str, AnswerCheck] = {}  # question id -> its job's own check (`ask`)
        s = self.settings
        self._quotas = any(q is not None for q in (s.quota_pending, s.quota_running, s.quota_params_bytes))
        # per principal, in this process (`principal_held`: across processes too, on a store that locks principals)
        self._quota_locks: dict[str, anyio.Lock] = {}
        self.clock = clock
        # seconds that never step (the monotonic clock), read beside the clock to see it stepped (`lease_now`); an
        # injected clock is its own unless given (its moves are time passing, as the tests that inject one mean)
        self.ticks: Callable[[], float] = ticks or (time.monotonic if clock is time.time else clock)
        self._steps = ClockSteps(self.now(), self.ticks())
        self.program = s.program or DEFAULT_PROGRAM
        self.owner = owner or new_owner(self.program)
        self.bus = bus or EventBus()
        self.stats = StatsCollector(
            HealthThresholds(
                max_queue_depth=s.health_max_queue_depth,
                max_error_rate=s.health_max_error_rate,
                max_oldest_pending_ms=s.health_max_oldest_pending_ms,
            ),
            self.ticks,
        )
        self.durations: Durations = self.stats.learned  # learned run times per tool, saved by maintenance
        self.runner: Runner | None = None
        self._tg: TaskGroup | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None  # the event loop it runs on (`_check_loop`)
        self.lease_until = 0  # when this process's lease ends, as of its last renewal the store answered
        # the lease's renewals, and the beat (durations, recovery) and retention, through store failures (outages.py)
        self._beat_seconds = beat = max(MIN_PERIOD_SECONDS, self.settings.lease_ms / 3000)  # a third of the lease
        self._renewing = StoreRetry("lease.renewal_failed", most=beat, on_failure=self.store_failed)
        self._maintaining = StoreRetry("maintenance.failed", most=beat, on_failure=self.store_failed)
        self._cleaning = StoreRetry("maintenance.failed", most=beat, on_failure=self.store_failed)
        # the figures asked for by nobody in particular (/health, /metrics, the dashboard: unauthenticated
        # probes at any rate): one count of the store at a time, shared by those who ask meanwhile
        self._all_figures = SharedCall(self._statistics)

    def now(self) -> int:
        """Epoch milliseconds by the injected clock."""
        return math.trunc(self.clock() * 1000)  # what int() gives, cheaper for a float

    def lease_now(self) -> int:
        """The time other processes' leases are judged by (recovery): now, less a forward step of the clock seen
        within the last lease. After a step forward (NTP, a VM resumed) every lease written before it looks expired
        for as long as the step: a live process is given a lease's time to renew under the new clock before its
        jobs are taken for an orphan's (recovery failed or ran again a job that was running)."""
        return self._steps.judged(self.now(), self.ticks(), self.settings.lease_ms)

    async def _keep_the_store_s_time(self) -> None:
        """On a store that processes of several machines share, keep the database's time (`clock_ms`): every
        process judged leases by its own wall clock, so a worker whose clock ran 10 s behind had its live jobs
        taken for orphans and run again elsewhere, over and over (review helper-60 F1). Measured at open and at
        every beat (a clock stepped by NTP after the start is followed: helper-65 F3); an injected clock is taken
        as given."""
        if isinstance(self.clock, StoreClock):
            await self.clock.measure(self.store)
        elif self.clock is time.time and isinstance(self.store, SharedJobStore):
            clock = StoreClock()
            if await clock.measure(self.store):
                self.clock = clock
                self._steps = ClockSteps(self.now(), self.ticks())  # the store's time is no step of this clock

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> JobManager:
        self._check_loop()
        await self.store.open()
        await self._keep_the_store_s_time()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        # the store may have gone away since it opened, or a part is damaged: the loops try again
        for step in (self._load_durations, self.renew_lease):
            await self._maintaining.attempt(step, pause=False)
        self._tg.start_soon(self._renewals)  # at once if that renewal failed, else a third of the lease on
        self._tg.start_soon(self._maintenance)
        self._tg.start_soon(self._cleanups)
        if self.runner is not None:
            self._tg.start_soon(self.runner.run_timers)
        await self._maintaining.attempt(self._beat, pause=False)
        return self

    def _check_loop(self) -> None:
        """RuntimeError on an event loop other than the one this manager first ran on: its engine's and store's
        events and locks are bound to that loop (a second `asyncio.run` failed on them, as a CancelledError)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = weakref.ref(loop)
        elif self._loop() is not loop:
            raise RuntimeError(
                "this JobManager ran on another event loop (an earlier asyncio.run or anyio.run), and its engine and "
                "store are bound to that one: make a new JobServer (or JobManager) for each event loop"
            )

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(et, e, tb)
        except BaseExceptionGroup as group:  # the body's own error comes out as itself (returning lets it go on)
            if e is None or group.exceptions != (e,):
                raise
        finally:  # whatever the body raised: the stop completes (jobs handed back, lease released, store closed)
            self._tg = None
            await self._stopped()

    async def _stopped(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.runner is not None:  # the jobs the stop interrupted, settled while the lease still holds them
                try:
                    await self.runner.hand_back()
                except Exception as exc:  # a fault of ours: they are left to recovery, the lease is released still
                    log.error("jobs.not_handed_back", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            try:
                await self.save_durations()
            except StoreError as exc:  # what was learned since the last beat is lost, the job states are not
                log.warning("durations.not_saved", error=str(exc))
            try:
                await self.store.release(self.owner)
            except StoreError as exc:  # the store is down as this process stops: its lease lapses on its own
                log.warning("lease.not_released", error=str(exc))
            await self.store.close()

    @property
    def closing(self) -> bool:
        """True once the manager is not running or has begun to stop (nothing new should start)."""
        return self._tg is None or self._tg.cancel_scope.cancel_called

    @property
    def task_group(self) -> TaskGroup:
        if self._tg is None:
            raise RuntimeError("the JobManager is not running; use `async with manager:`")
        return self._tg

    async def _renewals(self) -> None:
        """Renew this process's lease every lease/3, in a loop of its own: a slow beat (a long recovery pass,
        a tool's hook ending a dead run's leftovers, retention) never lets it lapse while the process lives,
        which another process on the store would take for this one's death (and adopt the jobs it runs)."""
        while True:
            if self.lease_until - self.now() > self.settings.lease_ms * 2 // 3:  # else behind (a renewal failed)
                await anyio.sleep(self._beat_seconds)
            while not await self._renewing.attempt(self.renew_lease):
                pass  # a failing store never stops the process: renewed again after a backoff

    async def _maintenance(self) -> None:
        """The beat, every lease/3: the store's time, learned durations, recovery of gone processes' jobs."""
        while True:
            await anyio.sleep(self._beat_seconds)
            while not await self._maintaining.attempt(self._beat):
                pass  # a failing store never stops the process: the beat is tried again after a backoff

    async def _cleanups(self) -> None:
        """Retention: `cleanup` every cleanup interval, by the ticks (never stepped: an hour's step back of the clock
        put the next clean-up off for the hour); awake at least every beat, as injected ticks may leap."""
        interval = max(MIN_PERIOD_SECONDS, self.settings.cleanup_interval_ms / 1000)  # 0 from Python: no busy loop
        next_cleanup = self.ticks() + interval
        while True:
            await anyio.sleep(min(self._beat_seconds, max(0.0, next_cleanup - self.ticks())))
            if self.ticks() >= next_cleanup:
                next_cleanup = self.ticks() + interval
                await self._cleaning.attempt(self.cleanup)

    async def _beat(self) -> None:
        await self._keep_the_store_s_time()
        await self.save_durations()
        self.stats.store_worked()
        if self.runner is not None:
            await self.runner.recover()

    async def renew_lease(self) -> None:
        """Renew this process's lease now (`_renewals` does every lease / 3)."""
        expires_at = self.now() + self.settings.lease_ms
        await self.store.heartbeat(self.owner, expires_at)
        self.lease_renewed(expires_at)

    async def renew_if_late(self) -> None:
        """Renew this process's lease now if a renewal was missed (less than a third of it left; the loop renews
        every third): the process stalled (suspended, stopped, swapped out) or the store failed. Work is started
        only under a live lease: under a lapsed one, another process would take it for an orphan's and run it
        again."""
        if self.lease_until - self.now() < self.settings.lease_ms // 3:
            await self.renew_lease()

    def lease_renewed(self, expires_at: int) -> None:
        """The store answered a renewal of this process's lease until `expires_at`."""
        self.lease_until = max(self.lease_until, expires_at)

    async def _load_durations(self) -> None:
        self.durations.load(await self.store.load_durations())

    async def save_durations(self) -> None:
        """Persist the learned durations that changed (kept dirty when the store refuses)."""
        if not self.durations.dirty:
            return
        rows = self.durations.take_dirty()
        try:
            await self.store.save_durations(rows, self.now())
        except StoreError:
            self.durations.dirty.update(rows)
            raise

    # -- creation --------------------------------------------------------------------------

    async def create_job(
        self,
        tool_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        task: TaskSpec | Mapping[str, Any] | None = None,
        dedupe: bool = False,
        trace_context: str | None = None,
        viewer: Viewer | None = None,
        run_at: int | None = None,
    ) -> str:
        """Store a new pending job of `viewer`'s principal (default: the local one) and return its id
        (after the store has it). Dedupe, dependencies and quotas are the principal's own; with `dedupe`, equal
        calls share the active job, also when they come at once (the store keeps one active job per key).
        `trace_context`: the W3C traceparent of the call that creates it, kept so that each attempt's span links
        to it;
        `run_at` (epoch ms) defers it: it is not runnable before then. A deadline (`task.deadline`) that is not
        after both now and `run_at` is refused: the job could never start. `task` may be a mapping of the
        specification's TaskJob fields (camelCase or snake_case), validated as a `TaskSpec`."""
        if self.runner is not None and self._tg is None:
            raise RuntimeError("the JobManager runs jobs only inside `async with manager:`")
        if task is not None and not isinstance(task, TaskSpec):
            task = _task_spec(task)
        if task is not None and task.deadline is not None:
            self._check_deadline(task.deadline, run_at)
        params = self.check_params(tool_name, params)
        principal = viewer.principal if viewer is not None else LOCAL_PRINCIPAL
        key = self._dedupe_key(tool_name, params, principal) if dedupe else None
        for _ in range(MAX_RACES):
            if key is not None and (existing := await self.store.find_active(key)) is not None:
                return existing.id
            rec = self._new_record(tool_name, params, task, key)
            if trace_context is not None:
                rec.trace_context = trace_context
            rec.principal = principal
            rec.run_after = run_at
            if task is not None and task.dependencies:
                await self._check_dependencies(rec, viewer)
            if await self._add_within_quotas(rec, self.store.insert):
                return rec.id
            # not stored: an equal call's job was stored first (the store keeps one active job per key)
        raise StaleWrite("equal calls' jobs kept starting and finishing under this call")

    async def create_task_job(
        self,
        tool_name: str,
        params: Mapping[str, Any] | None,
        spec: TaskSpec | Mapping[str, Any],
        *,
        viewer: Viewer | None = None,
    ) -> str:
        """A task job (priority, dependencies, resources, retries, time-out: `spec`): `create_job(..., task=spec)`
        under the name the scheduler's specification gives it."""
        return await self.create_job(tool_name, params, task=spec, viewer=viewer)

    async def fire_job(
        self,
        tool_name: str,
        params: Mapping[str, Any],
        task: TaskSpec | None,
        schedule_id: str,
        tick: int,
        principal: str = LOCAL_PRINCIPAL,
        *,
        version: int,
    ) -> str | None:
        """Store the job a schedule fires for `tick`, unless that tick fired already or the schedule is no
        longer at `version` (paused, changed, deleted since it was read): then None. The store writes the
        job and the (schedule, tick) key together, checking the version in the same step (`ScheduleStore.fire`)."""
        store = self.store
        if not isinstance(store, ScheduleStore):
            raise StoreError(f"the store {store.url} keeps no schedules")
        rec = self._new_record(tool_name, self.check_params(tool_name, params), task, None)
        rec.schedule_id, rec.tick, rec.principal = schedule_id, tick, principal
        return rec.id if await self._add_within_quotas(rec, lambda job: store.fire(job, version)) else None

    def _add_within_quotas(
        self, rec: JobRecord, insert: Callable[[JobRecord], Awaitable[bool | None]]
    ) -> Awaitable[bool]:
        """`_add`, after the principal's quotas (QuotaExceeded), for a call's job and a schedule's alike (a
        schedule's firings went past them: a principal held every run slot through one). The check and the
        insert are one step (`principal_held`): concurrent calls cannot all pass one count. Without quotas,
        `_add` itself (not a coroutine awaiting it: one layer less on every creation)."""
        return self._add_held(rec, insert) if self._quotas else self._add(rec, insert)

    async def _add_held(self, rec: JobRecord, insert: Callable[[JobRecord], Awaitable[bool | None]]) -> bool:
        async with self.principal_held(rec.principal):
            await self._check_quotas(rec.principal, rec.params)
            return await self._add(rec, insert)

    @contextlib.asynccontextmanager
    async def principal_held(self, principal: str) -> AsyncIterator[None]:
        """Hold `principal` while its quota is counted and what the count admits is stored: in this process (a
        lock per principal), and on a store that processes share, across them (`PrincipalLocking`: PostgreSQL,
        SQLite; before, servers sharing a store each let one more in at the same moment)."""
        lock = self._quota_locks.get(principal) or self._quota_locks.setdefault(principal, anyio.Lock())
        try:
            async with self._in_turn(lock):
                if isinstance(self.store, PrincipalLocking):
                    async with self.store.principal_lock(principal):
                        yield
                else:
                    yield
        finally:  # a lock nobody holds or waits for goes (each principal ever seen kept one: helper-66 F1)
            if not lock.locked() and not lock.statistics().tasks_waiting and self._quota_locks.get(principal) is lock:
                del self._quota_locks[principal]

    @staticmethod
    @contextlib.asynccontextmanager
    async def _in_turn(lock: anyio.Lock) -> AsyncIterator[None]:
        """Hold a principal's lock of this process, waited for PRINCIPAL_LOCK_WAIT_MS at most (StoreLocked after):
        the calls ahead each wait up to that long for the store's lock, so without a bound of its own the k-th
        call behind a stalled holder in another process was refused only after k bounds."""
        with anyio.move_on_after(PRINCIPAL_LOCK_WAIT_MS / 1000) as waiting:
            await lock.acquire()
        if waiting.cancelled_caught:
            said = (
                f"this caller's earlier calls in this process have held its quota count for over "
                f"{PRINCIPAL_LOCK_WAIT_MS / 1000:g} s (another process sharing the job store holds it, or the store "
                "is slow): nothing was created; try again"
            )
            raise StoreLocked(said, told=said)
        try:
            yield
        finally:
            lock.release()

    async def _add(self, rec: JobRecord, insert: Callable[[JobRecord], Awaitable[bool | None]]) -> bool:
        """Admit, store (by `insert`; False from it: nothing was stored), announce and queue a new job.

        Storing and queueing are one step a cancel cannot split (a tool call cancelled by its client, a dropped
        HTTP request): the insert commits in the store whatever happens to its caller, and a stored job that
        was never queued would wait, pending and owned by this live process, until a restart."""
        if self.runner is not None:
            await self.runner.admit(rec)
        if not self.store.waits:  # nothing yields, no cancel can land in between (a shield costs)
            return await self._store_and_queue(rec, insert)
        with anyio.CancelScope(shield=True):
            stored = await self._store_and_queue(rec, insert)
        return stored

    async def _store_and_queue(self, rec: JobRecord, insert: Callable[[JobRecord], Awaitable[bool | None]]) -> bool:
        try:
            stored = await insert(rec)
        except StoreError as exc:
            self.store_failed(exc)
            raise
        if stored is False:
            return False
        self.stats.counters.created[rec.tool_name] += 1
        self._recent.remember(rec)
        if self.bus.listened and self.bus.wants(rec.id):
            self._publish(EventType.CREATED, rec)
        if self.runner is not None:
            await self.runner.enqueue(rec)
        return True

    def _check_deadline(self, deadline: int, run_at: int | None) -> None:
        now = self.now()
        if run_at is not None and run_at >= now and deadline <= run_at:
            raise InvalidParams(f"deadline {deadline} is not after runAt {run_at}: the job could never start")
        if deadline <= now:
            raise InvalidParams(f"deadline {deadline} has passed (now {now}): the job could never start")

    def check_params(self, tool_name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The params a job of `tool_name` stores (a copy), or InvalidParams / ParamsTooLarge: an object that
        serialises as JSON within `max_params_bytes`."""
        if type(tool_name) is not str or not tool_name:
            raise InvalidParams("tool_name must be a non-empty string")
        if params is None:
            return {}
        if type(params) is not dict and not isinstance(params, Mapping):
            raise InvalidParams(f"params must be an object, not {type(params).__name__}")
        self.check_size(params)
        return dict(params)

    def check_size(self, value: Any, what: str = "params") -> None:
        """InvalidParams unless `value` (what a client gives a job to keep: params, an answer) serialises as JSON
        within `max_params_bytes`."""
        try:  # written out, not a helper's call: every job's creation passes here
            size = json_size(value)
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise not_json(what, exc, value) from None
        if size > self.settings.max_params_bytes:
            raise ParamsTooLarge(size, self.settings.max_params_bytes, f"{what} {'are' if what == 'params' else 'is'}")

    @staticmethod
    def _dedupe_key(tool_name: str, params: Mapping[str, Any], principal: str = LOCAL_PRINCIPAL) -> str:
        """Equal calls of one principal share a key; another principal's never does."""
        text = tool_name + "\0" + canonical_json(params, sort_keys=True)
        if principal != LOCAL_PRINCIPAL:
            text = principal + "\0" + text
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def _new_record(self, tool_name: str, params: dict[str, Any], task: TaskSpec | None, key: str | None) -> JobRecord:
        now = self.now()
        rec = JobRecord(
            new_job_id(), tool_name, params, PENDING, now, now
        )  # positional (bench/MEASUREMENTS.md: record construction)
        rec.owner = self.owner
        if task is not None:
            rec.task, rec.priority = task, task.priority.rank
        rec.dedupe_key = key
        return rec

    async def _check_dependencies(self, rec: JobRecord, viewer: Viewer | None) -> None:
        """Every dependency names a job `viewer` sees: read at once, as views (up to 1,000 of them, each read whole
        with a `get` of its own, were a round trip each and their results read for nothing)."""
        deps = rec.task.dependencies if rec.task else []
        found = await self.store.get_many(deps, viewer.scope if viewer is not None else None, whole=False)
        for dep in deps:
            if dep not in found:  # unknown, or another principal's
                # no job id in the error: no job was made (an agent reading one would look for it)
                raise UnknownDependency(f"dependency '{dep}' names no known job", dependency=dep)

    async def _check_quotas(self, principal: str, params: Mapping[str, Any]) -> None:
        """Refuse a new job of `principal` at one of its quotas (settings `quota_*`; None: no quota)."""
        s = self.settings
        if s.quota_pending is not None or s.quota_running is not None:
            counts = await self.store.counts(principal, active=True)
            for limit, status, setting in (
                (s.quota_pending, PENDING, "VIBE_JOBS_QUOTA_PENDING"),
                (s.quota_running, RUNNING, "VIBE_JOBS_QUOTA_RUNNING"),
            ):
                if limit is not None and counts[status] >= limit:
                    raise QuotaExceeded(principal, f"{status.value} jobs", counts[status], limit, setting)
        if s.quota_params_bytes is not None:
            held = sum(json_size(r.params) for r in await self.store.active(principal=principal))
            if held + json_size(params) > s.quota_params_bytes:
                what = f"bytes of params in pending and running jobs, and this job's {json_size(params)} more"
                raise QuotaExceeded(principal, what, held, s.quota_params_bytes, "VIBE_JOBS_QUOTA_PARAMS_BYTES")

    # -- changes ---------------------------------------------------------------------------

    async def get_record(self, job_id: str, viewer: Viewer | None = None) -> JobRecord:
        """The job; `JobNotFound` when there is none, or when `viewer` (if given) may not see it: the one
        place where another principal's job answers exactly as an unknown id."""
        if not job_id.isascii() and not encodable(job_id):
            # a lone surrogate (JSON's "\ud800", passed on over HTTP): no job has one (ids are made here), and the
            # SQLite and PostgreSQL stores fail on it, which read as the store failing (health degraded)
            raise JobNotFound(job_id)
        try:
            rec = await self.store.get(job_id)
        except StoreError as exc:
            self.store_failed(exc)
            raise
        if rec is None or (viewer is not None and not viewer.sees(rec.principal)):
            raise JobNotFound(job_id)
        return rec

    async def get_metrics(self, job_id: str, viewer: Viewer | None = None) -> JobMetrics:
        """The job's JobMetrics: times, CPU and memory measured while it ran, errors and retries."""
        return job_metrics(await self.get_record(job_id, viewer))

    async def get_job(self, job_id: str, viewer: Viewer | None = None) -> Job:
        return Job.from_record(await self.get_record(job_id, viewer))

    async def mutate(
        self, job_id: str, plan: Plan, guard: Guard = NO_GUARD, *, known: JobRecord | None = None
    ) -> JobRecord:
        """Apply `plan(record)` as a compare-and-set, re-reading and re-planning when raced: the one way
        a job changes. `plan` answers the changes, None for "nothing to do", or raises to refuse.

        The first try plans on a record held already (`known`, else the one this manager last wrote of
        the job) instead of reading. A stale copy is harmless: the update is guarded by its version, so
        it misses and the job is read afresh; a refusal or "nothing to do" decided on a copy is decided
        again on the job as read. `guard` is checked on the record planned on, and the store is asked
        for that record's version: every change bumps the version, so it pins the attempt and the
        status the guard was checked against.
        """
        rec = known if known is not None else self._recent.pop(job_id, None)
        read = rec is None
        for _ in range(MAX_RACES):
            if rec is None:
                rec = await self.get_record(job_id)
                read = True
            changes = self._plan(rec, plan, guard, read)
            if changes is None:
                if read:
                    return rec
            else:
                version = rec.version
                at_version = _AT_VERSION[version] if 0 <= version < _GUARDED_VERSIONS else VersionGuard(version)
                try:
                    new = await self.store.update(job_id, changes, at_version)
                except StoreError as exc:
                    self.store_failed(exc)
                    raise
                if self.stats.store_trouble is not None:
                    self.stats.store_worked()  # a write worked: a transient trouble is over
                if new is not None:
                    self._recent.remember(new)
                    self._after_change(new, rec.status)
                    return new
            rec = None
        raise StaleWrite("the job kept changing under this writer", job_id=job_id)

    def _plan(self, rec: JobRecord, plan: Plan, guard: Guard, read: bool) -> dict[str, Any] | None:
        """The changes `plan` makes of `rec` (stamped `updated_at`), or None: nothing to do, or (on a copy
        not `read` in this call) refused, so that the job is read and decided again."""
        try:
            if guard is not NO_GUARD and not guard.holds(rec):
                raise StaleWrite("the job moved on from this writer's attempt", job_id=rec.id)
            changes = plan(rec)
        except JobError:
            if read:
                raise
            return None
        if changes is not None:
            if "updated_at" not in changes:
                changes["updated_at"] = self.now()
            if rec.waiting_for is not None and changes.get("status", rec.status) != rec.status:
                changes["waiting_for"] = None  # a question belongs to one run: it ends with it
        return changes

    def _after_change(self, rec: JobRecord, old_status: JobStatus) -> None:
        status = rec.status
        if status is old_status:
            kind = EventType.PROGRESS
        elif status is PENDING:
            kind = EventType.RETRIED
            self.stats.counters.retried[rec.tool_name] += 1
        else:
            kind = STATUS_EVENTS[status]
            if status in FINAL:
                self.stats.record_finish(rec)  # counts, histograms, learned durations
                if self.bus.listened and self.bus.wants(rec.id):
                    self._publish(kind, rec)
                if self.runner is not None:
                    self.runner.on_finished(rec)
                return
            if rec.attempt == 1 and rec.started_at is not None:  # the first start: how long it queued
                self.stats.counters.started(rec.tool_name, rec.started_at - rec.created_at)
        if self.bus.listened and self.bus.wants(rec.id):
            self._publish(kind, rec)

    def _publish(self, kind: EventType, rec: JobRecord) -> None:
        """Publish a change (callers on the hot path ask `bus.listened` and `bus.wants` first: nobody listens,
        nothing is built)."""
        self.bus.publish(job_event(kind, rec))

    async def update_job_status(
        self, job_id: str, status: JobStatus | str, message: str | None = None, progress: float | None = None
    ) -> JobRecord:
        """Move a job to `status` (the same active status is a progress update)."""
        target = status if type(status) is JobStatus else JobStatus(status)
        if progress is not None:
            _check_percent("progress", progress)

        def plan(rec: JobRecord) -> dict[str, Any]:
            if target is not rec.status:
                changes = self._status_changes(rec, target)
            else:
                if rec.status in FINAL:
                    check_transition(rec.id, rec.status, target)
                changes = {}
            if message is not None or progress is not None:
                _progress_changes(changes, message, progress)
            return changes

        return await self.mutate(job_id, plan)

    def _status_changes(self, rec: JobRecord, target: JobStatus) -> dict[str, Any]:
        check_transition(rec.id, rec.status, target)
        now = self.now()
        if target is RUNNING:
            return {
                "status": target,
                "updated_at": now,
                "started_at": rec.started_at or now,
                "owner": self.owner,
                "attempt": rec.attempt + 1,
            }
        if target in FINAL:
            return {"status": target, "updated_at": now, "finished_at": finished_at(rec, now)}
        return {"status": target, "updated_at": now}

    async def start_job(self, job_id: str, *, owned: bool = False) -> JobRecord:
        """Claim a pending job for this process (pending -> running, attempt + 1), as a compare-and-set.

        A job that is running already is refused (`InvalidTransition`): two claims never both win.
        `owned=True` (the scheduler) also refuses a job another process owns (`StaleWrite`): one it
        adopted while this process's lease had lapsed is no longer ours to run. A pending job whose cancel
        was asked for ends cancelled instead: the record answered is then not running (not to be run).
        """

        def plan(rec: JobRecord) -> dict[str, Any]:
            if owned and rec.owner is not None and rec.owner != self.owner:
                raise StaleWrite(f"the job is owned by {rec.owner}, not by this process", job_id=rec.id)
            if rec.cancel_requested is not None and rec.status is PENDING:
                return self._cancelled_changes(rec, rec.cancel_requested)  # asked before it started: never runs
            return self._status_changes(rec, RUNNING)  # raises unless the job is pending

        return await self.mutate(job_id, plan)

    async def update_progress(
        self,
        job_id: str,
        percent: float | None,
        message: str | None = None,
        *,
        stage: str | None = None,
        sub_progress: float | None = None,
        diagnostic: str | Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        attempt: int | None = None,
    ) -> JobRecord:
        """Record progress of an active job; refused once the job is finished. `diagnostic`: a line, or lines
        (each its own diagnostic)."""
        _check_percent("progress", percent)
        _check_percent("sub_progress", sub_progress)

        def plan(rec: JobRecord) -> dict[str, Any]:
            if rec.status in FINAL:
                raise InvalidTransition(rec.id, rec.status.value, rec.status.value, "the job is finished")
            changes = _progress_changes({}, message, percent)
            changes.update(_detail_changes(rec, stage, sub_progress, diagnostic, metadata))
            kept = changes.get("current_stage")  # the stage as the job keeps it (a line: cut, no NUL)
            if kept is not None and kept != rec.current_stage:
                entry = {"stage": kept, "at": self.now(), "progress": percent}
                changes["stage_history"] = [*(rec.stage_history or ()), entry][-MAX_STAGES:]
            return changes

        return await self.mutate(job_id, plan, _fence(attempt))

    async def add_diagnostic(self, job_id: str, text: str, *, attempt: int | None = None) -> JobRecord:
        return await self.update_progress(job_id, None, diagnostic=text, attempt=attempt)

    async def set_job_result(
        self,
        job_id: str,
        result: Any,
        *,
        attempt: int | None = None,
        extra: Mapping[str, Any] | None = None,
        diagnostics: list[str] | None = None,
        known: JobRecord | None = None,
        guard: Guard | None = None,
    ) -> JobRecord:
        """Finish a job with a CallToolResult-shaped value: `isError` decides completed or failed.

        `diagnostics` are appended to the job's own (as stored when the result lands). The write lands only
        while `guard` holds (default: the `attempt`'s fence)."""
        value = bounded_result(as_result_dict(result), self.settings.max_result_bytes)
        target = FAILED if value.get("isError") else COMPLETED

        def plan(rec: JobRecord) -> dict[str, Any]:
            if rec.result is not None:
                raise ResultAlreadySet(rec.id, rec.status.value, target.value, "the job has a result already")
            changes = self._status_changes(rec, target)
            changes["result"] = value
            changes["progress_message"] = _finish_message(target, value)
            if extra:
                changes.update(extra)
            if diagnostics:
                changes["diagnostics"] = capped_diagnostics(rec.diagnostics, diagnostics)
            if target is COMPLETED:  # done: all of it, and all of the stage it ended in (not "0 of render")
                changes["progress_percentage"] = 100.0
                if rec.sub_progress is not None:
                    changes["sub_progress"] = 100.0
            return changes

        return await self.mutate(job_id, plan, _fence(attempt) if guard is None else guard, known=known)

    async def fail_job(
        self,
        job_id: str,
        message: str,
        *,
        attempt: int | None = None,
        diagnostics: list[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        guard: Guard | None = None,
    ) -> JobRecord:
        """Finish a job as failed with an error result carrying `message`."""
        result = text_result(message, is_error=True)
        return await self.set_job_result(
            job_id, result, attempt=attempt, extra=extra, diagnostics=diagnostics, guard=guard
        )

    async def cancel_job(self, job_id: str, reason: str | None = None, viewer: Viewer | None = None) -> JobRecord:
        """Cancel a job: a pending one never runs; a running one is stopped by whoever runs it."""
        why = diagnostic_line(reason) if reason else "cancelled by request"

        def plan(rec: JobRecord) -> dict[str, Any] | None:
            if rec.status in FINAL:
                raise InvalidTransition(rec.id, rec.status.value, "cancelled", "the job is finished")
            if rec.status is JobStatus.RUNNING and self._runs_elsewhere(rec):
                return {"cancel_requested": why}
            return self._cancelled_changes(rec, why)

        def stopping(rec: JobRecord) -> dict[str, Any] | None:
            """Its run here is stopped (and writes it cancelled); a run that had finished may have written a
            retry meanwhile: that pending job is cancelled here, or it would run again (or wait for ever)."""
            if rec.status is JobStatus.RUNNING:
                return {"cancel_requested": why}
            return None if rec.status in FINAL else self._cancelled_changes(rec, why)

        rec = await self.get_record(job_id, viewer)
        runner = self.runner
        if rec.status is JobStatus.RUNNING and runner is not None and runner.cancel_running(job_id, why):
            new = await self.mutate(job_id, stopping)
            if new.status is JobStatus.RUNNING and new.attempt != rec.attempt:  # its retry started here meanwhile
                runner.cancel_running(job_id, why)
            return new
        return await self.mutate(job_id, plan)

    def _runs_elsewhere(self, rec: JobRecord) -> bool:
        return rec.owner is not None and rec.owner != self.owner

    def _cancelled_changes(self, rec: JobRecord, why: str) -> dict[str, Any]:
        changes = self._status_changes(rec, JobStatus.CANCELLED)
        text = f"Job cancelled: {why}"
        changes.update(cancel_requested=why, progress_message=text, result=text_result(text, is_error=True))
        return changes

    async def requeue(self, job_id: str, plan: Plan, guard: Guard = NO_GUARD) -> JobRecord:
        """Queue a job again (a retry, a claim given back): the changes `plan` makes, unless a cancel was
        asked for meanwhile: then it ends cancelled (a claim never takes a job whose cancel was asked for,
        so a pending one would wait for ever)."""

        def requeue_or_cancel(rec: JobRecord) -> dict[str, Any] | None:
            if rec.cancel_requested is not None and rec.status not in FINAL:
                return self._cancelled_changes(rec, rec.cancel_requested)
            return plan(rec)

        return await self.mutate(job_id, requeue_or_cancel, guard)

    async def finish_cancelled(
        self, job_id: str, reason: str, *, attempt: int | None = None, diagnostics: list[str] | None = None
    ) -> JobRecord:
        """Record that running work stopped because it was cancelled."""

        def plan(rec: JobRecord) -> dict[str, Any] | None:
            if rec.status in FINAL:
                return None
            changes = self._cancelled_changes(rec, reason)
            if diagnostics:
                changes["diagnostics"] = capped_diagnostics(rec.diagnostics, diagnostics)
            return changes

        return await self.mutate(job_id, plan, _fence(attempt))

    async def adopt_pending(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Adopt pending orphans for this process in one store call (`JobStore.adopt_pending`, `engine.recovery`):
        each a compare-and-set on the version it was read at, the change `mutate` makes of it with recovery's plan
        (owner and updated_at), so a job another process changed since is left alone and not answered. Each
        record adopted is remembered and its change published, as `mutate` does (a status kept: a progress event)."""
        recent = self._recent
        for rec in jobs:
            recent.pop(rec.id, None)  # as `mutate` takes it: a copy this manager holds is not the job's any more
        try:
            adopted = await self.store.adopt_pending(jobs, self.owner, self.now())
        except StoreError as exc:
            self.store_failed(exc)
            raise
        if self.stats.store_trouble is not None:
            self.stats.store_worked()
        for new in adopted:
            recent.remember(new)
            self._after_change(new, PENDING)
        return adopted

    # -- questions (a running job waits for an answer) ---------------------------------------

    async def ask(
        self, job_id: str, request: Mapping[str, Any], *, attempt: int | None = None, check: AnswerCheck | None = None
    ) -> str | None:
        """Store a question of the running job (`request`: method and params, see `questions`); its id, or None
        when the job's cancel was asked for: nobody can answer it then (`open_question`), the run is stopping.

        A job asks one question at a time; the status stays running while it waits. A question is at most a
        quarter of `max_answer_bytes` of JSON (InvalidParams): every read of the job shows it, and one that
        could not be shown would leave the job unreadable over HTTP (the proxy declines an upstream's).
        `check`: the asking job's own test of an answer (its pydantic model), run by `answer` in this process
        until `await_answer` ends: an answer that fails it is refused and the question stays open."""
        key = os.urandom(8).hex()
        limit = self.settings.max_answer_bytes // QUESTION_SHARE
        try:
            size = json_size(request)
        except (TypeError, ValueError) as exc:  # NaN, a lone surrogate: no client could be asked it
            raise not_json("the question", exc, request) from None
        if size > limit:
            raise InvalidParams(
                f"the question is {size:,} bytes of JSON, more than a job may ask ({limit:,}: a quarter of "
                "VIBE_JOBS_MAX_ANSWER_BYTES, so that every read of the job can show it)"
            )

        withdrawn = False

        def plan(rec: JobRecord) -> dict[str, Any] | None:
            nonlocal withdrawn
            if rec.status is not RUNNING:
                raise InvalidTransition(rec.id, rec.status.value, "waiting", "only a running job asks")
            withdrawn = rec.cancel_requested is not None
            if withdrawn:
                return None
            if pending_question(rec.waiting_for) is not None:
                raise InvalidParams("the job is waiting for an answer already: one question at a time")
            return {"waiting_for": {"id": key, **request, "askedAt": self.now()}}

        if check is not None:
            self._answer_checks[key] = check  # before the question can be read
        try:
            await self.mutate(job_id, plan, _fence(attempt))
        except BaseException:
            self._answer_checks.pop(key, None)
            raise
        if withdrawn:
            self._answer_checks.pop(key, None)
            return None
        return key

    async def answer(
        self,
        job_id: str,
        answer: Any,
        *,
        request_id: str | None = None,
        action: str | None = None,
        viewer: Viewer | None = None,
    ) -> JobRecord:
        """Answer the question the job waits on (checked against it; the first answer wins).
        `request_id`, when given, must name that question. With `action` (an agent's answer), `answer` is
        only the content: the fields asked for, or a sampling reply's text."""

        def plan(rec: JobRecord) -> dict[str, Any]:
            if viewer is not None and not viewer.sees(rec.principal):
                raise JobNotFound(job_id)  # another principal's job answers as an unknown id
            question = open_question(rec)
            if question is None and rec.cancel_requested is not None and pending_question(rec.waiting_for):
                raise NotWaiting(f"Job '{rec.id}' is being cancelled: its question is withdrawn", job_id=rec.id)
            if question is None or (request_id is not None and request_id != question["id"]):
                raise NotWaiting(
                    f"Job '{rec.id}' is not waiting for {'this ' if request_id else 'an '}answer", job_id=rec.id
                )
            given = answer if action is None else plain_answer(question, answer, action)
            checked = check_answer(question, given)
            if (own := self._answer_checks.get(question["id"])) is not None:
                _run_check(own, checked)  # the asking job's model (pattern, format, validators)
            self.check_size(checked, "the answer")
            return {"waiting_for": {**question, "answer": checked}}

        return await self.mutate(job_id, plan)

    async def await_answer(
        self, job_id: str, request_id: str, seconds: float, *, attempt: int | None = None, refresh: float = 1.0
    ) -> dict[str, Any] | None:
        """Wait up to `seconds` for the answer to question `request_id`, then take the question
        off the job. None when nobody answered in time. Cancelled while it waits, it takes the question off
        too: the run's clean-up may ask one of its own."""
        taken = False
        try:
            with self.subscribe(job_id) as sub, anyio.move_on_after(seconds):
                while await self._answer_of(job_id, request_id) is None:
                    with anyio.move_on_after(refresh):  # re-read now and then: answers given in other processes
                        await sub.__anext__()
            taken = True
            return await self._take_question(job_id, request_id, attempt)
        finally:
            self._answer_checks.pop(request_id, None)
            if not taken:
                await self._withdraw_question(job_id, request_id, attempt)

    async def _withdraw_question(self, job_id: str, request_id: str, attempt: int | None) -> None:
        """Take a question off a wait that ended by an exception (the exception goes on: this one's is dropped,
        and the run's end takes the question off anyway)."""
        with contextlib.suppress(JobError):
            await self._take_question(job_id, request_id, attempt)

    async def _answer_of(self, job_id: str, request_id: str) -> dict[str, Any] | None:
        waiting = (await self.get_record(job_id)).waiting_for
        if waiting is None or waiting.get("id") != request_id:
            raise NotWaiting(f"Job '{job_id}' no longer waits on question {request_id}", job_id=job_id)
        answer: dict[str, Any] | None = waiting.get("answer")
        return answer

    async def _take_question(self, job_id: str, request_id: str, attempt: int | None) -> dict[str, Any] | None:
        taken: list[dict[str, Any] | None] = [None]

        def plan(rec: JobRecord) -> dict[str, Any] | None:
            waiting = rec.waiting_for
            if waiting is None or waiting.get("id") != request_id:
                return None
            taken[0] = waiting.get("answer")  # an answer that came as time ran out still counts
            return {"waiting_for": None}

        with anyio.CancelScope(shield=True):
            await self.mutate(job_id, plan, _fence(attempt))
        return taken[0]

    # -- reading ---------------------------------------------------------------------------

    async def poll(
        self, job_id: str, *, long_poll: bool = False, include_details: bool = True, viewer: Viewer | None = None
    ) -> JobStatusMessage:
        """Read a job the way an agent does: with access accounting and a polling recommendation."""
        rec = await self.get_record(job_id, viewer)
        now = self.now()
        remaining = estimate_remaining(
            now=now,
            started_at=rec.started_at,
            progress=rec.progress_percentage,
            estimated_duration=self.expected_duration(rec),
        )
        d = decide(
            self.settings.polling,
            now=now,
            finished=rec.finished,
            reads=rec.access_count,
            next_check_time=rec.next_check_time,
            remaining_ms=remaining,
            long_poll=long_poll,
            runnable_at=_runnable_at(rec, now) if rec.status is PENDING else None,
        )
        reads = rec.access_count + (1 if d.counted else 0)
        self.stats.counters.polls["long_poll" if long_poll else "rate_limited" if d.rate_limited else "served"] += 1
        if d.counted:
            await self._touch(job_id, reads, now, d.next_check_time)
        rec_reco = None
        if d.interval is not None and d.next_check_time is not None:
            rec_reco = PollingRecommendation(interval=d.interval, next_check_time=d.next_check_time)
        return self._status_message(rec, now, rec_reco, d.rate_limited, include_details, reads)

    async def _touch(self, job_id: str, reads: int, now: int, next_check_time: int | None) -> None:
        """Record a read. A store that cannot take the write now (locked by another process, full) does not
        cost the reader its answer: the job was read; health names the failure."""
        try:
            await self.store.touch(job_id, reads, now, next_check_time)
        except StoreError as exc:
            if not exc.transient:
                raise
            self.store_failed(exc)
            log.warning("poll.read_not_recorded", job_id=job_id, error=f"{type(exc).__name__}: {exc}")

    def expected_duration(self, rec: JobRecord) -> int | None:
        """The job's own estimatedDuration, else what its tool's completed runs taught (None: unknown)."""
        task = rec.task
        if task is not None and task.estimated_duration is not None:
            return task.estimated_duration
        return self.durations.estimate(rec.tool_name, task.operation_type if task is not None else None)

    async def status_message(
        self, job_id: str, *, include_details: bool = True, viewer: Viewer | None = None
    ) -> JobStatusMessage:
        """The job as it stands, for observers: no access accounting and no polling recommendation."""
        rec = await self.get_record(job_id, viewer)
        return self._status_message(rec, self.now(), None, False, include_details, rec.access_count)

    def _status_message(
        self, rec: JobRecord, now: int, reco: PollingRecommendation | None, limited: bool, details: bool, reads: int
    ) -> JobStatusMessage:
        # model_construct: every value comes from a validated record (this is the hot path of polling)
        return JobStatusMessage.model_construct(
            job_id=rec.id,
            tool_name=rec.tool_name,
            status=rec.status,
            message=status_text(rec),
            progress=rec.progress_percentage or 0.0,  # always on the wire (DESIGN.md): 0 until the job says more
            timestamp=now,
            polling_recommendation=reco,
            details=rec.details() if details else None,
            result=rec.result if rec.finished else None,
            rate_limited=limited,
            access_count=reads,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            metrics=job_metrics(rec).wire() if rec.finished and details else None,
            waiting_for=question_view(rec),
            schedule_id=rec.schedule_id,
            tick=rec.tick,
            run_at=rec.run_at,
            deadline=rec.task.deadline if rec.task is not None else None,
        )

    async def wait(
        self,
        job_id: str,
        seconds: float,
        on_event: Callable[[JobEvent], Awaitable[None]] | None = None,
        *,
        refresh: float = 1.0,
        viewer: Viewer | None = None,
        stop: Callable[[JobRecord], bool] | None = None,
        on_start: Callable[[JobRecord], Awaitable[None]] | None = None,
    ) -> JobRecord:
        """Wait until the job finishes, `stop(record)` holds, or `seconds` pass; `on_start` sees the job as the
        wait begins (read once subscribed: `on_event` then sees each change after it, none missed between).

        A change published here carries the record it stored: the wait judges the job by that one (shared by every
        waiter, none reads the job again: many long-polls of one job cost no store reads as it reports), once no
        newer change is buffered behind it. The job is read when an event carries no record (a change made in
        another process, a job deleted), and at least every `refresh` seconds: other processes' changes. (A read
        is no change: the read counts of the record answered may lag behind the store's.)"""
        with self.subscribe(job_id) as sub:
            rec = await self.get_record(job_id, viewer)
            read_at = anyio.current_time()
            with anyio.move_on_after(seconds):
                if on_start is not None:
                    await on_start(rec)  # within the wait's time, as each `on_event`
                while not rec.finished and not (stop is not None and stop(rec)):
                    event = await sub.next_by(read_at + refresh)  # re-read now and then: other processes' changes
                    if event is not None and on_event is not None:
                        await on_event(event)
                    if event is None or event.record is None or anyio.current_time() >= read_at + refresh:
                        rec = await self.get_record(job_id)
                        read_at = anyio.current_time()
                    elif not sub.pending and event.record.version > rec.version:
                        rec = event.record  # (not an older one: stored before the wait read the job, published after)
        return rec

    def subscribe(self, job_id: str | None = None) -> Subscription:
        """Events of one job (or all jobs), published after each stored change."""
        return self.bus.subscribe(job_id)

    async def list_jobs(
        self,
        status: JobStatus | str | None = None,
        tool_name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        viewer: Viewer | None = None,
        *,
        with_result: bool = True,
        with_params: bool = True,
    ) -> JobPage:
        """Jobs newest first (only `viewer`'s, when given), `limit` a page; pass `next_cursor` back for the next.
        `with_result=False`: the jobs' results are not read (each `result` is None), for lists that do not show
        them; `with_params=False` likewise their params (each {})."""
        if not 1 <= limit <= 500:
            raise InvalidParams(f"limit must be between 1 and 500, got {limit}")
        scope = viewer.scope if viewer is not None else None
        query = JobQuery(
            JobStatus(status) if status else None,
            tool_name,
            limit + 1,
            _decode_cursor(cursor),
            scope,
            with_result,
            with_params,
        )
        try:
            records = await self.store.query(query)
        except StoreError as exc:
            self.store_failed(exc)
            raise
        more = len(records) > limit
        page = records[:limit]
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return JobPage([Job.from_record(r) for r in page], next_cursor)

    async def statistics(self, viewer: Viewer | None = None, *, server_wide: bool | None = None) -> Statistics:
        """The figures. Counts by status: `viewer`'s own jobs (every job for admin or no viewer). The figures made
        of every principal's jobs (per tool, throughput, error rate, the queue, learned durations) are left
        empty unless `server_wide` (default: admin or no viewer): `Statistics.own_only`."""
        if viewer is None and server_wide is None:
            return await self._all_figures()
        return await self._statistics(viewer, server_wide)

    async def _statistics(self, viewer: Viewer | None = None, server_wide: bool | None = None) -> Statistics:
        queue, cluster = await self._queue_figures()
        try:
            counts = await self.store.counts(viewer.scope if viewer is not None else None)
        except StoreError as exc:  # health names the failure instead of the statistics failing
            self.store_failed(exc)
            counts = {}
        # the oldest pending job's age at now less a forward step seen within health's threshold: a job waiting a
        # second showed an hour's wait after an hour's step, and health said degraded for as long as it waited
        aged_at = self._steps.judged(self.now(), self.ticks(), self.settings.health_max_oldest_pending_ms)
        snapshot = self.stats.snapshot(counts, aged_at, queue, cluster, await self.store.problem())
        if not (server_wide if server_wide is not None else viewer is None or viewer.scope is None):
            return snapshot.own_only()
        return snapshot.model_copy(update={"learned_durations": self.durations.summary()})

    async def _queue_figures(self) -> tuple[QueueView | None, ClusterFigures | None]:
        """The queue and the figures of every process's jobs, as the runner knows them. A manager that runs no
        jobs (`vibe-jobs dashboard` alone) on a shared store reads them from the shared table, as a worker does."""
        if self.runner is not None:
            return await self.runner.queue_view(), await self.runner.cluster_figures()
        if isinstance(self.store, SharedJobStore):
            now = self.now()
            return await shared_queue_view(self.store, now), await self.store.finished_figures(now)
        if isinstance(self.store, QueueReading):  # one machine's file: the queue by priority, no leases' tools
            return await pending_queue_view(self.store, self.now()), None
        return None, None

    def store_failed(self, exc: StoreError) -> None:
        """Note a store failure for health (degraded, naming it)."""
        if not isinstance(exc, DuplicateJob):
            self.stats.store_failed(f"{type(exc).__name__}: {exc}"[:300], exc.transient)

    async def cleanup(self, now: int | None = None) -> int:
        """Delete finished jobs older than the retention; pending and running jobs are never removed."""
        retention = self.settings.max_retention_ms
        # a forward step of the clock seen within the retention does not age the finished jobs (a day's step
        # deleted one that had finished a second before, its result unread)
        cutoff = (self._steps.judged(self.now(), self.ticks(), retention) if now is None else now) - retention
        removed = 0
        while ids := await self.store.delete_finished(cutoff):
            removed += len(ids)
            self._publish_expired(ids)
            await anyio.lowlevel.checkpoint()  # other work between batches (a store that never waits: the memory
            # store's sweep of 100,000 expired jobs held the event loop for its whole 360 ms)
        if removed:
            log.info("jobs.expired", count=removed)
        return removed

    def _publish_expired(self, ids: list[str]) -> None:
        if self.bus.subscriber_count:
            at = self.now()
            for job_id in ids:
                self.bus.publish(JobEvent(EventType.EXPIRED, job_id, "", JobStatus.COMPLETED, 0, at))


_RUNNING_ONLY = (JobStatus.RUNNING,)
# the guards of a job's first versions, built once (immutable): a lookup, where a cache's was a call
_GUARDED_VERSIONS = 1024
_AT_VERSION = tuple(VersionGuard(version) for version in range(_GUARDED_VERSIONS))


def _run_check(check: AnswerCheck, answer: Mapping[str, Any]) -> None:
    """A job's own check of an answer: InvalidParams when it refuses it, whatever its model's validators raise
    (a TypeError in one is the job's bug; the answer is refused, the question stays, the server goes on)."""
    try:
        check(answer)
    except JobError:
        raise
    except Exception as exc:
        raise InvalidParams(f"the job's check of the answer failed: {type(exc).__name__}: {exc}"[:2000]) from None


def _runnable_at(rec: JobRecord, now: int) -> int | None:
    """When a pending job may run at the earliest (its run_after), as the clock reads now: when `now` is before the
    job's last write, the clock went back since, and the run_after (a retry's backoff end, kept by the monotonic
    clock) is brought back as far, at least (else its reader was told to wait, and refused meanwhile, for the
    step)."""
    run_after = rec.run_after
    if run_after is None or now >= rec.updated_at:
        return run_after
    return run_after - (rec.updated_at - now)


def finished_at(rec: JobRecord, now: int) -> int:
    """When a job that ends `now` finished: never before it started (the clock stepped back since: its duration
    is 0, not negative; statistics, /metrics and the run times polling learns take it)."""
    started = rec.started_at
    return now if started is None or now >= started else started


def not_json(what: str, exc: Exception, value: Any = None) -> InvalidParams:
    """The refusal of `what`, a value JSON cannot carry (NaN, a lone surrogate, an object): `exc` says why, and
    the place in `value` where it is, when found (`p.x`: a NaN in a nested model's field was named nowhere)."""
    place = where_not_json(value) if value is not None else None
    at = f" (at {what}{place})" if place else ""
    return InvalidParams(f"{what} must be JSON-serialisable: {exc}{at}")


def capped_diagnostics(old: Iterable[str] | None, new: Iterable[str]) -> list[str]:
    """A job's diagnostics with `new` lines appended: the last MAX_DIAGNOSTICS of them, each new line at most
    MAX_DIAGNOSTIC_CHARS (the one cap) and valid Unicode."""
    return [*(old or ()), *(diagnostic_line(line) for line in new)][-MAX_DIAGNOSTICS:]


def diagnostic_line(line: str) -> str:
    """A line as a job keeps it (a diagnostic, a progress message, a stage, a cancel reason): valid Unicode
    with no NUL (every store can hold it: PostgreSQL's text cannot hold a NUL), NULs shown as `\\x00` as
    lone surrogates are shown escaped, and at most MAX_DIAGNOSTIC_CHARS, marker included; a longer one is
    cut, saying how long it was."""
    line = safe_text(str(line))
    if "\x00" in line:
        line = line.replace("\x00", "\\x00")
    if len(line) <= MAX_DIAGNOSTIC_CHARS:
        return line
    marker = f" [line cut: {len(line):,} characters]"
    return line[: MAX_DIAGNOSTIC_CHARS - len(marker)] + marker


def _fence(attempt: int | None) -> Guard:
    """A running attempt's writes: they land only while that very attempt is running.

    (A requeued job keeps its attempt number until it is claimed again, so the status matters too.)
    """
    return NO_GUARD if attempt is None else Guard(attempt=attempt, statuses=_RUNNING_ONLY)


def _task_spec(task: Mapping[str, Any]) -> TaskSpec:
    """A `task` mapping as its TaskSpec; InvalidTask (an InvalidParams and a ValueError) naming each field that is
    unknown or wrong (pydantic's own ValidationError quoted the input)."""
    try:
        return TaskSpec.model_validate(task)
    except ValidationError as exc:
        raise InvalidTask(f"task: {without_input(exc)}") from None


def _check_percent(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= 100:
        raise InvalidParams(f"{name} must be between 0 and 100, got {value}")


def _progress_changes(changes: dict[str, Any], message: str | None, percent: float | None) -> dict[str, Any]:
    if message is not None:
        changes["progress_message"] = diagnostic_line(message)
    if percent is not None:
        changes["progress_percentage"] = float(percent)
    return changes


def _detail_changes(
    rec: JobRecord,
    stage: str | None,
    sub_progress: float | None,
    diagnostic: str | Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if stage is not None:
        changes["current_stage"] = diagnostic_line(stage)
    if sub_progress is not None:
        changes["sub_progress"] = float(sub_progress)
    if diagnostic is not None:
        lines = (diagnostic,) if isinstance(diagnostic, str) else diagnostic
        changes["diagnostics"] = capped_diagnostics(rec.diagnostics, lines)
    if metadata:
        changes["detail_metadata"] = json_safe({**(rec.detail_metadata or {}), **metadata})
    return changes


def _finish_message(status: JobStatus, result: dict[str, Any]) -> str:
    if status is COMPLETED:
        return "Job completed"
    return diagnostic_line(f"Job failed: {first_text(result) or 'the tool reported an error'}")


def status_text(rec: JobRecord) -> str:
    """A one-line human description of where the job is."""
    if rec.progress_message:
        return rec.progress_message
    return {
        JobStatus.PENDING: "Job is queued",
        JobStatus.RUNNING: "Job is running",
        JobStatus.COMPLETED: "Job completed",
        JobStatus.FAILED: "Job failed",
        JobStatus.CANCELLED: "Job was cancelled",
    }[rec.status]


def _encode_cursor(created_at: int, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}:{job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split(":", 1)
        at = int(created)
    except (ValueError, UnicodeDecodeError):
        at, job_id = -1, ""
    # a forged one never reaches a store: a time no store column holds (int64) or an id holding a NUL
    # failed there as the store's error, and counted against its health
    if not 0 <= at < 2**63 or not job_id or "\x00" in job_id:
        raise InvalidParams(
            f"cursor {cursor!r} is not a cursor this server gave out: pass the nextCursor of the previous page "
            "as it came, or no cursor for the first page"
        )
    return at, job_id


async def shared_queue_view(store: SharedJobStore, now: int) -> QueueView:
    """The shared queue by priority, its oldest job and the tools no process with a live lease runs, as the
    database holds them now."""
    queue = await pending_queue_view(store, now)
    unserved = await store.unserved_tools(now) if queue.depth_by_priority else {}
    return QueueView(queue.depth_by_priority, queue.oldest_pending_created_at, unserved)


async def pending_queue_view(store: QueueReading, now: int) -> QueueView:
    """The queue every process sharing `store` feeds: pending jobs by priority and its oldest job."""
    rows = await store.pending_by_priority(now)
    depth = {priority_of(rank).value: count for rank, count, _ in rows}
    waiting = [since for _, _, since in rows if since is not None]
    return QueueView(depth, min(waiting, default=None), {})
