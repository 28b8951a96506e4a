"""The schedule tools: schedule-job, list-schedules, pause-schedule, resume-schedule, delete-schedule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.errors import InvalidArguments, JobError
from vibe_jobs.firing import Misfire, Overlap
from vibe_jobs.models import OperationType, Priority
from vibe_jobs.schedules import At, CatchUp, CronText, EverySeconds, Schedule, ScheduleRecord, ToolName, ZoneName
from vibe_jobs.server.answers import carried_schedules, omitted_line
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.control import Name
from vibe_jobs.server.wrap import checked_tool, error_result, job_error_result

# the schedule tools' names: no other tool may take one (a proxied upstream's tool, say)
SCHEDULE_TOOL_NAMES = frozenset(
    {"schedule-job", "list-schedules", "pause-schedule", "resume-schedule", "delete-schedule"}
)
ScheduleId = Annotated[Name, Field(description="The scheduleId schedule-job returned.")]


def _text(content: str) -> TextContent:
    return TextContent(type="text", text=content)


def _answer(rec: ScheduleRecord, what: str, ctx: Context, max_bytes: int) -> CallToolResult:
    """A schedule-job, pause or resume answer: the schedule, its arguments within what one answer carries over
    HTTP (`carried_schedules`; up to max_params_bytes of them made an answer the client could not read, so a
    schedule made, paused or resumed answered its caller as a failure)."""
    wire = Schedule.from_record(rec).wire()
    shown, _ = carried_schedules([wire], ctx.request_context.request, max_bytes)
    wire = shown[0] if shown else wire
    return CallToolResult(
        content=[_text(f"Schedule {rec.schedule_id} {what}; {_next(rec.next_fire_at, rec.paused)}.")],
        structured_content=wire,
    )


async def _guarded(call: Callable[[], Awaitable[CallToolResult]]) -> CallToolResult:
    try:
        return await call()
    except InvalidArguments as exc:
        return error_result(f"invalid schedule: {exc}", exc.code, unknown=exc.unknown, accepted=exc.accepted)
    except JobError as exc:
        return job_error_result(exc)


def _next(at: int | None, paused: bool) -> str:
    """When the schedule fires next, as its answer says it (a paused one does not: 'next firing at' its planned
    tick told an agent it would run then)."""
    if paused:
        return "it fires nothing until resumed (resume-schedule)"
    return f"next firing at {at}" if at is not None else "it fires no more (past its endAt)"


def _line(s: dict[str, Any]) -> str:
    """A schedule as list-schedules' text shows it, in the words schedule-job and pause-schedule use (it read "next
    <a paused one's planned tick>" and "last None" for one that never fired)."""
    timing = s.get("cron") or f"every {s.get('everySeconds'):g} s"
    last = s.get("lastOutcome") or "none yet"
    return f"{s['scheduleId']} {s['tool']} {timing}; {_next(s.get('nextFireAt'), s['paused'])}; last outcome: {last}"


