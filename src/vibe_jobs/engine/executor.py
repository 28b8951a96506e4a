"""The executor: runs the jobs a source hands it, the same way in every mode (local heap or claims).

One task per run: claim the job (unless the source claimed it already), invoke the tool, time it out
(warn at 80 %, cancel at 100 %, abandon after the grace period), write the outcome durably, and on a
failure decide between a retry (the job goes back to its source, delayed) and a final failure. It
also stops running work on a cancel request or when the job was taken over by another process.
The source is told, through the `Feeder` protocol, when a run gives its slot back and when a job
was queued again for a retry.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from vibe_jobs.context import JobContext
from vibe_jobs.engine.admission import Needs
from vibe_jobs.engine.deadlines import MESSAGE as DEADLINE
from vibe_jobs.engine.deadlines import deadline_of, expire_pending
from vibe_jobs.engine.failures import error_text, logged_traceback, retry_limit, retry_policy
from vibe_jobs.engine.taskset import TaskSet
from vibe_jobs.engine.timers import Timer, Timers
from vibe_jobs.errors import InvalidTransition, JobError, JobTimeout, ProcessLimit, StaleWrite
from vibe_jobs.jobtool import JobToolSpec, ThreadCall
from vibe_jobs.logs import debug_enabled, get_logger
from vibe_jobs.manager import JobManager, capped_diagnostics, diagnostic_line
from vibe_jobs.models import JobRecord
from vibe_jobs.outages import StoreRetry, store_failure
from vibe_jobs.redact import secret_hider
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import Guard

RUN_TASK = "run of "  # a job run's task is named this and its job's id (`_left_at_stop`)
DEADLINE_CHECK_SECONDS = 60.0  # a deadline's timer reads the clock again at least this often (`_at_deadline`)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # vibe_jobs/
_BUILT_IN_TOOLS = os.path.join(_PACKAGE, "tools") + os.sep
log = get_logger("vibe_jobs.engine.executor")


class Feeder(Protocol):
    """The job source that hands the executor its jobs."""

    def released(self, tool: str, needs: Needs) -> None:
        """A run of `tool` gave back the slot (and the `needs`) it was launched with."""

    async def requeued(self, rec: JobRecord) -> None:
        """The job failed and is pending again, for a retry at `rec.run_after`."""


@dataclass(slots=True)
class Run:
    ctx: JobContext
    needs: Needs
    rec: JobRecord  # as the claim returned it: running, this attempt
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: bool = False  # the work returned (or raised); nobody waits on it: the run's own task did the work
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    error_where: str | None = None  # where the work raised, one line (the traceback goes to the log only)
    timed_out: bool = False
    lost: bool = False  # another process adopted the job (our lease had lapsed): write nothing
    stopping: bool = False  # its work was told to stop (a cancel, its time-out, a takeover): the grace runs
    abandoned: bool = False  # the work ignored its cancellation for the grace period: settled without it
    thread: ThreadCall | None = None  # a sync tool's call in a worker thread
    thread_goes_on: bool = False  # the run stopped waiting for that thread, which still runs (it cannot be stopped)
    start_by: int | None = None  # a claim's work starts before this (epoch ms), or the claim is given back
    lapsed: bool = False  # it was not started: its claim was about to lapse
    released: bool = False  # its slot (concurrency, resources) is given back
    timer: Timer | None = None  # the next time-out stage (warn, cancel, abandon)
    deadline_timer: Timer | None = None  # cancels the run at the job's deadline
    paused: tuple[float, Callable[[], None]] | None = None  # while it waits for an answer: time left, stage
    cpu0: float = 0.0
    wall0: float = 0.0


class Executor:
    """Runs jobs of `tools` for `feeder`, under the time-out and retry policies of the manager's settings."""

    def __init__(
        self,
        manager: JobManager,
        tools: Mapping[str, JobToolSpec],
        feeder: Feeder,
        *,
        grace_seconds: float = 5.0,
        concurrency: int | None = None,
    ) -> None:
        self.m, self.tools, self.feeder = manager, tools, feeder
        self.concurrency = concurrency or manager.settings.max_concurrent
        self._threads: anyio.CapacityLimiter | None = None
        self.timeouts = manager.settings.queue.timeout_policy
        self.retry = RetryPolicy.from_config(manager.settings.queue.retry_policy)
        self.grace_seconds = grace_seconds
        self.running: dict[str, Run] = {}
        self.starting = 0  # launched, not yet running (the claim is being written)
        self.max_running_seen = 0
        self.timers = Timers()
        # one task per job run; at the stop, runs whose work ignores its cancellation are left behind after the grace
        self.runs = TaskSet(grace_seconds, self._left_at_stop)
        self.left_at_stop: list[str] = []  # the tasks still running at the end of the stop's grace (by name)
        self.threads_going_on: dict[str, ThreadCall] = {}  # by job id: sync tools' calls that cannot be stopped
        self._idle = anyio.Event()
        # wraps each attempt's run (server/tracing.py installs a span per attempt); None: nothing
        self.attempt_hook: Callable[[JobRecord], AbstractContextManager[Any]] | None = None

    @property
    def threads(self) -> anyio.CapacityLimiter:
        """The worker threads of this executor's jobs (sync tools, `JobContext.threads`): one per job it runs
        at once, apart from the server's own (anyio's default limiter, which the server's blocking work uses:
        the SQLite store's health check), so that blocking jobs never starve the server."""
        if self._threads is None:  # made on the event loop, at first use
            self._threads = anyio.CapacityLimiter(self.concurrency)
        return self._threads

    @property
    def busy(self) -> int:
        """Slots in use: jobs running or starting."""
        return len(self.running) + self.starting

    def launch(
        self, job_id: str, tool: str, needs: Needs, claimed: JobRecord | None = None, valid_until: int | None = None
    ) -> None:
        """Run a job in a task of its own: `claimed` is its running record when the source claimed it (to be
        started before `valid_until`, epoch ms, or given back), else the run claims it (pending -> running).
        Its slot is given back through `feeder.released`."""
        self.starting += 1
        self.runs.spawn(self.m.task_group, self._run, job_id, tool, needs, claimed, valid_until, name=RUN_TASK + job_id)

    def _left_at_stop(self, names: Sequence[str]) -> None:
        """The process stops, and these tasks (a run's is named RUN_TASK and its job's id) ignored their cancellation
        for the grace: the stop goes on without them. Their jobs stay running in the store, as those of every run
        the stop cancelled: the lease released, recovery settles them as interrupted (or runs them again). A process
        that owns its loop then exits without waiting for them (`jobserver.leave_work_behind`)."""
        self.left_at_stop.extend(names)
        for job_id in sorted({name.removeprefix(RUN_TASK) for name in names if name.startswith(RUN_TASK)}):
            run = self.running.get(job_id)
            log.warning(
                "job.ignored_stop",
                job_id=job_id,
                tool=run.rec.tool_name if run is not None else None,
                grace_seconds=self.grace_seconds,
                why="its work ignored its cancellation: the stop goes on without it, the job left to recovery",
            )

    async def threads_left(self) -> list[str]:
        """For a process that ends after its stop: the jobs whose thread (a sync tool's call, which cannot be stopped)
        still runs after the grace, each logged (`job.ignored_stop`); the interpreter would wait for them at exit, for
        ever for a thread blocked for good. One grace in all: the stop's, which began as the runs were cancelled (their
        jobs are settled or left to recovery by then, a thread's too; it only waited a second grace)."""
        ends = self.runs.grace_ends
        with anyio.CancelScope(deadline=anyio.current_time() + self.grace_seconds if ends is None else ends):
            for thread in list(self.threads_going_on.values()):
                await thread.returned.wait()
        left = sorted(job_id for job_id, thread in self.threads_going_on.items() if not thread.returned.is_set())
        for job_id in left:
            log.warning(
                "job.ignored_stop",
                job_id=job_id,
                grace_seconds=self.grace_seconds,
                why="its thread cannot be stopped: the process ends without waiting for it",
            )
        return left

    async def drained(self) -> None:
        """Return once no job is starting or running."""
        while self.running or self.starting:
            self._idle = anyio.Event()
            await self._idle.wait()

    # -- one run ---------------------------------------------------------------------------

    async def _run(
        self, job_id: str, tool: str, needs: Needs, claimed: JobRecord | None, valid_until: int | None
    ) -> None:
        """One task per job: claim, do the work, write the outcome (time-outs come from `self.timers`)."""
        run: Run | None = None
        try:
            rec = claimed if claimed is not None else await self._claim(job_id)
            if rec is not None and valid_until is not None and self.m.now() >= valid_until:
                await self._give_back(rec)
            elif rec is not None:  # checked again as the function is called (`_check_start`)
                run = self._begin(rec, needs)
                run.start_by = valid_until
                await self._execute(run)
        except Exception as exc:  # a fault past the work (writing its outcome): the job must not stay running
            if run is None:
                raise
            await self._unsettled(run, exc)
        finally:
            if run is None:
                self.starting -= 1
            self._release(tool, needs, run)

    async def _claim(self, job_id: str) -> JobRecord | None:
        """Claim the job (pending -> running); while the store fails transiently (full, locked, restarting)
        try again with backoff (outages.py), so that an accepted job never waits for a restart."""
        claimed: JobRecord | None = None

        async def claim() -> None:
            nonlocal claimed
            await self.m.renew_if_late()  # after a stall: started under a lapsed lease, it could run twice
            try:
                rec = await self.m.start_job(job_id, owned=True)
            except (InvalidTransition, StaleWrite):  # cancelled (or taken) before it started
                return
            if rec.status is JobStatus.RUNNING:  # else its cancel was asked for: it ended cancelled
                claimed = rec

        retry = StoreRetry("job.claim_retry", first=0.05, on_failure=self.m.store_failed)
        try:
            await retry.until_done(claim, job_id=job_id)
        except JobError:  # gone (deleted) before it started
            return None
        return claimed

    async def _give_back(self, rec: JobRecord) -> None:
        """A claim whose lease lapsed before its work could start (this process stalled, or the claim's
        answer came late): another process may have adopted the job, so it is not run here. While still
        ours it is queued again, as it was (it never ran: no retry is counted); else recovery has it."""
        log.warning("job.claim_lapsed", job_id=rec.id, attempt=rec.attempt)
        given: list[JobRecord] = []

        async def give_back() -> None:
            given.append(await self.m.requeue(rec.id, _pending_again, _attempt_guard(rec.attempt)))

        # written again while the store fails transiently (the trouble that made the claim late, likely): left
        # running and owned by this live process, the job would be no one's to recover
        retry = StoreRetry("job.give_back_retry", first=0.05, on_failure=self.m.store_failed)
        try:
            await retry.until_done(give_back, job_id=rec.id)
        except (InvalidTransition, StaleWrite) as exc:
            log.info("job.claim_lapsed_taken", job_id=rec.id, reason=str(exc))
            return
        if given and given[0].status is JobStatus.PENDING:
            await self.feeder.requeued(given[0])

    def _begin(self, rec: JobRecord, needs: Needs) -> Run:
        """Account a job this process now runs (claimed as `rec`) and build its run."""
        run = Run(JobContext(self.m, rec.id, rec.attempt, rec.tool_name), needs, rec)
        run.ctx.cancel_scope, run.ctx.threads = run.scope, self.threads
        if self.tools[rec.tool_name].runs_in_thread:
            run.thread = ThreadCall()
        run.ctx.on_wait = lambda waiting: self._pause(run) if waiting else self._resume(run)
        self.starting -= 1
        self.running[rec.id] = run
        self.max_running_seen = max(self.max_running_seen, len(self.running))
        if debug_enabled():
            log.debug("job.started", job_id=rec.id, tool=rec.tool_name, attempt=rec.attempt)
        return run

    def _release(self, tool: str, needs: Needs, run: Run | None) -> None:
        """Give a run's slot back, once (an abandoned run's is given back when it is given up)."""
        if run is not None:
            if run.released:
                return
            run.released = True
            if self.running.get(run.rec.id) is run:
                del self.running[run.rec.id]  # not a newer attempt's run (a retry may claim first)
        if not self.running and not self.starting:
            self._idle.set()
        self.feeder.released(tool, needs)

    async def _execute(self, run: Run) -> None:
        # no re-read: the claim (a compare-and-set) just returned the record, with no await since;
        # a cancel or a takeover from now on reaches the work through its cancel scope
        rec = run.rec
        spec = self.tools[rec.tool_name]
        deadline = deadline_of(rec)
        if deadline is not None and await self._past_deadline(run, deadline):
            return
        run.cpu0, run.wall0 = time.process_time(), time.monotonic()
        timeout = self.timeout_for(rec, spec)
        run.timer = self._at(timeout * 0.8, lambda: self._warn(run, timeout))
        try:
            with run.scope:
                await self._work(run, spec)
        except _ClaimLapsing:
            run.lapsed = True
        finally:
            run.done = True
            self.timers.cancel(run.timer)
            self.timers.cancel(run.deadline_timer)
            # the timers' and the context's callbacks hold the run: let go of them, so that a finished run
            # is freed when its task ends rather than left in a reference cycle for the garbage collector
            run.timer = run.deadline_timer = run.ctx.on_wait = None
            run.thread_goes_on = run.thread is not None and run.thread.going_on()
            if run.thread is not None and run.thread_goes_on:
                self.threads_going_on[rec.id] = run.thread  # until it returns (`_execute`), or the process ends
        if run.lapsed:
            await self._give_back(rec)
        elif not run.abandoned:
            await self._settle_durably(run, False)
        if run.thread is not None and run.thread_goes_on:  # its slot stays taken until the thread returns
            log.warning("job.thread_goes_on", job_id=rec.id, tool=rec.tool_name)
            await run.thread.returned.wait()
            if self.threads_going_on.get(rec.id) is run.thread:
                del self.threads_going_on[rec.id]

    async def _work(self, run: Run, spec: JobToolSpec) -> None:
        """Call the tool. Whatever it raises is the run's error, BaseException too (SystemExit, KeyboardInterrupt,
        GeneratorExit, a CancelledError of its own making): only a cancellation the engine asked for goes
        through, this run's (a cancel, its time-out, a takeover) or the server's (it stops). The server's own
        SIGINT and SIGTERM go to its signal receivers and reach a run as that cancellation, never as a
        KeyboardInterrupt in a job's code: a job raising one stops itself, not the server."""
        rec, hook = run.rec, self.attempt_hook
        check = None if run.start_by is None else lambda: self._check_start(run)
        try:
            if hook is None:  # (no nullcontext: this is every job's path)
                run.result = await spec.invoke(rec.params, run.ctx, check, run.thread)
            else:
                with hook(rec):
                    run.result = await spec.invoke(rec.params, run.ctx, check, run.thread)
        except _ClaimLapsing:
            raise
        except BaseException as exc:
            if _holds_cancellation(exc):
                await anyio.lowlevel.checkpoint_if_cancelled()  # a cancellation asked for is raised again here
            run.error = exc
            if isinstance(exc, JobTimeout):  # the tool's own time-out (run-command's): an outcome, not a fault
                _log_timeout(rec, error_text(exc, secret_hider(rec.params)))  # (nowhere in the code to name)
            elif isinstance(exc, ProcessLimit):  # the load's outcome: a line a minute, not a traceback a job
                _LIMITS_SAID(rec, error_text(exc, secret_hider(rec.params)))
            else:
                run.error_where = _raised_at(exc)
                log.warning("job.raised", job_id=rec.id, tool=rec.tool_name, exception=_logged(exc, rec))

    def _check_start(self, run: Run) -> None:
        """The last look before a claimed job's function is called (its arguments validated, nothing awaited
        from here to the call): a claim whose lease is about to lapse (this process stalled since the claim)
        is not started, lest another process's recovery adopt the job and run it too."""
        if run.start_by is not None and self.m.now() >= run.start_by:
            raise _ClaimLapsing(run.rec.id)

    async def _past_deadline(self, run: Run, deadline: int) -> bool:
        """A job started after its deadline fails ("deadline passed") without running; one started before
        it is cancelled when the deadline comes."""
        if deadline > self.m.now():

            def armed(timer: Timer) -> None:
                run.deadline_timer = timer

            armed(self._at_deadline(deadline, lambda: self._cancel_at_deadline(run), armed))
            return False

        async def expired() -> None:
            with contextlib.suppress(InvalidTransition, StaleWrite):
                await self.m.fail_job(run.rec.id, f"{DEADLINE} before it started", attempt=run.ctx.attempt)

        await StoreRetry("job.deadline_retry", on_failure=self.m.store_failed).until_done(expired, job_id=run.rec.id)
        return True

    def _cancel_at_deadline(self, run: Run) -> None:
        self.cancel_running(run.rec.id, DEADLINE)

    def watch_deadline(self, rec: JobRecord) -> None:
        """Fail `rec` at its deadline if it has not started by then."""
        deadline = deadline_of(rec)
        if deadline is not None:
            job_id = rec.id
            self._at_deadline(deadline, lambda: self.runs.spawn(self.m.task_group, self._expire_pending, job_id))

    def _at_deadline(
        self, deadline: int, due: Callable[[], None], armed: Callable[[Timer], None] | None = None
    ) -> Timer:
        """Call `due()` once the clock reaches `deadline` (epoch ms, the job's). The timer runs on the loop's clock
        for the time left, at most DEADLINE_CHECK_SECONDS at a time, and the clock is read again when it fires: a
        step of the clock (NTP, a VM resumed) neither brings a deadline early (an hour's step back failed pending
        jobs and cancelled running ones an hour before their deadline) nor lets one pass unnoticed for longer than
        that. `armed` is told of each timer armed again (to be cancelled when the run ends)."""

        def check() -> None:
            if self.m.now() >= deadline:
                due()
                return
            timer = self._at_deadline(deadline, due, armed)
            if armed is not None:
                armed(timer)

        return self._at(min(max(0.0, (deadline - self.m.now()) / 1000), DEADLINE_CHECK_SECONDS), check)

    async def _expire_pending(self, job_id: str) -> None:
        retry = StoreRetry("job.deadline_retry", on_failure=self.m.store_failed)
        await retry.until_done(lambda: expire_pending(self.m, job_id), job_id=job_id)

    def timeout_for(self, rec: JobRecord, spec: JobToolSpec) -> float:
        """Seconds: the job's own, else the tool's, else its operation type's, else the default."""
        task = rec.task
        if task is not None and task.timeout_seconds is not None:
            return task.timeout_seconds
        if spec.timeout is not None:
            return spec.timeout
        op = (task.operation_type if task else None) or spec.operation_type
        if op is not None and op in self.timeouts.operation_timeouts:
            return self.timeouts.operation_timeouts[op] / 1000
        return self.timeouts.default_timeout_ms / 1000

    # -- time-outs: warn at 80 %, cancel at 100 %, abandon after the grace period ----------

    def _at(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_later(delay, callback, self.m.task_group)

    def _pause(self, run: Run) -> None:
        """The job waits for an answer: its time-out clock stops (the stage due next keeps its time left);
        the grace of work told to stop does not."""
        timer = run.timer
        if timer is not None and not timer.cancelled and not run.stopping:
            run.paused = (max(0.0, timer.when - anyio.current_time()), timer.callback)
            self.timers.cancel(timer)

    def _resume(self, run: Run) -> None:
        if run.paused is not None and not run.done and not run.stopping:
            left, stage = run.paused
            run.timer = self._at(left, stage)
        run.paused = None

    def _warn(self, run: Run, timeout: float) -> None:
        run.ctx.diagnostic(f"warning: 80% of the {timeout:g} s time-out used")
        self.runs.spawn(self.m.task_group, self._flush_diagnostics, run)
        run.timer = self._at(timeout * 0.2, lambda: self._expire(run, timeout))

    def _expire(self, run: Run, timeout: float) -> None:
        if not run.done:
            _log_timeout(run.rec, f"the job ran past its {timeout:g} s time-out: cancelled")
        run.timed_out = True
        self._stop(run)

    def _stop(self, run: Run) -> None:
        """Cancel the run's work (a cancel, its time-out, a takeover), and give it the grace period: work that
        ignores its cancellation that long is abandoned (`_abandon`). Told again, the grace is not restarted."""
        run.scope.cancel()
        if run.stopping or run.done:
            return
        run.stopping = True
        self.timers.cancel(run.timer)  # the time-out's next stage, if any
        run.timer = self._at(self.grace_seconds, lambda: self._abandon(run))

    def _abandon(self, run: Run) -> None:
        """The work ignored its cancellation for the grace period: settle the job (cancelled, timed out, or
        nothing for a run taken over) and free its slot now (the work itself goes on until it returns, and
        its outcome is then discarded)."""
        run.abandoned = True
        self.runs.spawn(self.m.task_group, self._settle_abandoned, run)

    async def _settle_abandoned(self, run: Run) -> None:
        try:
            await self._settle_durably(run, True)
        except Exception as exc:
            await self._unsettled(run, exc)
        finally:
            self._release(run.rec.tool_name, run.needs, run)

    async def _flush_diagnostics(self, run: Run) -> None:
        with contextlib.suppress(InvalidTransition, StaleWrite):
            await run.ctx.progress(None)

    # -- outcomes --------------------------------------------------------------------------

    async def _settle_durably(self, run: Run, abandoned: bool) -> None:
        """Write the outcome, retrying with backoff while the store fails transiently (outages.py). A failure
        that is not transient is either this outcome's (a value the store cannot take) or the store's for a
        while (an I/O error, a permission taken away): a plain failure naming it is written instead, and while
        that is refused too, both are tried again at the slowest pace until one is taken. After a refusal the
        outcome is tried again, at that pace, before the plain failure is written in its place: a store that takes
        writes again meanwhile (a permission given back) gets the outcome. The run keeps its slot and its lease
        meanwhile, so the job is neither lost nor left running once the store works (this process renews its
        lease: nobody would recover it). The writes are fenced by attempt, so a late one is
        refused, not applied; the server stopping ends the retries (the job is recovered at the next start)."""
        usage = _usage(run.ctx, run.cpu0, run.wall0)
        retry = StoreRetry("job.outcome_retry", first=0.05, on_failure=self.m.store_failed)
        while not await retry.until_done(lambda: self._settle(run, abandoned, usage), job_id=run.rec.id):
            await anyio.sleep(retry.most)  # the store's for a moment, maybe (a permission being given back)
            plain = functools.partial(self._settle_refused, run, abandoned, usage)
            if await retry.until_done(plain, job_id=run.rec.id):
                return

    async def _settle_refused(self, run: Run, abandoned: bool, usage: dict[str, float]) -> None:
        """The outcome once more, else (refused again, not transiently) a failure saying it was refused (text only:
        whatever the store could not take is left out). Tried first, the outcome lands when the store takes writes
        again (a permission given back) however soon after its refusal: a store that came back just then ended a
        completed job failed."""
        try:
            await self._settle(run, abandoned, usage)
            return
        except Exception as exc:
            refused = store_failure(exc)
            if refused is None or refused.transient:
                raise
        await self._fail_plainly(run, f"the job's outcome could not be stored ({type(refused).__name__}: {refused})")

    async def _unsettled(self, run: Run, exc: Exception) -> None:
        """The last resort: writing the run's outcome failed on a fault of ours (the store's are retried), so
        the job is failed plainly rather than left running for ever (this process renews its lease: no
        recovery would adopt it). Fenced by attempt: an outcome that did land stays. Running out of memory is no
        fault of ours but the outcome's size against the process's memory: the job says so, as something its caller
        can act on (a smaller result, more memory), and the log has one line without a traceback."""
        why = _out_of_memory(run) if isinstance(exc, MemoryError) else None
        if why is None:
            log.error("job.unsettled", job_id=run.rec.id, tool=run.rec.tool_name, exception=_logged(exc, run.rec))
            error = error_text(exc, secret_hider(run.rec.params))
            why = f"the job's run ended without an outcome ({error}; a fault in vibe-jobs: see the server log)"
        retry = StoreRetry("job.outcome_retry", first=0.05, on_failure=self.m.store_failed)
        await retry.until_done(lambda: self._fail_plainly(run, why), job_id=run.rec.id)

    async def _fail_plainly(self, run: Run, why: str) -> None:
        if run.lost:
            return
        with contextlib.suppress(InvalidTransition, StaleWrite):
            await self.m.fail_job(run.rec.id, diagnostic_line(why), attempt=run.ctx.attempt)

    async def _settle(self, run: Run, abandoned: bool, usage: dict[str, float]) -> None:
        ctx, rec = run.ctx, run.rec
        if run.lost:
            log.warning("job.taken_over", job_id=rec.id, attempt=ctx.attempt)
            return
        try:
            if ctx.cancel_reason is not None:
                diags = [*ctx.take_diagnostics(), *self._goes_on(run, abandoned)]
                await self.m.finish_cancelled(rec.id, ctx.cancel_reason, attempt=ctx.attempt, diagnostics=diags)
            elif abandoned or run.timed_out or isinstance(run.error, JobTimeout):  # its own time-out, or its tool's
                self.m.stats.counters.timed_out[rec.tool_name] += 1
                await self._failed(run, self._timeout(run, abandoned), usage)
            elif run.error is not None:
                await self._failed(run, run.error, usage)
            else:
                await self._completed(run, usage)
        except (InvalidTransition, StaleWrite) as exc:
            log.info("job.write_lost", job_id=rec.id, reason=str(exc))

    def _timeout(self, run: Run, abandoned: bool) -> BaseException:
        """What a timed-out run failed with: its job's time-out (and what of its work goes on), else the
        JobTimeout its tool raised (run-command's `timeoutSeconds`), which says what it timed out after."""
        if abandoned or run.timed_out or run.error is None:
            return _timeout_error(run.rec, self._goes_on(run, abandoned))
        return run.error

    def _goes_on(self, run: Run, abandoned: bool) -> list[str]:
        """What a stopped run says of its work that did not stop: abandoned, or a thread that cannot be."""
        if abandoned:
            return [f"the work ignored cancellation for {self.grace_seconds:g} s: abandoned"]
        if run.thread_goes_on:
            return ["the tool's thread cannot be stopped: it goes on until it returns (keeping the job's slot)"]
        return []

    async def _completed(self, run: Run, usage: dict[str, float]) -> None:
        diags = run.ctx.take_diagnostics()
        await self.m.set_job_result(
            run.rec.id, run.result, attempt=run.ctx.attempt, extra=usage, diagnostics=diags, known=run.rec
        )

    async def _failed(self, run: Run, exc: BaseException, usage: dict[str, float]) -> None:
        rec, spec = run.rec, self.tools[run.rec.tool_name]
        current = await self.m.get_record(rec.id)
        limit = retry_limit(rec, spec, self.retry)
        delay = retry_policy(spec, self.retry).decide(exc, current.retry_count, limit)
        message = error_text(exc, secret_hider(rec.params))
        diags = [*run.ctx.take_diagnostics(), *([run.error_where] if run.error_where else [])]
        if delay is None:
            await self.m.fail_job(rec.id, message, attempt=run.ctx.attempt, diagnostics=[message, *diags], extra=usage)
            return
        await self._requeue(run, message, diags, delay, limit)

    async def _requeue(self, run: Run, message: str, diags: list[str], delay: int, limit: int) -> None:
        """Queue the job again for a retry, fenced by this run's attempt (not the job's: a newer attempt
        may run elsewhere); a job whose cancel was asked for meanwhile ends cancelled instead."""

        def plan(rec: JobRecord) -> dict[str, Any]:
            retry = rec.retry_count + 1
            note = f"retry {retry}/{limit} in {delay / 1000:g} s after: {message}"
            return {
                "status": JobStatus.PENDING,
                "retry_count": retry,
                "error_count": rec.error_count + 1,
                "run_after": self.m.now() + delay,
                "progress_message": note,
                "diagnostics": capped_diagnostics(rec.diagnostics, [*diags, note]),
            }

        new = await self.m.requeue(run.rec.id, plan, _attempt_guard(run.ctx.attempt))
        if new.status is JobStatus.PENDING:
            log.info("job.retry_scheduled", job_id=new.id, retry=new.retry_count, delay_ms=delay)
            await self.feeder.requeued(new)

    # -- stopping running work -------------------------------------------------------------

    def cancel_running(self, job_id: str, reason: str) -> bool:
        """Stop the work of a job running here (its outcome is written as cancelled); False if none runs."""
        run = self.running.get(job_id)
        if run is None:
            return False
        run.ctx.cancel_reason = reason
        self._stop(run)
        return True

    def held_elsewhere(self, run: Run, held: bool, cancel_requested: str | None) -> None:
        """What the store says of a running job: not `held` by this attempt any more (another process
        adopted it while this one's lease had lapsed: a pause, a stalled loop) stops the work and
        discards its outcome; a cancel request written elsewhere (the jobs CLI, another replica) stops it."""
        if not held:
            run.lost = True
            self._stop(run)
        elif cancel_requested is not None:
            self.cancel_running(run.rec.id, cancel_requested)

    async def check_running(self) -> None:
        """Read the running jobs from the store, at once (every local timer round: one read each was a round trip
        each), and act on what it says of each (`held_elsewhere`)."""
        ids = list(self.running)
        found = await self.m.store.get_many(ids) if ids else {}
        for job_id in ids:
            rec = found.get(job_id)
            run = self.running.get(job_id)
            if run is None:
                continue
            held = rec is not None and rec.owner == self.m.owner and rec.attempt == run.ctx.attempt
            self.held_elsewhere(run, held, rec.cancel_requested if rec is not None else None)


class _ClaimLapsing(Exception):
    """A claimed job not started: its claim is about to lapse (`Executor._check_start`)."""


def _pending_again(_rec: JobRecord) -> dict[str, Any]:
    return {"status": JobStatus.PENDING}


def _attempt_guard(attempt: int) -> Guard:
    return Guard(attempt=attempt, statuses=(JobStatus.RUNNING,))


def _timeout_error(rec: JobRecord, goes_on: list[str]) -> JobTimeout:
    if goes_on:  # its work did not stop
        err = JobTimeout(f"timed out, and {goes_on[0]}", job_id=rec.id)
        err.retryable = False  # type: ignore[attr-defined]  # never run again beside work that may still run
        return err
    return JobTimeout("timed out: the job ran past its time-out and was cancelled", job_id=rec.id)


def _out_of_memory(run: Run) -> str:
    """Why a run whose outcome the server had no memory to store failed (logged once, no traceback); the outcome
    is let go of, so that the plain failure has room."""
    what = "result" if run.error is None else "error"
    run.result = None
    log.warning("job.out_of_memory", job_id=run.rec.id, tool=run.rec.tool_name, storing=what)
    return (
        f"the server ran out of memory storing its {what} (MemoryError): a smaller {what}, or more memory for the "
        "server, lets it be stored"
    )


def _log_timeout(rec: JobRecord, error: str) -> None:
    """A time-out, the job's or its tool's own (run-command's `timeoutSeconds`): an outcome the caller set, logged in
    one line naming the job and the time-out; a traceback (`job.raised`) is for what a tool raises otherwise."""
    log.warning("job.timed_out", job_id=rec.id, tool=rec.tool_name, error=error)


class _SaidOnceAMinute:
    """`job.limit_reached`: the first job a process limit failed, then the first a minute after (with how many
    it failed meanwhile): under the load that reaches a limit, a line per job would flood the log."""

    EVERY = 60.0  # seconds

    def __init__(self) -> None:
        self.said, self.unsaid = -self.EVERY, 0

    def __call__(self, rec: JobRecord, error: str) -> None:
        now = time.monotonic()
        if now - self.said < self.EVERY:
            self.unsaid += 1
            return
        log.warning("job.limit_reached", job_id=rec.id, tool=rec.tool_name, error=error, not_logged=self.unsaid)
        self.said, self.unsaid = now, 0


_LIMITS_SAID = _SaidOnceAMinute()


def _holds_cancellation(exc: BaseException) -> bool:
    """`exc` is a cancellation, or a group with one (work with a task group of its own)."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(cancelled) is not None
    return isinstance(exc, cancelled)


def _logged(exc: BaseException, rec: JobRecord) -> str:
    """`exc`'s traceback as the log shows it: each part cut (`logged_traceback`), the job's secrets hidden."""
    return logged_traceback(exc, secret_hider(rec.params))


def _raised_at(exc: BaseException) -> str | None:
    """`raised at FILE:LINE in FUNCTION` (the file's name only) of the innermost frame outside vibe-jobs' own API
    (a tool's `job.progress(150)` is refused in the manager: the line to fix is the tool's call), or None."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = next((frame for frame in reversed(frames) if not _ours(frame.filename)), frames[-1])
    return f"raised at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def _ours(filename: str) -> bool:
    """Whether a frame is in vibe-jobs itself, but for its built-in tools (whose own lines are theirs to name)."""
    return filename.startswith(_PACKAGE) and not filename.startswith(_BUILT_IN_TOOLS)


def _usage(ctx: JobContext, cpu0: float, wall0: float) -> dict[str, float]:
    """CPU seconds of this process while the job ran (shared with concurrent jobs) plus children's."""
    cpu = time.process_time() - cpu0 + ctx.child_cpu_seconds
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cpu_seconds": cpu, "peak_memory_mb": max(rss_mb, ctx.child_peak_memory_mb)}
