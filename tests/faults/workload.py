"""The clients of a fault run: the real `mcp.Client` against the real MCP endpoints.

Submitters call `submit-job` at a steady rate through every endpoint; a reader reads random known
jobs (so a result is read while faults go on, and read again later); a canceller cancels the jobs
the workload chose to cancel. Every call is logged before it is sent (`*-invoke`) and with what came
back (`*-ok`, `read`), or as indeterminate (`*-info`) when no answer came: a submission without an
answer may or may not have created its job, which the checker finds in the job table by its tag.

A connection that fails is dropped and opened again (a killed replica comes back on its port), and
the call that was in flight is logged as indeterminate; nothing is retried blindly.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

from tests.faults.history import FINAL, HistoryWriter, token_of

PRIORITIES = ("low", "medium", "high", "critical")
CALL_SECONDS = 30.0  # a call without an answer by then is indeterminate


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job the workload submits; `cancel_after` (s after its submission) when the client cancels it."""

    tag: str
    tool: str
    seconds: float
    fail: str
    priority: str
    dep_count: int
    cancel_after: float | None


def make_spec(rng: random.Random, index: int, run_tag: str) -> JobSpec:
    """Mostly short jobs (tens of ms), some of a second or more; some failing (always, or only the first
    attempt), some depending on earlier jobs, some cancelled by the client."""
    r = rng.random()
    seconds = rng.uniform(0.01, 0.08) if r < 0.85 else rng.uniform(0.3, 1.5) if r < 0.97 else rng.uniform(2, 5)
    f = rng.random()
    fail = "always" if f < 0.07 else "first" if f < 0.12 else "no"
    dep_count = rng.choice((1, 1, 2)) if rng.random() < 0.2 else 0
    cancel_after = rng.uniform(0.0, 2.0) if rng.random() < 0.04 else None
    tool = "fj_safe" if rng.random() < 0.6 else "fj_unsafe"
    return JobSpec(f"{run_tag}-{index}", tool, round(seconds, 3), fail, rng.choice(PRIORITIES), dep_count, cancel_after)


