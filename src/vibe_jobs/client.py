"""Call a tool on a vibe-jobs server and wait for its final result, by the best path both sides share.

    async with Client(target, extensions=[TasksClientExtension()]) as client:
        result = await call_and_wait(client, "map-codebase", {"path": "."}, on_progress=show)

Paths, best first:
1. the MCP tasks extension (`io.modelcontextprotocol/tasks`): when the client declares it (pass
   `TasksClientExtension()` to `Client(extensions=[...])`) on a 2026-07-28 connection and the server
   advertises it, a job tool answers with a task handle and this module polls `tasks/get` at the
   server's `pollIntervalMs` until the result is inlined;
2. the jobId protocol with long-polls of `get-job-result` (`waitSeconds`), whose progress
   notifications reach `on_progress`;
3. the jobId protocol, reading `get-job-result` at each `pollingRecommendation`.
A plain tool (whose answer is no job) returns its result directly.

A job may ask a question while it runs (`JobContext.elicit` / `sample`): `on_elicit(message, requestedSchema)`
answers an elicitation with `{action, content}`, `on_sample(params)` a sampling request (CreateMessage params)
with the reply's text or a CreateMessageResult. On the tasks extension they answer the task's `inputRequests`
with `tasks/update`; on the jobId protocol they answer the `waitingFor` of get-job-result with `answer-job`.
(A client built with an `elicitation_callback` / `sampling_callback` on a 2025-11-25 connection is asked on
its long-poll directly, before any of this.) Without the callback a question waits for someone else.

`on_started` and `on_status` let a caller show more than progress (the `vibe-jobs call` command is one):
the job's immediate answer, and every status message get-job-result gives on the way.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT as ProgressFn
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams, Result, TextContent
from mcp_types.jsonrpc import INVALID_PARAMS
from pydantic import BaseModel, ConfigDict

from vibe_jobs.blocks import shown_blocks
from vibe_jobs.states import FINAL

__all__ = [
    "TASKS_EXTENSION",
    "OnElicit",
    "OnSample",
    "TaskHandle",
    "TasksClientExtension",
    "WireResult",
    "call_and_wait",
    "follow_task",
    "tasks_supported",
]

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
PROGRESS_META_KEY = "vibe-jobs/progress"
GET_JOB_RESULT = "get-job-result"
WAIT_SECONDS = 30.0
HELD_LONG_POLL_SECONDS = 1.0  # a long-poll held this long is followed by the next at once (_pause_after_long_poll)
DEFAULT_POLL_MS = 1000
MIN_POLL_MS, MAX_POLL_MS = 50, 60_000  # the range of a server's poll interval that the client keeps to
TASK_TERMINAL = frozenset({"completed", "failed", "cancelled"})
MAX_REFUSED = 3  # answers refused for one question before call_and_wait gives up (`Refusals`)
# Their answers may name a job (get-job-result, cancel-job) but start none.
CONTROL_TOOLS = frozenset({GET_JOB_RESULT, "cancel-job", "list-jobs", "job-stats"})
MessageFn = Callable[[dict[str, Any]], Awaitable[None]]
OnElicit = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]
OnSample = Callable[[dict[str, Any]], Awaitable[str | Mapping[str, Any] | BaseModel]]  # text or CreateMessageResult
ELICIT, SAMPLE = "elicitation/create", "sampling/createMessage"
# what `on_progress` may be: the SDK's async callback, or a plain function (called; nothing awaited)
AnyProgressFn = Callable[[float, float | None, str | None], Awaitable[None] | None]


def as_progress_fn(on_progress: AnyProgressFn | None) -> ProgressFn | None:
    """`on_progress` as the SDK's async progress callback: a plain function is wrapped (its result awaited
    when it is awaitable), so `call_and_wait(..., on_progress=print_it)` works on every path."""
    if on_progress is None:
        return None
    fn = on_progress

    async def call(progress: float, total: float | None, message: str | None) -> None:
        outcome = fn(progress, total, message)
        if inspect.isawaitable(outcome):
            await outcome

    return call


_on_progress: ContextVar[ProgressFn | None] = ContextVar("vibe_jobs_task_progress", default=None)
_answerer: ContextVar[Answerer | None] = ContextVar("vibe_jobs_task_answerer", default=None)
log = logging.getLogger(__name__)  # a library's: silent unless the application sets logging up


@dataclass(frozen=True)
class Answerer:
    """The caller's answers to a job's questions (either callback may be missing)."""

    on_elicit: OnElicit | None = None
    on_sample: OnSample | None = None
    on_refused: Callable[[str], Awaitable[None]] | None = None  # told why each refused answer was refused

    def can(self, method: str) -> bool:
        return (self.on_elicit if method == ELICIT else self.on_sample if method == SAMPLE else None) is not None

    async def answer(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The response to one question, in its MCP result shape (ElicitResult, CreateMessageResult)."""
        if method == ELICIT and self.on_elicit is not None:
            reply = dict(
                await self.on_elicit(str(params.get("message", "")), dict(params.get("requestedSchema") or {}))
            )
            return {
                "action": reply.get("action", "accept"),
                **({"content": reply["content"]} if "content" in reply else {}),
            }
        if method == SAMPLE and self.on_sample is not None:
            result = await self.on_sample(dict(params))
            if isinstance(result, str):
                return {"role": "assistant", "content": {"type": "text", "text": result}, "model": "unknown"}
            if isinstance(result, BaseModel):  # a CreateMessageResult: its wire keys (stopReason), not its fields'
                return result.model_dump(by_alias=True, exclude_none=True, mode="json")
            return dict(result)
        raise MCPError(code=-32603, message=f"no callback answers {method}")


