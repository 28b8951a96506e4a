"""JobContext: what a job function gets to report progress, log diagnostics and see cancellation."""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
from pydantic import BaseModel

from vibe_jobs.errors import InvalidParams, StoreError
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import MAX_DIAGNOSTICS, AnswerCheck
from vibe_jobs.questions import (
    WITHDRAWN,
    Elicitation,
    Sample,
    elicit_request,
    elicitation,
    sample,
    sample_request,
)

if TYPE_CHECKING:
    from vibe_jobs.manager import JobManager

M = TypeVar("M", bound=BaseModel)
log = get_logger("vibe_jobs.context")
MAX_ASKS = 3  # an elicitation asked again when an answer given elsewhere did not fit its model (`elicit`)


class _Reported:
    """What `progress` answers a sync job tool's thread: the report is stored; awaiting it is a no-op."""

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator that ends at once


REPORTED = _Reported()


class JobContext:
    """Handed to a running job function (hidden from the tool's input schema)."""

    def __init__(self, manager: JobManager, job_id: str, attempt: int, tool_name: str) -> None:
        self.manager, self.job_id, self.attempt, self.tool_name = manager, job_id, attempt, tool_name
        self.cancel_scope: anyio.CancelScope | None = None
        # the worker threads of jobs (the executor's, sized to its concurrency): blocking work of a job goes
        # there, `anyio.to_thread.run_sync(fn, limiter=job.threads)`, not to the server's own pool (None: those)
        self.threads: anyio.CapacityLimiter | None = None
        self.cancel_reason: str | None = None
        self.child_cpu_seconds = 0.0
        self.child_peak_memory_mb = 0.0
        # the last lines only: a job stores at most MAX_DIAGNOSTICS (a proxied upstream's log could send millions)
        self._pending_diagnostics: deque[str] = deque(maxlen=MAX_DIAGNOSTICS)
        # told True when the job starts waiting for an answer and False when it stops (the executor
        # stops the job's time-out clock meanwhile)
        self.on_wait: Callable[[bool], None] | None = None
        self._loop_thread = threading.get_ident()  # made where the job runs: its event loop's thread

    @property
    def cancelled(self) -> bool:
        """True once cancellation (cancel-job, a time-out, shutdown) was requested."""
        return self.cancel_reason is not None or bool(self.cancel_scope and self.cancel_scope.cancel_called)

    async def checkpoint(self) -> None:
        """Raise the cancellation here if the job was cancelled (call it between units of work)."""
        await anyio.lowlevel.checkpoint_if_cancelled()

    def progress(
        self,
        percent: float | None,
        message: str | None = None,
        *,
        stage: str | None = None,
        sub_progress: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Awaitable[None]:
        """Report progress (0-100) with an optional stage and progress within the stage: `await job.progress(...)`.
        A sync job tool (run in a worker thread) calls it without `await`: the report is stored before it returns
        (before, the call made a coroutine nobody awaited, and no progress was ever stored).

        While the store is out (a transient `StoreError`: the database restarting, a connection cut) the report
        is not stored and the job goes on: the next report (or the outcome) carries the job's state, and the
        diagnostics not stored are kept for it. A store outage must not end a run that its lease still covers."""
        report = functools.partial(self._progress, percent, message, stage, sub_progress, metadata)
        if self._on_loop():
            return report()
        anyio.from_thread.run(report)
        return REPORTED

    async def _progress(
        self,
        percent: float | None,
        message: str | None,
        stage: str | None,
        sub_progress: float | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        diagnostic = self.take_diagnostics() or None  # each its own line, as with the result
        try:
            await self.manager.update_progress(
                self.job_id,
                percent,
                message,
                stage=stage,
                sub_progress=sub_progress,
                diagnostic=diagnostic,
                metadata=metadata,
                attempt=self.attempt,
            )
        except StoreError as exc:
            if not exc.transient:
                raise
            self._not_stored(exc, diagnostic or [])

    def _not_stored(self, exc: StoreError, diagnostics: Sequence[str]) -> None:
        """A progress report the store could not take for now: its diagnostics wait for the next write."""
        kept = [*diagnostics, *self._pending_diagnostics]
        self._pending_diagnostics.clear()
        self._pending_diagnostics.extend(kept)
        self.manager.store_failed(exc)
        log.warning("job.progress_not_stored", job_id=self.job_id, error=f"{type(exc).__name__}: {exc}")

    def diagnostic(self, text: str) -> None:
        """Add a diagnostic line; it is stored with the next progress update or the result."""
        self._pending_diagnostics.append(text)

    def take_diagnostics(self) -> list[str]:
        """Diagnostics not yet stored (the runner stores them with the result)."""
        out = list(self._pending_diagnostics)
        self._pending_diagnostics.clear()
        return out

    def add_child_usage(self, cpu_seconds: float, peak_memory_mb: float) -> None:
        """Count a child process's CPU time and peak memory into this job's metrics."""
        self.child_cpu_seconds += cpu_seconds
        self.child_peak_memory_mb = max(self.child_peak_memory_mb, peak_memory_mb)

    # -- questions -----------------------------------------------------------------------------

    @overload
    def elicit(
        self, message: str, schema: type[M], *, timeout_seconds: float | None = None
    ) -> Awaitable[Elicitation[M]]: ...

    @overload
    def elicit(
        self, message: str, schema: Mapping[str, Any], *, timeout_seconds: float | None = None
    ) -> Awaitable[Elicitation[BaseModel]]: ...

    def elicit(
        self, message: str, schema: type[BaseModel] | Mapping[str, Any], *, timeout_seconds: float | None = None
    ) -> Awaitable[Elicitation[Any]]:
        """Ask the person behind the client: `answer = await job.elicit(...)`. `schema` is a pydantic model or a
        flat JSON object schema of primitives (elicitation allows nothing else). The job waits (status running,
        `waitingFor` set) until someone answers, declines or cancels, or `timeout_seconds` pass (default: the
        question_timeout setting): each is a value of the answer's `action`. Waiting does not count against the
        job's own time-out. An answer that does not fit the model is refused where it is given when that is this
        process; given in another one (a replica), the question is asked again, saying why, up to MAX_ASKS times.

        A sync job tool (run in a worker thread) calls it without `await` and gets the answer itself (before, it
        got a coroutine nobody awaited, and nothing was asked)."""
        ask = functools.partial(self._elicit, message, schema, timeout_seconds)
        return ask() if self._on_loop() else anyio.from_thread.run(ask)

    async def _elicit(
        self, message: str, schema: type[BaseModel] | Mapping[str, Any], timeout_seconds: float | None
    ) -> Elicitation[Any]:
        model = schema if isinstance(schema, type) else None
        check = None if model is None else (lambda answer: elicitation(answer, model))
        request = elicit_request(message, schema)
        for asked in range(1, MAX_ASKS + 1):
            answer = await self._ask(request, timeout_seconds, check)
            try:
                return elicitation(answer, model)
            except InvalidParams as exc:
                if asked == MAX_ASKS:
                    raise
                request = elicit_request(f"The last answer did not fit ({str(exc)[:500]}). {message}", schema)
        raise AssertionError("unreachable")

    def sample(
        self,
        messages: str | Sequence[str | Mapping[str, Any]],
        *,
        max_tokens: int,
        system: str | None = None,
        temperature: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        model_preferences: Mapping[str, Any] | None = None,
        timeout_seconds: float | None = None,
    ) -> Awaitable[Sample]:
        """Ask the client's model (MCP sampling): `reply = await job.sample(...)`, `messages` a string, or strings
        and `{role, content}` items. Waits as `elicit` does; `action` is accept (with `text`), decline (the client
        refused), cancel (asked after the job's cancel) or timeout. A sync job tool calls it without `await`."""
        options = {
            "max_tokens": max_tokens,
            "system": system,
            "temperature": temperature,
            "stop_sequences": stop_sequences,
            "model_preferences": model_preferences,
        }
        ask = functools.partial(self._sample, messages, options, timeout_seconds)
        return ask() if self._on_loop() else anyio.from_thread.run(ask)

    async def _sample(
        self, messages: str | Sequence[str | Mapping[str, Any]], options: dict[str, Any], timeout_seconds: float | None
    ) -> Sample:
        return sample(await self._ask(sample_request(messages, **options), timeout_seconds))

    def _on_loop(self) -> bool:
        """Whether this is the job's event loop (else a sync job tool's worker thread)."""
        return threading.get_ident() == self._loop_thread

    async def _ask(
        self, request: dict[str, Any], timeout_seconds: float | None, check: AnswerCheck | None = None
    ) -> dict[str, Any] | None:
        seconds = timeout_seconds if timeout_seconds is not None else self.manager.settings.question_timeout_ms / 1000
        if not seconds >= 0:  # NaN too: the question was stored and shown, then the wait failed on its deadline
            raise InvalidParams(f"timeout_seconds must be a number of seconds, 0 or more, not {seconds!r}")
        key = await self.manager.ask(self.job_id, request, attempt=self.attempt, check=check)
        if key is None:  # the job's cancel was asked for: nobody can answer
            return dict(WITHDRAWN)
        self._waiting(True)
        try:
            return await self.manager.await_answer(self.job_id, key, seconds, attempt=self.attempt)
        finally:
            self._waiting(False)

    def _waiting(self, waiting: bool) -> None:
        if self.on_wait is not None:
            self.on_wait(waiting)
