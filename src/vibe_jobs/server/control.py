"""The job control tools: get-job-result, list-jobs, cancel-job, submit-job, job-stats."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Annotated, Any, Literal, cast

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult, TextContent
from pydantic import AfterValidator, ConfigDict, Field

from vibe_jobs.blocks import shown_blocks
from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.errors import InvalidParams, JobError, StoreError
from vibe_jobs.identity import Viewer
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import Statistics
from vibe_jobs.models import (
    MAX_RETRIES,
    DurationMs,
    EpochMs,
    Job,
    JobRecord,
    JobStarted,
    JobStatusMessage,
    OperationType,
    PositiveSeconds,
    Priority,
    ResourceRequirements,
    TaskMetadata,
    TaskSpec,
    WireModel,
)
from vibe_jobs.questions import open_question
from vibe_jobs.server.answers import carried_jobs, carried_schedules, carried_status, omitted_line
from vibe_jobs.server.asking import Asker, Keepalive, not_taken, refusal, take_responses
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.messages import diagnostics_text, finished_text, not_served_text, unfinished_text
from vibe_jobs.server.wrap import admit, checked_tool, error_result, job_error_result, start_job
from vibe_jobs.settings import MAX_WAIT_SECONDS
from vibe_jobs.states import JobStatus

# An id, a name or a cursor a caller sends: at most this long (ids are 32 characters), so that a refusal
# that names it stays short (a caller may send megabytes).
MAX_NAME_CHARS = 256


def _no_nul(value: str) -> str:
    """No id, name or cursor holds a NUL (PostgreSQL's text cannot: a lookup by one failed as the store's
    error, and counted against the store's health)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Name = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_no_nul)]
# the control tools' names: no other tool may take one (a proxied upstream's tool, say)
CONTROL_TOOL_NAMES = frozenset({"get-job-result", "list-jobs", "cancel-job", "submit-job", "answer-job", "job-stats"})
MAX_REASON_CHARS = 4_096  # a cancel reason, kept with the job
MAX_DEPENDENCIES = 1_000

PROTOCOL = (
    "Jobs run in the background. Read a job with get-job-result; wait until its pollingRecommendation."
    "nextCheckTime before reading again (earlier reads are answered with rateLimited: true and do not count), "
    "or pass waitSeconds to wait for the result in one call. Never invent a result while a job is running."
)


def text(content: str) -> TextContent:
    return TextContent(type="text", text=content)


def status_result(msg: JobStatusMessage, include_details: bool, served: bool = True) -> CallToolResult:
    """get-job-result's answer: the status message as structured content plus a readable text (`served`: this
    server has the job's tool; an unfinished job of another tool waits for a server that has it)."""
    wire = msg.wire()
    if msg.status is JobStatus.COMPLETED:
        blocks = [text(finished_text(msg)), *_result_blocks(msg.result)]
        return CallToolResult(content=blocks, structured_content=wire)
    if msg.status.finished:
        blocks = [text(finished_text(msg)), *_result_blocks(msg.result)]
        if include_details and (diag := diagnostics_text(msg.details, {b.text for b in blocks if b.type == "text"})):
            blocks.append(text(diag))
        return CallToolResult(content=blocks, structured_content=wire, is_error=True)
    said = unfinished_text(msg) if served else f"{unfinished_text(msg)} {not_served_text(msg)}"
    return CallToolResult(content=[text(said)], structured_content=wire)


def with_refusal(msg: JobStatusMessage, refused: str | None, not_taken: str | None = None) -> JobStatusMessage:
    """The status with why this caller's last answer to the question it shows was refused (`answerRefused`), and
    why its client could not take that question's request (`notDelivered`: answer-job answers it)."""
    notes = {k: v for k, v in (("answerRefused", refused), ("notDelivered", not_taken)) if v is not None}
    if not notes or msg.waiting_for is None:
        return msg
    return msg.model_copy(update={"waiting_for": {**msg.waiting_for, **notes}})


class JobListed(WireModel):
    """A job as list-jobs shows it: its fields without its result (large params, details and questions
    may be shown as markers when the page must stay small)."""

    model_config = ConfigDict(extra="allow")

    id: str
    tool_name: str
    status: JobStatus


class JobListAnswer(WireModel):
    """list-jobs' structured answer: a page of jobs, newest first, and the cursor of the next page."""

    jobs: list[JobListed]
    next_cursor: str | None = Field(
        description="Pass as cursor (with the same status and toolName) for the next page; null on the last."
    )


class CancelAnswer(WireModel):
    """cancel-job's structured answer: the job's status after the cancel (cancelled, unless it was still
    stopping after 5 s)."""

    job_id: str
    status: JobStatus
    message: str


AnswerAction = Literal["accept", "decline", "cancel"]


class AnswerTaken(WireModel):
    """answer-job's structured answer: the job took the answer (or the refusal of its question)."""

    job_id: str
    status: Literal["running"]
    answered: bool
    action: AnswerAction
    checked_here: bool = Field(
        description="This server runs the job and checked the answer; false: the server that runs it checks it."
    )


class SubmitMetadata(WireModel):
    """The job's session, user and batch, and its retry limit; retryCount is the server's count of the job's
    retries, 0 for a new job."""  # the specification's TaskJob metadata; its example gives retryCount

    model_config = ConfigDict(extra="forbid")

    session_id: Name | None = None
    user_id: Name | None = None
    batch_id: Name | None = None
    retry_count: Literal[0] = 0
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] | None = None