class TaskHandle(Result):
    """The extension's `CreateTaskResult` (`resultType: "task"`)."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class WireResult(Result):
    """Any result, its wire fields kept as they came (`model_extra`)."""

    model_config = ConfigDict(extra="allow")

    def wire(self) -> dict[str, Any]:
        return {**(self.model_extra or {}), **({"_meta": self.meta} if self.meta is not None else {})}


class TaskIdParams(RequestParams):
    task_id: str


class GetTaskRequest(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"  # the spec's Mcp-Name routing header on streamable HTTP


class CancelTaskRequest(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class UpdateTaskParams(TaskIdParams):
    input_responses: dict[str, Any]


class UpdateTaskRequest(Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class TasksClientExtension(ClientExtension):
    """Declare `io.modelcontextprotocol/tasks` and resolve task handles by polling `tasks/get`.

    With it, `client.call_tool` itself returns a job tool's final result on a 2026-07-28 connection.
    """

    identifier = TASKS_EXTENSION

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        return await follow_task(ctx.session, handle, _on_progress.get(), _answerer.get())


def tasks_supported(client: Client) -> bool:
    """Does the server advertise the tasks extension on this connection?"""
    extensions = client.server_capabilities.extensions
    return bool(extensions and TASKS_EXTENSION in extensions)


async def call_and_wait(
    client: Client,
    tool: str,
    args: Mapping[str, Any] | None = None,
    on_progress: AnyProgressFn | None = None,
    *,
    wait_seconds: float = WAIT_SECONDS,
    on_started: MessageFn | None = None,
    on_status: MessageFn | None = None,
    include_details: bool = False,
    on_elicit: OnElicit | None = None,
    on_sample: OnSample | None = None,
    on_refused: Callable[[str], Awaitable[None]] | None = None,
) -> CallToolResult:
    """Call `tool` and return its final CallToolResult (a job's result once the job has finished).
    `on_elicit` and `on_sample` answer the questions the job asks on the way (see the module's text); `on_refused`
    is told why an answer was refused before they are asked again.

    On the jobId protocol, `on_started` gets the job's immediate answer (its structuredContent: jobId,
    pollingRecommendation ...) before the job is followed, and `on_status` every get-job-result status
    message (a JobStatusMessage, with details when `include_details`), the final one included. The tasks
    extension reads no status messages: neither is called there.
    """
    answerer = Answerer(on_elicit, on_sample, on_refused)
    progress = as_progress_fn(on_progress)
    token, asked = _on_progress.set(progress), _answerer.set(answerer)
    try:  # a task handle is resolved inside call_tool by TasksClientExtension, which reads the context vars
        result = await client.call_tool(tool, dict(args or {}), progress_callback=progress)
    finally:
        _on_progress.reset(token)
        _answerer.reset(asked)
    started = job_started(tool, result)
    if started is None:
        return result
    if on_started is not None:
        await on_started(started)
    wait = wait_seconds if await supports_long_poll(client) else 0
    return await follow_job(
        client,
        started["jobId"],
        started,
        progress,
        wait,
        on_status=on_status,
        include_details=include_details,
        answerer=answerer,
    )


# -- the tasks extension ---------------------------------------------------------------------


async def follow_task(
    session: ClientSession, handle: TaskHandle, on_progress: ProgressFn | None, answerer: Answerer | None = None
) -> CallToolResult:
    """Poll `tasks/get` until the task is terminal; a cancelled caller cancels the task. An `input_required`
    task's `inputRequests` are answered by `answerer` with `tasks/update`."""
    task: dict[str, Any] = handle.model_dump(by_alias=True, exclude_none=True)
    task_id = handle.task_id
    reporter = Reporter(on_progress)
    refusals = Refusals(answerer.on_refused if answerer is not None else None)
    try:
        while (final := terminal_result(task, answerer)) is None:
            if task.get("status") == "input_required" and answerer is not None:
                requests = task.get("inputRequests") or {}
                try:
                    await answer_task(session, task_id, requests, answerer, task)
                except MCPError as exc:
                    if exc.code != INVALID_PARAMS:
                        raise
                    await refusals.count(",".join(sorted(requests)), exc.error.message)  # asked again, or given up
            elif status_of(task) not in TASK_TERMINAL:  # a terminal handle without its payload: read it at once
                await reporter.report(_task_percent(task), task.get("statusMessage"))
                await anyio.sleep(interval_ms(task.get("pollIntervalMs")) / 1000)
            request = GetTaskRequest(params=TaskIdParams(task_id=task_id))
            task = (await session.send_request(request, WireResult)).wire()
    except anyio.get_cancelled_exc_class():
        await _cancel_task(session, task_id)
        raise
    return final


async def _cancel_task(session: ClientSession, task_id: str) -> None:
    """Ask the server to cancel the task of a cancelled caller; the caller's cancellation goes on whatever the
    server answers (a task it no longer knows, an error): a refusal here must not replace it."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        try:
            await session.send_request(CancelTaskRequest(params=TaskIdParams(task_id=task_id)), WireResult)
        except Exception as exc:  # any failure of a courtesy call
            log.debug("tasks/cancel of task %s failed: %s: %s", task_id, type(exc).__name__, exc)


async def answer_task(
    session: ClientSession,
    task_id: str,
    requests: Mapping[str, Any],
    answerer: Answerer,
    task: Mapping[str, Any] | None = None,
) -> None:
    """Answer an `input_required` task's `requests` with tasks/update. While the answerer is asking, the task is
    read at its pollIntervalMs (from `task`, the one that asked): once it asks something else (or nothing: the
    question timed out, the job ended) the answerer is cancelled and nothing is sent."""
    responses: dict[str, Any] = {}

    async def ask() -> None:
        for key, request in requests.items():
            responses[key] = await answerer.answer(str(request.get("method")), request.get("params") or {})

    await _while_asked(ask, _until_not_requested(session, task_id, set(requests), task or {}))
    if len(responses) < len(requests):
        return  # the task no longer asks them: read again, it says what it does now
    update = UpdateTaskRequest(params=UpdateTaskParams(task_id=task_id, input_responses=responses))
    await session.send_request(update, WireResult)


async def _while_asked(ask: Callable[[], Awaitable[None]], moot: Awaitable[None]) -> None:
    """Run `ask()` (the answerer) until it returns or `moot` does (the question is no longer asked: `ask` is
    cancelled); an error of either is raised as it was, not in an exception group."""
    try:
        async with anyio.create_task_group() as tg:

            async def asking() -> None:
                await ask()
                tg.cancel_scope.cancel()

            tg.start_soon(asking)
            await moot
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _until_not_requested(session: ClientSession, task_id: str, keys: set[str], task: Mapping[str, Any]) -> None:
    """Return once the task no longer asks `keys` (`input_required` with those `inputRequests`), reading it at
    its pollIntervalMs."""
    while True:
        await anyio.sleep(interval_ms(task.get("pollIntervalMs")) / 1000)
        request = GetTaskRequest(params=TaskIdParams(task_id=task_id))
        task = (await session.send_request(request, WireResult)).wire()
        if task.get("status") != "input_required" or set(task.get("inputRequests") or {}) != keys:
            return


def _call_result(result: Mapping[str, Any]) -> CallToolResult:
    """A job's stored result as the CallToolResult it stands for, each block one the MCP can carry (a block of
    a type it has no model for failed `call_and_wait` with a ValidationError, whatever the job did)."""
    return CallToolResult.model_validate({**result, "content": shown_blocks(result.get("content"))})


def terminal_result(task: Mapping[str, Any], answerer: Answerer | None = None) -> CallToolResult | None:
    """The CallToolResult a terminal DetailedTask stands for; None while it is not (yet) one."""
    status = status_of(task)
    if status == "completed" and isinstance(task.get("result"), dict):
        return _call_result(task["result"])
    if status == "failed" and isinstance(error := task.get("error"), dict):
        raise MCPError(code=int(error.get("code", -32603)), message=str(error.get("message")), data=error.get("data"))
    if status == "cancelled":
        text = task.get("statusMessage") or "Task cancelled"
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    if status == "input_required" and not _answerable(task, answerer):
        raise MCPError(code=-32603, message="the task needs input (inputRequests), which call_and_wait cannot give")
    return None


def _answerable(task: Mapping[str, Any], answerer: Answerer | None) -> bool:
    requests = task.get("inputRequests") or {}
    return answerer is not None and all(answerer.can(str(r.get("method"))) for r in requests.values())


def _task_percent(task: Mapping[str, Any]) -> float | None:
    value = (task.get("_meta") or {}).get(PROGRESS_META_KEY)
    return float(value) if isinstance(value, int | float) else None


def interval_ms(value: Any) -> int:
    """The one rule for a poll interval a server gives (pollIntervalMs, pollingRecommendation.interval): kept
    within MIN_POLL_MS..MAX_POLL_MS (0 would spin, 1e308 sleep for ever); DEFAULT_POLL_MS for anything but a
    finite number (NaN, infinity, a text, true)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_POLL_MS
    if isinstance(value, float) and not math.isfinite(value):
        return DEFAULT_POLL_MS
    return int(min(max(value, MIN_POLL_MS), MAX_POLL_MS))