def digest(result: Any) -> str:
    return hashlib.sha1(json.dumps(result, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Workload:
    """Shared state of the clients: what was acknowledged, what to cancel, when to stop."""

    history: HistoryWriter
    seed: int
    rate: float  # submissions per second, over all submitters
    total: int  # submissions at most
    run_tag: str = "j"
    acked: dict[str, JobSpec] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # acknowledged ids, oldest first
    cancels: list[tuple[float, str]] = field(default_factory=list)  # heap of (when, job id)
    submitted: int = 0
    stopping: bool = False
    final: FinalReads | None = None  # set when the run ends: what the final readers still have to read

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.started = time.monotonic()

    def next_spec(self) -> tuple[JobSpec, list[str]] | None:
        """The next submission and its dependencies (among recently acknowledged jobs), or None when done."""
        if self.stopping or self.submitted >= self.total:
            return None
        spec = make_spec(self.rng, self.submitted, self.run_tag)
        self.submitted += 1
        recent = self.order[-60:]
        deps = self.rng.sample(recent, k=min(len(recent), spec.dep_count))
        return spec, deps

    def due(self) -> float:
        """Seconds until the next submission is due (a steady rate over all submitters)."""
        return self.started + self.submitted / self.rate - time.monotonic()


@dataclass
class FinalReads:
    """The jobs still to read to the end (shared by the final readers: each takes the next)."""

    todo: list[str]
    deadline: float
    unfinished: set[str] = field(default_factory=set)


def submit_args(spec: JobSpec, deps: list[str]) -> dict[str, Any]:
    arguments = {"seconds": spec.seconds, "fail": spec.fail, "tag": spec.tag}
    return {"tool": spec.tool, "arguments": arguments, "priority": spec.priority, "dependsOn": deps}


Body = Callable[[Client, "Session"], Awaitable[None]]


@dataclass
class Session:
    """One client's life: connect, run `body` until it returns; on a failure log the call in flight as
    indeterminate, reconnect and go on."""

    name: str
    url: str
    work: Workload
    inflight: tuple[str, str | None, dict[str, Any]] | None = None  # (kind, job id, values)

    async def run(self, body: Body) -> None:
        while True:
            try:
                async with Client(self.url, mode="auto", read_timeout_seconds=CALL_SECONDS) as client:
                    await body(client, self)
                    return
            except Exception as exc:
                self._lost(exc)
                if self.work.stopping and self.work.final is None:
                    return  # the run is winding down: no reconnecting (final readers do reconnect)
                await anyio.sleep(0.3)

    def _lost(self, exc: BaseException) -> None:
        if self.inflight is not None:
            kind, job, values = self.inflight
            self.work.history.emit(self.name, f"{kind}-info", job, error=_describe(exc), **values)
            self.inflight = None

    async def call(
        self, client: Client, kind: str, job: str | None, tool: str, args: dict[str, Any], **note: Any
    ) -> Any:
        """Call `tool`; if no answer comes, `<kind>-info` is logged with `note` (by `run`, after the failure)."""
        self.inflight = (kind, job, note)
        with anyio.fail_after(CALL_SECONDS):
            result = await client.call_tool(tool, args)
        self.inflight = None
        return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"[:300]


async def submitter(client: Client, s: Session) -> None:
    w = s.work
    while True:
        if (wait := w.due()) > 0:
            await anyio.sleep(wait)
        nxt = w.next_spec()
        if nxt is None:
            return
        spec, deps = nxt
        args = submit_args(spec, deps)
        w.history.emit(s.name, "submit-invoke", None, tag=spec.tag, **args)
        result = await s.call(client, "submit", None, "submit-job", args, tag=spec.tag)
        body = result.structured_content or {}
        job_id = body.get("jobId")
        if result.is_error or not job_id:  # an answer that says it failed: the job may still exist (retried)
            w.history.emit(s.name, "submit-info", None, tag=spec.tag, error=str(result.content)[:300])
            continue
        w.history.emit(s.name, "submit-ok", job_id, tag=spec.tag)
        w.acked[job_id] = spec
        w.order.append(job_id)
        if spec.cancel_after is not None:
            heapq.heappush(w.cancels, (time.monotonic() + spec.cancel_after, job_id))


async def read_once(client: Client, s: Session, job_id: str, wait: float = 0) -> dict[str, Any] | None:
    began = time.time()  # a read is emitted when answered; its start says which reads it overlapped
    result = await s.call(client, "read", job_id, "get-job-result", {"jobId": job_id, "waitSeconds": wait})
    body = result.structured_content or {}
    if body.get("jobId") != job_id:
        s.work.history.emit(s.name, "read-info", job_id, error=str(result.content)[:300])
        return None
    status = body.get("status")
    values: dict[str, Any] = {"status": status, "rate_limited": bool(body.get("rateLimited")), "began": began}
    if status in FINAL:
        values |= {"digest": digest(body.get("result")), "token": token_of(json.dumps(body.get("result")))}
    s.work.history.emit(s.name, "read", job_id, **values)
    return dict(body)


async def reader(client: Client, s: Session) -> None:
    w = s.work
    rng = random.Random(zlib.crc32(s.name.encode()) ^ w.seed)
    while not w.stopping:
        if w.order:
            await read_once(client, s, w.order[int(len(w.order) * rng.random() ** 0.3)])
        await anyio.sleep(0.05)


async def canceller(client: Client, s: Session) -> None:
    w = s.work
    while not w.stopping or w.cancels:
        if not w.cancels or w.cancels[0][0] > time.monotonic():
            if w.stopping:
                return
            await anyio.sleep(0.02)
            continue
        _, job_id = heapq.heappop(w.cancels)
        w.history.emit(s.name, "cancel-invoke", job_id)
        result = await s.call(client, "cancel", job_id, "cancel-job", {"jobId": job_id, "reason": "fault-run"})
        body = result.structured_content or {}
        w.history.emit(s.name, "cancel-ok", job_id, status=body.get("status"), error=bool(result.is_error))


async def final_reads(client: Client, s: Session) -> None:
    """Long-poll every acknowledged job until it is final (or the deadline passes)."""
    fr = s.work.final
    while fr is not None and fr.todo:
        job_id = fr.todo.pop()
        left = fr.deadline - time.monotonic()
        body = None
        while left > 0:
            try:
                body = await read_once(client, s, job_id, wait=min(10.0, max(0.1, left)))
            except BaseException:
                fr.todo.append(job_id)  # read it again after the reconnect
                raise
            if body is not None and body.get("status") in FINAL:
                break
            left = fr.deadline - time.monotonic()
        if body is None or body.get("status") not in FINAL:
            fr.unfinished.add(job_id)