def _one_of(name: str, value: Any, other_name: str, other: Any) -> Any:
    """The value given under either of two names for one field; InvalidParams when both are given and differ."""
    if value is not None and other is not None and value != other:
        raise InvalidParams(f"{name} and {other_name} name one field and were given different values: give one")
    return value if value is not None else other


def _task_metadata(given: SubmitMetadata | None, batch_id: str | None, max_retries: int | None) -> TaskMetadata:
    """The job's TaskMetadata from submit-job's `metadata` and its own `batchId` and `maxRetries`."""
    meta = given or SubmitMetadata()
    return TaskMetadata(
        session_id=meta.session_id,
        user_id=meta.user_id,
        batch_id=_one_of("batchId", batch_id, "metadata.batchId", meta.batch_id),
        max_retries=_one_of("maxRetries", max_retries, "metadata.maxRetries", meta.max_retries),
    )


def _next_page(status: JobStatus | None, tool_name: str | None, limit: int, cursor: str | None) -> str:
    """list-jobs' arguments for the next page, as JSON: the cursor keeps only the position, so the filter and the
    page size are said again (following 'call list-jobs with cursor X' alone listed every status)."""
    given = {"status": status.value if status else None, "toolName": tool_name, "limit": limit, "cursor": cursor}
    return json.dumps({k: v for k, v in given.items() if v is not None})


def job_summary(job: Job) -> dict[str, Any]:
    """A job as list-jobs and `jobs://recent` show it: no result, secret-named arguments redacted."""
    return job.shown(result=False)


def _result_blocks(result: Mapping[str, Any] | None) -> list[Any]:
    """The job's result blocks as get-job-result shows them (`blocks.shown_blocks`: one the MCP cannot carry is
    told as a text; structuredContent.result keeps the result as the tool gave it)."""
    return [text(b["text"]) if b["type"] == "text" else b for b in shown_blocks((result or {}).get("content"))]