def status_of(msg: Mapping[str, Any]) -> str | None:
    """The status of a status message or task; a status that is no text (an object, a number) is none."""
    status = msg.get("status")
    return status if isinstance(status, str) else None


# -- the jobId protocol ----------------------------------------------------------------------


def job_started(tool: str, result: CallToolResult) -> dict[str, Any] | None:
    """A job's immediate answer (jobId, status pending, pollingRecommendation) to a call of `tool`, or None for
    any other result (an error, a plain tool's answer, a control tool's answer about a job)."""
    sc: dict[str, Any] | None = result.structured_content
    if result.is_error or tool in CONTROL_TOOLS or not sc or not isinstance(sc.get("jobId"), str):
        return None
    return sc if sc.get("status") == "pending" else None


async def supports_long_poll(client: Client) -> bool:
    for tool in (await client.list_tools()).tools:
        if tool.name == GET_JOB_RESULT:
            return "waitSeconds" in (tool.input_schema.get("properties") or {})
    return False


async def follow_job(
    client: Client,
    job_id: str,
    last: Mapping[str, Any],
    on_progress: ProgressFn | None,
    wait_seconds: float,
    *,
    on_status: MessageFn | None = None,
    include_details: bool = False,
    answerer: Answerer | None = None,
) -> CallToolResult:
    """Read get-job-result (long-polls when wait_seconds > 0, else at each recommendation) until finished;
    a question the job waits on (`waitingFor`) is answered with answer-job when `answerer` can."""
    reporter = Reporter(on_progress)
    refusals = Refusals(answerer.on_refused if answerer is not None else None)
    while True:
        args: dict[str, Any] = {"jobId": job_id, "includeDetails": include_details}
        question = _question(last)
        if question and answerer is not None and answerer.can(_METHODS.get(str(question.get("kind")), "")):
            why = await answer_job(client, job_id, question, answerer, last)
            if why is None or why is NO_LONGER_ASKED:  # a long-poll reads what the job does (or asks) now
                question = None
            else:  # the question stays (or the job moved on): read again, and answer what it asks then
                await refusals.count(str(question.get("requestId")), why)
        asked = wait_seconds if not question else 0
        reply, held = await _read_job(client, args, last, asked, on_progress)
        msg = reply.structured_content
        if not msg or status_of(msg) is None:
            return reply  # e.g. job_not_found (the job expired): the isError answer says so
        if on_status is not None:
            await on_status(msg)
        if msg["status"] in FINAL:
            return _call_result(msg["result"]) if isinstance(msg.get("result"), dict) else reply
        if wait_seconds <= 0:
            await reporter.report(msg.get("progress"), msg.get("message"))
        else:
            await anyio.sleep(_pause_after_long_poll(msg, held, asked - held))
        last = msg


