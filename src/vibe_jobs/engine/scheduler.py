"""The scheduler: admission (priority with aging, dependencies, concurrency, resources), execution,
retries, time-outs and cancellation of jobs whose tool this process runs.

Ordering: a job's key is `created_at - weight(priority) * aging_ms`; the smallest key runs first.
Waiting raises a job's effective priority by one weight unit per `aging_ms`, and because that
shift is the same for every job, the order never needs recomputing: one heap, O(log n) a decision.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import resource
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from vibe_jobs.context import JobContext
from vibe_jobs.engine.recovery import recover_orphans
from vibe_jobs.engine.taskset import TaskSet
from vibe_jobs.engine.timers import Timer, Timers
from vibe_jobs.errors import (
    DependencyFailed,
    InvalidTransition,
    JobError,
    JobTimeout,
    QueueFull,
    ResourceLimitExceeded,
    StaleWrite,
    StoreError,
)
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import debug_enabled, get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import ClusterFigures, QueueView
from vibe_jobs.models import JobRecord, Priority, ResourceRequirements
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.states import FINAL, JobStatus
from vibe_jobs.store.base import Guard

log = get_logger("vibe_jobs.engine.scheduler")

DEFAULT_REQUIREMENTS = ResourceRequirements()
CANCEL_CHECK_SECONDS = 0.5
SETTLE_RETRY_SECONDS = 30.0  # keep trying to write a finished job's outcome while the store fails
RANK_PRIORITY = {p.rank: p for p in Priority}


@dataclass(slots=True)
class _Queued:
    job_id: str
    tool: str
    priority: Priority
    created_at: int
    needs: tuple[float, float, float]
    run_after: int | None = None


@dataclass(slots=True)
class _Run:
    ctx: JobContext
    needs: tuple[float, float, float]
    rec: JobRecord  # as the claim returned it: running, this attempt
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: bool = False  # the work returned (or raised); nobody waits on it: the run's own task did the work
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    error_trace: str | None = None
    timed_out: bool = False
    lost: bool = False  # another process adopted the job (our lease had lapsed): write nothing
    abandoned: bool = False  # the work ignored its time-out's cancellation: settled without it
    released: bool = False  # its slot (concurrency, resources) is given back
    timer: Timer | None = None  # the next time-out stage (warn, cancel, abandon)
    cpu0: float = 0.0
    wall0: float = 0.0


class Scheduler:
    """Runs the jobs of registered tools under the queue configuration of the manager's settings."""

    def __init__(
        self,
        manager: JobManager,
        tools: Mapping[str, JobToolSpec],
        *,
        grace_seconds: float = 5.0,
        reservation_ms: int = 5_000,
    ) -> None:
        self.m, self.tools = manager, tools
        self.cfg = manager.settings.queue
        self.max_concurrent = manager.settings.max_concurrent
        self.aging_ms = manager.settings.aging_ms
        self.retry = RetryPolicy.from_config(self.cfg.retry_policy)
        self.grace_seconds, self.reservation_ms = grace_seconds, reservation_ms
        self.queued: dict[str, _Queued] = {}
        self.running: dict[str, _Run] = {}
        self.starting = 0
        self._ready: list[tuple[float, int, str]] = []
        self._delayed: list[tuple[int, int, str]] = []
        self._parked: dict[str, list[tuple[float, int, str]]] = {}  # ready jobs of a tool at its limit
        self._waiting: dict[str, set[str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._usage = [0.0, 0.0, 0.0]
        self._per_tool: Counter[str] = Counter()
        self._seq = itertools.count()
        self._head_blocked_since: int | None = None
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self.timers = Timers()
        self.runs = TaskSet()  # one task per job run
        self.max_running_seen = 0
        manager.runner = self

    # -- admission -------------------------------------------------------------------------

    async def admit(self, rec: JobRecord) -> None:
        """Refuse a job that the queue cannot take or that could never fit the resource limits."""
        self._check_room(len(self.queued))
        self._check_fits(rec)

    def _check_room(self, pending: int) -> None:
        if pending >= self.m.settings.max_pending:
            raise QueueFull(f"the queue holds its maximum of {self.m.settings.max_pending} pending jobs")

    def _check_fits(self, rec: JobRecord) -> None:
        needs = _needs(rec)
        limits = self.cfg.resource_limits
        caps = (limits.max_memory_mb, limits.max_cpu_weight, limits.max_disk_space_mb)
        for name, need, cap in zip(("memoryMB", "cpuWeight", "diskSpaceMB"), needs, caps, strict=True):
            if need > cap:
                raise ResourceLimitExceeded(f"the job needs {name}={need:g} but the limit is {cap:g}", resource=name)

    async def enqueue(self, rec: JobRecord) -> None:
        """Queue a stored pending job; it waits for its dependencies first."""
        if rec.tool_name not in self.tools or rec.status is not JobStatus.PENDING:
            return
        entry = _Queued(
            rec.id,
            rec.tool_name,
            RANK_PRIORITY.get(rec.priority, Priority.MEDIUM),
            rec.created_at,
            _needs(rec),
            rec.run_after,
        )
        self.queued[rec.id] = entry
        deps = set(rec.task.dependencies) if rec.task else set()
        if deps:
            # It becomes ready (honouring run_after) when its last dependency completes.
            await self._wait_for(rec.id, deps)
        else:
            self._make_ready(entry, rec.run_after)
        self.pump()

    async def _wait_for(self, job_id: str, deps: set[str]) -> None:
        self._waiting[job_id] = set(deps)
        for dep in deps:
            self._dependents.setdefault(dep, set()).add(job_id)
        for dep in deps:
            dep_rec = await self.m.store.get(dep)
            if dep_rec is None:
                self._dependency_finished(dep, None)  # removed by clean-up: its outcome is unknown
            elif dep_rec.status in FINAL:
                self._dependency_finished(dep, dep_rec.status)

    def _make_ready(self, entry: _Queued, run_after: int | None) -> None:
        if run_after is not None and run_after > self.m.now():
            heapq.heappush(self._delayed, (run_after, next(self._seq), entry.job_id))
            self._wake.set()
            return
        weight = self.cfg.priority_weights.get(entry.priority, 1.0)
        heapq.heappush(self._ready, (entry.created_at - weight * self.aging_ms, next(self._seq), entry.job_id))

    def on_finished(self, rec: JobRecord) -> None:
        """A job reached a final state: forget it if queued, and settle its dependents."""
        self.queued.pop(rec.id, None)
        self._waiting.pop(rec.id, None)
        self._dependency_finished(rec.id, rec.status)

    def _dependency_finished(self, dep: str, status: JobStatus | None) -> None:
        for job_id in self._dependents.pop(dep, set()):
            waiting = self._waiting.get(job_id)
            if waiting is None:
                continue
            if status is JobStatus.COMPLETED:
                waiting.discard(dep)
                if not waiting:
                    del self._waiting[job_id]
                    if (entry := self.queued.get(job_id)) is not None:
                        self._make_ready(entry, entry.run_after)
            else:
                self._waiting.pop(job_id, None)
                self.queued.pop(job_id, None)  # it must never start; the failure follows
                self.m.task_group.start_soon(self._fail_dependent, job_id, dep, status)
        self.pump()

    async def _fail_dependent(self, job_id: str, dep: str, status: JobStatus | None) -> None:
        what = status.value if status is not None else "no longer exists"
        err = DependencyFailed(f"dependency '{dep}' {what}; this job did not run", job_id=job_id)
        try:
            await self.m.fail_job(job_id, _error_text(err), extra={"current_stage": "dependency_failed"})
        except (InvalidTransition, StaleWrite):
            pass  # cancelled or finished meanwhile

    # -- picking ---------------------------------------------------------------------------

    def pump(self) -> None:
        """Start as many ready jobs as the limits allow (none once the manager is stopping)."""
        if self.m.closing:
            return  # a run ending in the shutdown must not claim the next queued job
        now = self.m.now()
        self._release_delayed(now)
        while self._ready and len(self.running) + self.starting < self.max_concurrent:
            entry = self._pick(now)
            if entry is None:
                return
            self._start(entry)

    def _release_delayed(self, now: int) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job_id = heapq.heappop(self._delayed)
            if (entry := self.queued.get(job_id)) is not None and job_id not in self._waiting:
                self._make_ready(entry, None)

    def _pick(self, now: int) -> _Queued | None:
        """The first ready job that fits; smaller jobs backfill past a blocked head only for a while."""
        skipped: list[tuple[float, int, str]] = []
        chosen: _Queued | None = None
        head_blocked = False
        while self._ready and len(skipped) < 256:
            item = heapq.heappop(self._ready)
            entry = self.queued.get(item[2])
            if entry is None or item[2] in self._waiting:
                continue  # cancelled, finished or stale
            if self._tool_full(entry.tool):
                heapq.heappush(self._parked.setdefault(entry.tool, []), item)  # back when a slot frees
                continue
            if self._fits(entry.needs):
                chosen = entry
                break
            skipped.append(item)
            if not head_blocked:
                head_blocked = True
                if not self._may_backfill(now):
                    break
        if chosen is not None and not head_blocked:
            self._head_blocked_since = None
        for item in skipped:
            heapq.heappush(self._ready, item)
        return chosen

    def _may_backfill(self, now: int) -> bool:
        if self._head_blocked_since is None:
            self._head_blocked_since = now
        return now - self._head_blocked_since < self.reservation_ms

    def _tool_full(self, tool: str) -> bool:
        limit = self.tools[tool].max_concurrent
        return limit is not None and self._per_tool[tool] >= limit

    def _fits(self, needs: tuple[float, float, float]) -> bool:
        lim = self.cfg.resource_limits
        caps = (lim.max_memory_mb, lim.max_cpu_weight, lim.max_disk_space_mb)
        return all(used + need <= cap for used, need, cap in zip(self._usage, needs, caps, strict=True))

    def _start(self, entry: _Queued) -> None:
        del self.queued[entry.job_id]
        self._take(entry.tool, entry.needs, +1)
        self.starting += 1
        self.runs.spawn(self.m.task_group, self._run, entry)

    def _take(self, tool: str, needs: tuple[float, float, float], sign: int) -> None:
        self._usage = [u + sign * n for u, n in zip(self._usage, needs, strict=True)]
        self._per_tool[tool] += sign
        if sign < 0:
            self._unpark(tool)

    def _unpark(self, tool: str) -> None:
        """A slot of `tool` freed: its best parked job competes again."""
        parked = self._parked.get(tool)
        while parked:
            item = heapq.heappop(parked)
            if item[2] in self.queued:
                heapq.heappush(self._ready, item)
                break
        if not parked:
            self._parked.pop(tool, None)

    # -- running ---------------------------------------------------------------------------

    async def _run(self, entry: _Queued) -> None:
        """One task per job: claim, do the work, write the outcome (time-outs come from `self.timers`)."""
        run: _Run | None = None
        try:
            run = await self._claim(entry)
            if run is not None:
                await self._execute(entry, run)
        finally:
            if run is None:
                self.starting -= 1
            self._release(entry.tool, entry.needs, run)

    def _release(self, tool: str, needs: tuple[float, float, float], run: _Run | None) -> None:
        """Give a run's slot back, once (an abandoned run's is given back when it is given up)."""
        if run is not None:
            if run.released:
                return
            run.released = True
            if self.running.get(run.rec.id) is run:
                del self.running[run.rec.id]  # not a newer attempt's run (a retry may claim first)
        self._take(tool, needs, -1)
        if not self.running and not self.starting:
            self._idle.set()
        self.pump()

    async def drained(self) -> None:
        """Return once no job of this process is starting or running."""
        while self.running or self.starting:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _claim(self, entry: _Queued) -> _Run | None:
        try:
            rec = await self.m.start_job(entry.job_id, owned=True)
        except (InvalidTransition, StaleWrite, JobError):
            return None  # cancelled (or gone) before it started
        return self._begin(rec, entry.needs)

    def _begin(self, rec: JobRecord, needs: tuple[float, float, float]) -> _Run:
        """Account a job this process now runs (claimed as `rec`) and build its run."""
        run = _Run(JobContext(self.m, rec.id, rec.attempt, rec.tool_name), needs, rec)
        run.ctx.cancel_scope = run.scope
        self.starting -= 1
        self.running[rec.id] = run
        self.max_running_seen = max(self.max_running_seen, len(self.running))
        if debug_enabled():
            log.debug("job.started", job_id=rec.id, tool=rec.tool_name, attempt=rec.attempt)
        return run

    async def _execute(self, entry: _Queued, run: _Run) -> None:
        # no re-read: the claim (a compare-and-set) just returned the record, with no await since;
        # a cancel or a takeover from now on reaches the work through its cancel scope
        rec = run.rec
        spec = self.tools[entry.tool]
        run.cpu0, run.wall0 = time.process_time(), time.monotonic()
        timeout = self._timeout_for(rec, spec)
        run.timer = self._at(timeout * 0.8, lambda: self._warn(run, timeout))
        try:
            with run.scope:
                run.result = await spec.invoke(rec.params, run.ctx)
        except Exception as exc:
            run.error, run.error_trace = exc, traceback.format_exc()
        finally:
            run.done = True
            self.timers.cancel(run.timer)
        if not run.abandoned:
            await self._settle_durably(rec, spec, run, False, _usage(run.ctx, run.cpu0, run.wall0))

    # -- time-outs: warn at 80 %, cancel at 100 %, abandon after the grace period ----------

    def _at(self, delay: float, callback: Any) -> Timer:
        return self.timers.call_at(anyio.current_time() + delay, callback, self.m.task_group)

    def _warn(self, run: _Run, timeout: float) -> None:
        run.ctx.diagnostic(f"warning: 80% of the {timeout:g} s time-out used")
        self.runs.spawn(self.m.task_group, self._flush_diagnostics, run)
        run.timer = self._at(timeout * 0.2, lambda: self._expire(run))

    def _expire(self, run: _Run) -> None:
        run.timed_out = True
        run.scope.cancel()
        run.timer = self._at(self.grace_seconds, lambda: self._abandon(run))

    def _abandon(self, run: _Run) -> None:
        """The work ignored its cancellation for the grace period: fail the job and free its slot now
        (the work itself goes on until it returns, and its outcome is then discarded)."""
        run.abandoned = True
        self.runs.spawn(self.m.task_group, self._settle_abandoned, run)

    async def _settle_abandoned(self, run: _Run) -> None:
        rec = run.rec
        try:
            usage = _usage(run.ctx, run.cpu0, run.wall0)
            await self._settle_durably(rec, self.tools[rec.tool_name], run, True, usage)
        finally:
            self._release(rec.tool_name, run.needs, run)

    async def _flush_diagnostics(self, run: _Run) -> None:
        with contextlib.suppress(InvalidTransition, StaleWrite):
            await run.ctx.progress(None)

    def _timeout_for(self, rec: JobRecord, spec: JobToolSpec) -> float:
        task = rec.task
        if task is not None and task.timeout_seconds is not None:
            return task.timeout_seconds
        if spec.timeout is not None:
            return spec.timeout
        op = (task.operation_type if task else None) or spec.operation_type
        policy = self.cfg.timeout_policy
        if op is not None and op in policy.operation_timeouts:
            return policy.operation_timeouts[op] / 1000
        return policy.default_timeout_ms / 1000

    # -- outcomes --------------------------------------------------------------------------

    async def _settle_durably(
        self, rec: JobRecord, spec: JobToolSpec, run: _Run, abandoned: bool, usage: dict[str, float]
    ) -> None:
        """Write the outcome; while the store fails (locked, full, restarting) retry with backoff for
        SETTLE_RETRY_SECONDS. The writes are fenced by attempt, so a late one is refused, not applied.
        Given up, the job stays running under this process until recovery (a restart) settles it."""
        deadline = anyio.current_time() + SETTLE_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                await self._settle(rec, spec, run, abandoned, usage)
                return
            except StoreError as exc:
                if anyio.current_time() + delay > deadline:
                    log.error("job.outcome_not_written", job_id=rec.id, error=str(exc))
                    return
                log.warning("job.outcome_retry", job_id=rec.id, error=str(exc))
                await anyio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def _settle(
        self, rec: JobRecord, spec: JobToolSpec, run: _Run, abandoned: bool, usage: dict[str, float]
    ) -> None:
        ctx = run.ctx
        if run.lost:
            log.warning("job.taken_over", job_id=rec.id, attempt=ctx.attempt)
            return
        try:
            if ctx.cancel_reason is not None:
                diags = ctx.take_diagnostics()
                await self.m.finish_cancelled(rec.id, ctx.cancel_reason, attempt=ctx.attempt, diagnostics=diags)
            elif abandoned or run.timed_out:
                await self._failed(rec, spec, run, _timeout_error(rec, run, abandoned, self.grace_seconds), usage)
            elif run.error is not None:
                await self._failed(rec, spec, run, run.error, usage)
            else:
                await self._completed(rec, run, usage)
        except (InvalidTransition, StaleWrite) as exc:
            log.info("job.write_lost", job_id=rec.id, reason=str(exc))

    async def _completed(self, rec: JobRecord, run: _Run, usage: dict[str, float]) -> None:
        diags = run.ctx.take_diagnostics()
        await self.m.set_job_result(
            rec.id, run.result, attempt=run.ctx.attempt, extra=usage, diagnostics=diags, known=rec
        )

    async def _failed(
        self, rec: JobRecord, spec: JobToolSpec, run: _Run, exc: BaseException, usage: dict[str, float]
    ) -> None:
        current = await self.m.get_record(rec.id)
        policy = spec.retry or self.retry
        limit = _max_retries(rec, spec, policy)
        delay = policy.decide(exc, current.retry_count, limit)
        message = _error_text(exc)
        diags = [*run.ctx.take_diagnostics(), *([run.error_trace] if run.error_trace else [])]
        if delay is None:
            await self.m.fail_job(rec.id, message, attempt=run.ctx.attempt, diagnostics=[message, *diags], extra=usage)
            return
        await self._requeue(current, message, diags, delay, limit)

    async def _requeue(self, rec: JobRecord, message: str, diags: list[str], delay: int, limit: int) -> None:
        retry = rec.retry_count + 1
        note = f"retry {retry}/{limit} in {delay / 1000:g} s after: {message}"
        changes = {
            "status": JobStatus.PENDING, "retry_count": retry, "error_count": rec.error_count + 1,
            "run_after": self.m.now() + delay, "progress_message": note,
            "diagnostics": [*(rec.diagnostics or ()), *diags, note][-100:],
        }  # fmt: skip
        new = await self.m.mutate(rec.id, lambda r: changes, _attempt_guard(rec.attempt))
        log.info("job.retry_scheduled", job_id=rec.id, retry=retry, delay_ms=delay)
        await self.enqueue(new)

    # -- cancellation and timers -----------------------------------------------------------

    def cancel_running(self, job_id: str, reason: str) -> bool:
        run = self.running.get(job_id)
        if run is None:
            return False
        run.ctx.cancel_reason = reason
        run.scope.cancel()
        return True

    async def run_timers(self) -> None:
        """Release delayed (retry) jobs when due, and honour cancellations requested by other processes."""
        while True:
            self.pump()
            await self._cancel_requested_elsewhere()
            delay = (self._delayed[0][0] - self.m.now()) / 1000 if self._delayed else 3600.0
            with anyio.move_on_after(max(0.001, min(delay, CANCEL_CHECK_SECONDS))):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _cancel_requested_elsewhere(self) -> None:
        """A cancel written to the shared store by another process (the jobs CLI, another replica),
        or a job another process adopted while this one's lease had lapsed (a pause, a stalled loop):
        that work is stopped and its outcome discarded, since the job is no longer ours."""
        for job_id in list(self.running):
            rec = await self.m.store.get(job_id)
            run = self.running.get(job_id)
            if run is None:
                continue
            if rec is None or rec.owner != self.m.owner or rec.attempt != run.ctx.attempt:
                run.lost = True
                run.scope.cancel()
            elif rec.cancel_requested:
                self.cancel_running(job_id, rec.cancel_requested)

    async def recover(self) -> int:
        """Adopt orphaned jobs (expired leases) and queue the pending ones."""
        adopted = await recover_orphans(self.m, self.tools, self.retry.max_retries)
        for rec in adopted:
            await self.enqueue(rec)
        return len(adopted)

    async def cluster_figures(self) -> ClusterFigures | None:
        """None: this process's own figures are the whole picture (a shared store's scheduler says more)."""
        return None

    async def queue_view(self) -> QueueView:
        depth: Counter[str] = Counter(e.priority.value for e in self.queued.values())
        oldest = min((e.created_at for e in self.queued.values()), default=None)
        return QueueView(dict(depth), oldest)


def _needs(rec: JobRecord) -> tuple[float, float, float]:
    req = (rec.task.resource_requirements if rec.task else None) or DEFAULT_REQUIREMENTS
    return (req.memory_mb, req.cpu_weight, req.disk_space_mb)


def _max_retries(rec: JobRecord, spec: JobToolSpec, policy: RetryPolicy) -> int:
    meta = rec.task.metadata if rec.task else None
    if meta is not None and meta.max_retries is not None:
        return meta.max_retries
    if spec.max_retries is not None:
        return spec.max_retries
    # Failures of a tool that did not opt in (retry_safe or its own policy) are final: re-running
    # work that may have side effects is the tool author's call, not ours.
    return policy.max_retries if spec.retry_safe or spec.retry is not None else 0


def _attempt_guard(attempt: int) -> Guard:
    return Guard(attempt=attempt, statuses=(JobStatus.RUNNING,))


def _timeout_error(rec: JobRecord, run: _Run, abandoned: bool, grace: float) -> JobTimeout:
    if abandoned:
        err = JobTimeout(f"timed out, and the work ignored cancellation for {grace:g} s: abandoned", job_id=rec.id)
        err.retryable = False  # type: ignore[attr-defined]  # the abandoned work may still be running
        return err
    return JobTimeout("timed out: the job ran past its time-out and was cancelled", job_id=rec.id)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, JobError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _usage(ctx: JobContext, cpu0: float, wall0: float) -> dict[str, float]:
    """CPU seconds of this process while the job ran (shared with concurrent jobs) plus children's."""
    cpu = time.process_time() - cpu0 + ctx.child_cpu_seconds
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cpu_seconds": cpu, "peak_memory_mb": max(rss_mb, ctx.child_peak_memory_mb)}