class ControlTools:
    """The control tools bound to one manager and the registered job tools."""

    def __init__(
        self,
        manager: JobManager,
        specs: Mapping[str, JobToolSpec],
        identity: Identity | None = None,
        schedules: Schedules | None = None,
    ) -> None:
        self.m, self.specs, self.schedules = manager, specs, schedules
        self.identity = identity or Identity()

    async def get_job_result(
        self,
        ctx: Context,
        jobId: Annotated[Name, Field(description="The jobId a job tool or submit-job returned.")],
        includeDetails: Annotated[bool, Field(description="Include stage, diagnostics and metadata.")] = True,
        waitSeconds: Annotated[
            float,
            Field(
                ge=0, le=MAX_WAIT_SECONDS, description="Wait up to this many seconds for the job to finish (long-poll)."
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, JobStatusMessage]:
        """Read a background job: its status, progress, and its result once finished."""
        viewer = self.identity.viewer()
        try:
            refused = await take_responses(self.m, ctx, jobId, ctx.input_responses, viewer)
            if waitSeconds > 0 and not refused:  # a refused answer is told at once, as on 2025-11-25
                seconds = min(waitSeconds, self.m.settings.max_wait_ms / 1000, self.identity.seconds_left())
                asked = await self._long_poll(ctx, jobId, seconds, viewer)
                if asked is not None:  # 2026-07-28: the SDK sends it as `input_required`; the retry answers
                    return cast(CallToolResult, asked)
            msg = await self.m.poll(jobId, long_poll=waitSeconds > 0, include_details=includeDetails, viewer=viewer)
        except JobError as exc:
            return job_error_result(exc)
        shown, session = (msg.waiting_for or {}).get("requestId"), ctx.request_context.session
        msg = with_refusal(msg, refusal(session, shown), not_taken(session, shown))
        msg = carried_status(msg, ctx.request_context.request, self.m.settings.max_answer_bytes)
        return status_result(msg, includeDetails, served=msg.tool_name in self.specs)

    async def _long_poll(self, ctx: Context, job_id: str, seconds: float, viewer: Viewer) -> InputRequiredResult | None:
        """Wait for the job to finish; meanwhile deliver its questions to a caller that can answer them on
        this call (on 2026-07-28 by answering `input_required`, returned here), and return at once when it
        waits on one this caller cannot (`waitingFor` says what)."""
        await self.m.get_record(job_id, viewer)  # an unknown (or another's) job is refused before waiting
        asker = Asker(ctx, self.m, job_id)
        keepalive = Keepalive(ctx, self.m.settings.progress_keepalive_ms / 1000)
        end = anyio.current_time() + seconds
        asked = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(keepalive.run)
                while (left := end - anyio.current_time()) > 0:
                    rec = await self.m.wait(
                        job_id, left, keepalive.on_event, stop=_asks, viewer=viewer, on_start=keepalive.begin
                    )
                    if not asker.wants(rec):
                        break
                    if (asked := asker.input_required(rec)) is not None:
                        break
                    await self._deliver_while_asked(asker, rec, left, viewer)
                tg.cancel_scope.cancel()
        except ExceptionGroup as group:  # the job went away while waited on: answered as a refusal
            raise _only_job_error(group) from None
        return asked

    async def _deliver_while_asked(self, asker: Asker, rec: JobRecord, seconds: float, viewer: Viewer) -> None:
        """Put the job's question to the caller (a request tied to this call; or find it outstanding on this
        connection, put by an earlier long-poll), and wait, within the long-poll's time, while the reply is
        outstanding and the job still asks it. The request itself outlives this call (`server/outstanding.py`)."""
        asking = open_question(rec)
        assert asking is not None

        def moot(now: JobRecord) -> bool:
            question = open_question(now)
            return question is None or question["id"] != asking["id"]

        request = asker.deliver(rec)
        async with anyio.create_task_group() as tg:

            async def until_moot() -> None:
                await self.m.wait(rec.id, seconds, stop=moot, viewer=viewer)
                tg.cancel_scope.cancel()

            tg.start_soon(until_moot)
            await request.done.wait()
            tg.cancel_scope.cancel()

    async def list_jobs(
        self,
        ctx: Context,
        status: Annotated[JobStatus | None, Field(description="Only jobs in this status.")] = None,
        toolName: Annotated[Name | None, Field(description="Only jobs of this tool.")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Page size (max 500).")] = 50,
        cursor: Annotated[
            Name | None, Field(description="nextCursor from the previous page (give its status and toolName again).")
        ] = None,
    ) -> Annotated[CallToolResult, JobListAnswer]:
        """List jobs, newest first, a page at a time."""
        try:
            page = await self.m.list_jobs(
                status, toolName, limit, cursor, viewer=self.identity.viewer(), with_result=False
            )
        except JobError as exc:
            return job_error_result(exc)
        jobs, kept = carried_jobs(
            [job_summary(j) for j in page.jobs],
            ctx.request_context.request is not None,
            self.m.settings.max_answer_bytes,
        )
        page, jobs = page.first(kept), jobs[:kept]
        summary = "\n".join(f"{j['id']} {j['toolName']} {j['status']}" for j in jobs) or "no jobs"
        more = (
            f"\nMore: call list-jobs with {_next_page(status, toolName, limit, page.next_cursor)}"
            if page.next_cursor
            else ""
        )
        return CallToolResult(
            content=[text(summary + more)], structured_content={"jobs": jobs, "nextCursor": page.next_cursor}
        )

    async def cancel_job(
        self,
        jobId: Annotated[Name, Field(description="The job to cancel.")],
        reason: Annotated[
            str | None, Field(max_length=MAX_REASON_CHARS, description="Why; recorded with the job.")
        ] = None,
    ) -> Annotated[CallToolResult, CancelAnswer]:
        """Cancel a job: a pending job never runs; running work is stopped. A finished job cannot be cancelled."""
        viewer = self.identity.viewer()
        try:
            rec = await self.m.cancel_job(jobId, reason, viewer)
            if not rec.finished:
                rec = await self.m.wait(jobId, 5.0, viewer=viewer)
        except JobError as exc:
            return job_error_result(exc)
        state = rec.status.value
        body = {
            "jobId": jobId,
            "status": state,
            "message": rec.progress_message or f"cancel requested ({state})",
        }
        return CallToolResult(content=[text(f"Job {jobId} is {state}.")], structured_content=body)

    async def answer_job(
        self,
        jobId: Annotated[Name, Field(description="The job whose question (waitingFor) you answer.")],
        answer: Annotated[
            Any,
            Field(
                description="For an elicitation: an object with the fields of waitingFor.requestedSchema. "
                "For sampling: the text of the reply."
            ),
        ] = None,
        action: Annotated[
            AnswerAction, Field(description="accept (with answer), or decline / cancel to refuse the question.")
        ] = "accept",
        requestId: Annotated[
            Name | None,
            Field(
                description="waitingFor.requestId of the question you answer: refused when the job asks another "
                "one now (the one you read timed out or was answered)."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, AnswerTaken]:
        """Answer the question a running job waits on; the job resumes with it."""
        try:
            viewer = self.identity.viewer()
            rec = await self.m.answer(jobId, answer, request_id=requestId, action=action, viewer=viewer)
        except JobError as exc:
            return job_error_result(exc)
        here = rec.owner == self.m.owner  # the job's own model checked the answer in this process: it is taken
        body = {"jobId": jobId, "status": "running", "answered": True, "action": action, "checkedHere": here}
        nxt = f'Next: call get-job-result with {{"jobId": "{jobId}"}}'
        if here:
            hint = f"Answer delivered; the job resumes. {nxt}."
        else:  # another server runs the job; its model checks the answer there (`JobContext.elicit`)
            hint = (
                "Answer stored; another server runs this job and checks it there: the job resumes, or asks again "
                f"saying why it did not fit. {nxt} to see which."
            )
        return CallToolResult(content=[text(hint)], structured_content=body)

    async def job_stats(self, ctx: Context) -> Annotated[CallToolResult, Statistics]:
        """Counts by status, queue depth, running jobs, per-tool rates and durations, and health."""
        viewer = self.identity.viewer()
        request, max_bytes = ctx.request_context.request, self.m.settings.max_answer_bytes
        shown: list[dict[str, Any]] = []
        omitted = 0
        if self.schedules is not None:
            try:  # those one answer carries, with the last jobs of those only (as list-schedules)
                fit = partial(carried_schedules, request=request, max_bytes=max_bytes)
                shown, omitted = await self.schedules.page(viewer, fit, nulls=True)
            except StoreError as exc:  # health names it (degraded) instead of the figures failing
                self.m.store_failed(exc)
        stats = await self.m.statistics(viewer, server_wide=self.identity.sees_server_figures(viewer))
        counts = ", ".join(f"{k} {v}" for k, v in stats.counts.items())
        line = f"Jobs: {counts}; queue depth {stats.queue_depth}; health {stats.health.status}"
        body = stats.wire()
        for s in shown:
            fired, outcome, upcoming = s.get("lastFiredAt"), s.get("lastOutcome"), s.get("nextFireAt")
            line += f"\nSchedule {s['scheduleId']}: last fired {fired} ({outcome}), next {upcoming}"
        if omitted:
            line += "\n" + omitted_line(omitted)
            body["schedulesOmitted"] = omitted
        body["schedules"] = shown
        return CallToolResult(content=[text(line)], structured_content=body)

    async def submit_job(
        self,
        tool: Annotated[Name, Field(description="The job tool to run.")],
        arguments: Annotated[dict[str, Any], Field(description="The tool's arguments.")] = {},  # noqa: B006
        priority: Priority = Priority.MEDIUM,
        operationType: OperationType | None = None,
        dependsOn: Annotated[
            list[Name], Field(max_length=MAX_DEPENDENCIES, description="Job ids that must complete first.")
        ] = [],  # noqa: B006
        estimatedDuration: Annotated[DurationMs | None, Field(description="Expected run time in ms.")] = None,
        resourceRequirements: ResourceRequirements | None = None,
        maxRetries: Annotated[int | None, Field(ge=0, le=MAX_RETRIES)] = None,
        timeoutSeconds: PositiveSeconds | None = None,
        taskId: Name | None = None,
        projectId: Name | None = None,
        batchId: Name | None = None,
        runAt: Annotated[EpochMs | None, Field(description="Defer: not runnable before this time (epoch ms).")] = None,
        deadline: Annotated[
            EpochMs | None,
            Field(description="Epoch ms: not started by then -> failed; still running then -> cancelled."),
        ] = None,
        dependencies: Annotated[
            list[Name] | None,
            Field(max_length=MAX_DEPENDENCIES, description="Another name of dependsOn: give one of them."),
        ] = None,
        metadata: Annotated[
            SubmitMetadata | None,
            Field(description="sessionId, userId, batchId, maxRetries (the last two may be given here or above)."),
        ] = None,
    ) -> Annotated[CallToolResult, JobStarted]:
        """Submit a job tool call with scheduling options (priority, dependencies, resources, retries, time-out)."""
        spec = self.specs.get(tool)
        if spec is None:
            return error_result(
                f"No job tool named '{tool}'; job tools: {', '.join(sorted(self.specs))}", "unknown_tool"
            )
        params = admit(spec, arguments)
        if isinstance(params, CallToolResult):
            return params
        try:
            depends = _one_of("dependsOn", dependsOn or None, "dependencies", dependencies) or []
            meta = _task_metadata(metadata, batchId, maxRetries)
        except InvalidParams as exc:
            return job_error_result(exc)
        task = TaskSpec(
            task_id=taskId,
            project_id=projectId,
            operation_type=operationType or spec.operation_type,
            priority=priority,
            estimated_duration=estimatedDuration,
            resource_requirements=resourceRequirements,
            dependencies=depends,
            timeout_seconds=timeoutSeconds,
            metadata=meta,
            deadline=deadline,
        )
        return await start_job(self.m, spec, params, task, self.identity.viewer(), run_at=runAt)

    def tools(self) -> list[Tool]:
        entries: list[tuple[str, Callable[..., Any], str]] = [
            ("get-job-result", self.get_job_result, "Read a background job's status and result."),
            (
                "list-jobs",
                self.list_jobs,
                "List jobs newest first, filtered by status or tool, a page at a time.",
            ),
            (
                "cancel-job",
                self.cancel_job,
                "Cancel a pending or running job (a finished job cannot be cancelled).",
            ),
            (
                "submit-job",
                self.submit_job,
                "Run a job tool with scheduling options; answers with a jobId.",
            ),
            (
                "answer-job",
                self.answer_job,
                "Answer the question a running job waits on (get-job-result shows it as waitingFor): "
                "the fields of its requestedSchema, or the text for a sampling request; or decline.",
            ),
            (
                "job-stats",
                self.job_stats,
                "Job statistics: counts, queue depth, rates, durations and health.",
            ),
        ]
        assert {name for name, _, _ in entries} == CONTROL_TOOL_NAMES
        return [checked_tool(fn, name, f"{desc} {PROTOCOL}") for name, fn, desc in entries]  # each teaches it


def _only_job_error(group: ExceptionGroup[Exception]) -> Exception:
    """The JobError a task group raised alone, or the group itself (anything else is a crash)."""
    errors = group.exceptions
    return errors[0] if len(errors) == 1 and isinstance(errors[0], JobError) else group


def _asks(rec: Any) -> bool:
    return open_question(rec) is not None