def _pause_after_long_poll(msg: Mapping[str, Any], held: float, unused: float) -> float:
    """Seconds to wait before reading again after a long-poll's unfinished answer. Held a second or more (its time
    used up, or the server's own cap on a long-poll is below what was asked): none, the next long-poll waits for
    the change. Answered within a second (the server does not long-poll, or hardly): the answer's recommendation, no
    longer than the time left unused, so such a server is not read in a busy loop. Rate-limited (never for a
    long-poll by the rule; a server may still say so): the recommendation. A question the job waits on is answered
    (or read at the recommendation) at once."""
    if msg.get("rateLimited"):
        return _recommended_ms(msg) / 1000
    if _question(msg) or unused <= 0 or held >= HELD_LONG_POLL_SECONDS:
        return 0.0
    return min(_recommended_ms(msg) / 1000, unused)


async def _read_job(
    client: Client, args: dict[str, Any], last: Mapping[str, Any], wait_seconds: float, on_progress: ProgressFn | None
) -> tuple[CallToolResult, float]:
    """One read of get-job-result: a long-poll when wait_seconds > 0, else a read at the last answer's
    recommendation. With the seconds the server held the long-poll."""
    if wait_seconds <= 0:
        await anyio.sleep(_recommended_ms(last) / 1000)
        return await client.call_tool(GET_JOB_RESULT, args), 0.0
    began = anyio.current_time()
    reply = await client.call_tool(
        GET_JOB_RESULT,
        {**args, "waitSeconds": wait_seconds},
        read_timeout_seconds=wait_seconds + 30,
        progress_callback=on_progress,
    )
    return reply, anyio.current_time() - began