class ScheduleTools:
    """The schedule tools; each call acts for the caller (`identity`): a schedule of another principal
    answers as an unknown id, and the jobs a schedule fires are its creator's."""

    def __init__(self, schedules: Schedules, identity: Identity | None = None) -> None:
        self.s, self.identity = schedules, identity or Identity()

    async def schedule_job(
        self,
        ctx: Context,
        tool: Annotated[ToolName, Field(description="The job tool to run on the schedule.")],
        arguments: Annotated[dict[str, Any], Field(description="The tool's arguments (checked now).")] = {},  # noqa: B006
        cron: Annotated[
            CronText | None,
            Field(
                description="5 fields (min hour dom mon dow), 6 with leading seconds, or @hourly/@daily/...; "
                "give exactly one of cron and everySeconds."
            ),
        ] = None,
        everySeconds: Annotated[
            EverySeconds | None,
            Field(description="Fire every N seconds (N >= 1); give exactly one of cron and everySeconds."),
        ] = None,
        timezone: Annotated[ZoneName, Field(description="IANA timezone the cron is read in.")] = "UTC",
        startAt: Annotated[At | None, Field(description="No firing before this time (epoch ms).")] = None,
        endAt: Annotated[At | None, Field(description="No firing after this time (epoch ms).")] = None,
        misfire: Annotated[Misfire, Field(description="Ticks missed (downtime): skip, run_once or catch_up.")] = (
            Misfire.RUN_ONCE
        ),
        maxCatchUp: Annotated[CatchUp, Field(description="catch_up fires at most this many missed ticks.")] = 10,
        overlap: Annotated[Overlap, Field(description="Previous run still going: allow, skip or queue.")] = (
            Overlap.ALLOW
        ),
        priority: Priority = Priority.MEDIUM,
        operationType: OperationType | None = None,
    ) -> CallToolResult:
        """Run a job tool on a schedule (cron or every N seconds); answers with scheduleId and nextFireAt."""

        async def create() -> CallToolResult:
            spec = parse_spec(
                {
                    "tool": tool,
                    "arguments": arguments,
                    "cron": cron,
                    "everySeconds": everySeconds,
                    "timezone": timezone,
                    "startAt": startAt,
                    "endAt": endAt,
                    "misfire": misfire,
                    "maxCatchUp": maxCatchUp,
                    "overlap": overlap,
                    "priority": priority,
                    "operationType": operationType,
                }
            )
            return self._answer(await self.s.create(spec, self.identity.viewer()), "created", ctx)

        return await _guarded(create)

    async def list_schedules(self, ctx: Context) -> CallToolResult:
        """Every schedule: its timing, last and next firing, and the outcome of its last job."""
        request, max_bytes = ctx.request_context.request, self.s.m.settings.max_answer_bytes
        schedules, omitted = await self.s.page(
            self.identity.viewer(), lambda wires: carried_schedules(wires, request, max_bytes)
        )
        lines = [_line(s) for s in schedules] + ([omitted_line(omitted)] if omitted else [])
        body: dict[str, Any] = {"schedules": schedules, **({"omitted": omitted} if omitted else {})}
        return CallToolResult(content=[_text("\n".join(lines) or "no schedules")], structured_content=body)

    async def pause_schedule(self, ctx: Context, scheduleId: ScheduleId) -> CallToolResult:
        """Pause a schedule: it fires nothing until resumed."""
        return await _guarded(lambda: self._then(self.s.pause(scheduleId, self.identity.viewer()), "paused", ctx))

    async def resume_schedule(self, ctx: Context, scheduleId: ScheduleId) -> CallToolResult:
        """Resume a paused schedule from now (ticks that came due while paused are not fired)."""
        return await _guarded(lambda: self._then(self.s.resume(scheduleId, self.identity.viewer()), "resumed", ctx))

    async def delete_schedule(self, scheduleId: ScheduleId) -> CallToolResult:
        """Delete a schedule: it fires no more (jobs it fired already are kept)."""

        async def delete() -> CallToolResult:
            await self.s.delete(scheduleId, self.identity.viewer())
            return CallToolResult(
                content=[_text(f"Schedule {scheduleId} deleted.")],
                structured_content={"scheduleId": scheduleId, "deleted": True},
            )

        return await _guarded(delete)

    async def _then(self, change: Awaitable[ScheduleRecord], what: str, ctx: Context) -> CallToolResult:
        return self._answer(await change, what, ctx)

    def _answer(self, rec: ScheduleRecord, what: str, ctx: Context) -> CallToolResult:
        return _answer(rec, what, ctx, self.s.m.settings.max_answer_bytes)

    def tools(self) -> list[Tool]:
        entries: list[tuple[str, Callable[..., Any]]] = [
            ("schedule-job", self.schedule_job),
            ("list-schedules", self.list_schedules),
            ("pause-schedule", self.pause_schedule),
            ("resume-schedule", self.resume_schedule),
            ("delete-schedule", self.delete_schedule),
        ]
        assert {name for name, _ in entries} == SCHEDULE_TOOL_NAMES
        return [checked_tool(fn, name) for name, fn in entries]