def _question(msg: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The question a job waits on (`waitingFor`), if the answer names one."""
    question = msg.get("waitingFor")
    return question if isinstance(question, Mapping) and question else None


_METHODS = {"elicitation": ELICIT, "sampling": SAMPLE}


@dataclass
class Refusals:
    """Answers refused per question: the answerer is asked again (a person may correct a typo) up to
    MAX_REFUSED times, then the call gives up with the last refusal (an answerer that repeats itself). `tell`
    hears why each answer before that was refused, before the answerer is asked again."""

    tell: Callable[[str], Awaitable[None]] | None = None
    seen: dict[str, int] = field(default_factory=dict)

    async def count(self, question_id: str, why: str) -> None:
        self.seen[question_id] = self.seen.get(question_id, 0) + 1
        if self.seen[question_id] >= MAX_REFUSED:
            raise MCPError(code=INVALID_PARAMS, message=why)
        if self.tell is not None:
            await self.tell(why)


# what `answer_job` answers when the job stopped asking before the answerer replied
NO_LONGER_ASKED = "the job no longer waits for this answer"


async def answer_job(
    client: Client, job_id: str, question: Mapping[str, Any], answerer: Answerer, last: Mapping[str, Any] | None = None
) -> str | None:
    """Answer a job's `waitingFor` with answer-job: None when it was taken, else why not (the question stays
    open and is asked again, or the job asks another by now). While the answerer is asking, the job is read at its
    recommendation (from `last`, the answer that showed the question): once it no longer asks this question (it
    timed out, was answered elsewhere, the job ended) the answerer is cancelled and NO_LONGER_ASKED returned.
    Before, a person at `vibe-jobs call` was left at the prompt of a question nobody waited for, the job's next
    question or its end shown only after they answered it."""
    method = _METHODS[question["kind"]]
    params = {k: v for k, v in question.items() if k not in ("requestId", "kind")}
    replies: list[dict[str, Any]] = []

    async def ask() -> None:
        replies.append(await answerer.answer(method, params))

    await _while_asked(ask, _until_not_asked(client, job_id, question.get("requestId"), last or {}))
    if not replies:
        return NO_LONGER_ASKED
    reply = replies[0]
    args: dict[str, Any] = {"jobId": job_id, "action": reply.get("action", "accept")}
    if question.get("requestId"):
        args["requestId"] = question["requestId"]  # a question asked since (this one timed out) refuses it
    if args["action"] == "accept":
        args["answer"] = reply.get("content") if method == ELICIT else reply
    result = await client.call_tool("answer-job", args)
    return (first_text(result) or "answer-job refused the answer") if result.is_error else None


async def _until_not_asked(client: Client, job_id: str, request_id: Any, last: Mapping[str, Any]) -> None:
    """Return once the job no longer asks question `request_id` (or no longer reads as a job), reading it at each
    recommendation: a long-poll answers at once while the job waits on a question its caller cannot take."""
    msg = last
    while True:
        await anyio.sleep(_recommended_ms(msg) / 1000)
        reply = await client.call_tool(GET_JOB_RESULT, {"jobId": job_id, "includeDetails": False})
        msg = reply.structured_content or {}
        if status_of(msg) is None or msg["status"] in FINAL:
            return
        if (question := _question(msg)) is None or question.get("requestId") != request_id:
            return


def first_text(result: CallToolResult) -> str | None:
    return next((b.text for b in result.content if isinstance(b, TextContent)), None)


def _recommended_ms(msg: Mapping[str, Any]) -> int:
    reco = msg.get("pollingRecommendation") or {}
    return interval_ms(reco.get("interval") if isinstance(reco, Mapping) else None)


class Reporter:
    """Call on_progress when the percent or the message changes; percent never goes backwards."""

    def __init__(self, on_progress: ProgressFn | None) -> None:
        self.on_progress, self.percent, self.last = on_progress, 0.0, (-1.0, "")

    async def report(self, percent: Any, message: Any) -> None:
        if self.on_progress is None:
            return
        if isinstance(percent, int | float):
            self.percent = max(self.percent, float(percent))
        now = (self.percent, str(message or ""))
        if now != self.last:
            self.last = now
            await self.on_progress(self.percent, 100.0, now[1] or None)
