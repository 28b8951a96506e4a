"""Answers that JSON can carry: a plain tool's answer that cannot be encoded fails its own request.

A job's result is made JSON-safe where it is stored (`results.bounded_result`); a plain tool answers
within the request, so its answer is checked here, before a transport tries to write it (where the
SDK's HTTP transport would end the request without an answer, and its stdio transport the server).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR

from vibe_jobs.logs import get_logger
from vibe_jobs.models import JobStatusMessage
from vibe_jobs.results import json_size, within_answer

log = get_logger("vibe_jobs.server.answers")


def unencodable_reason(answer: Any) -> str | None:
    """Why `answer` (a pydantic model or plain data) cannot be written as UTF-8 JSON; None when it can."""
    try:
        if hasattr(answer, "model_dump_json"):
            answer.model_dump_json(by_alias=True, exclude_none=True)
        else:
            from pydantic_core import to_json

            to_json(answer)
    except (ValueError, TypeError) as exc:  # pydantic's serialisation errors are ValueErrors
        return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return None


def encodable_answers(plain_tools: Collection[str]) -> ServerMiddleware[Any]:
    """Server middleware: the answer of a call to one of `plain_tools` is checked; one that cannot be
    encoded is replaced by a JSON-RPC error naming the problem."""

    async def check(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        params = ctx.params if ctx.method == "tools/call" else None
        name = params.get("name") if isinstance(params, dict) else None
        if name in plain_tools and (reason := unencodable_reason(result)) is not None:
            log.error("answer.unencodable", tool=name, error=reason)
            message = f"The answer of tool '{name}' could not be encoded as JSON ({reason})"
            raise MCPError(code=INTERNAL_ERROR, message=message)
        return result

    return check


# Over HTTP, a list's large parts (schedules' arguments; jobs' params, questions, details) take at most a quarter of
# an answer, and the items (their text lines, a subset of their fields, as much again) at most 3/8 of it.
SHOWN_ARGUMENTS_SHARE = 4
SHOWN_ITEMS_EIGHTHS = 3


def carried_schedules(
    schedules: list[dict[str, Any]], request: object, max_bytes: int
) -> tuple[list[dict[str, Any]], int]:
    """Schedules (as on the wire) as an answer shows them, and how many it leaves out: whole over stdio; over HTTP
    their arguments, smallest first, while they fit in a quarter of `max_bytes`, the arguments of the rest as a
    marker ({"truncated", "originalBytes", "maxAnswerBytes"}), and the schedules, oldest first, while they fit
    in 3/8 of it. A schedule may keep up to max_params_bytes (1 MiB) of arguments, an admin sees every
    principal's schedules, and one answer over 1 MiB leaves the MCP Python client unable to read any of them."""
    if request is None:
        return schedules, 0
    shown = _fields_within(schedules, ("arguments",), max_bytes // SHOWN_ARGUMENTS_SHARE, max_bytes)
    kept = _fitting(shown, max_bytes)
    return shown[:kept], len(shown) - kept


JOB_FIELDS_SHOWN = ("params", "waitingFor", "details")  # a job's parts without a bound of their own in a list


def carried_jobs(jobs: list[dict[str, Any]], bounded: bool, max_bytes: int) -> tuple[list[dict[str, Any]], int]:
    """A page of jobs (as `job_summary` shows them) as list-jobs and `jobs://recent` answer, and how many of them
    it keeps (the rest: from the next page's cursor): whole unless `bounded` (list-jobs over HTTP; jobs://recent,
    whose reader cannot be told); else their params, questions and details, smallest first, while they fit in a
    quarter of `max_bytes` (the rest as markers, as schedules' arguments), and the jobs, newest first, while
    they fit in 3/8 of it. A job may keep 1 MiB of params and a question of 256 KiB: two such jobs on one page
    left the owner, and the admin who sees every job, unable to read any page (review helper-55)."""
    if not bounded:
        return jobs, len(jobs)
    shown = _fields_within(jobs, JOB_FIELDS_SHOWN, max_bytes // SHOWN_ARGUMENTS_SHARE, max_bytes)
    return shown, max(1, _fitting(shown, max_bytes))


def _fitting(items: list[dict[str, Any]], max_bytes: int) -> int:
    """How many of `items`, from the first, fit in 3/8 of `max_bytes`."""
    budget = max_bytes * SHOWN_ITEMS_EIGHTHS // 8
    for kept, item in enumerate(items):
        budget -= json_size(item)
        if budget < 0:
            return kept
    return len(items)


def _fields_within(
    items: list[dict[str, Any]], keys: tuple[str, ...], budget: int, max_bytes: int
) -> list[dict[str, Any]]:
    """Copies of `items` whose `keys`, smallest first, are shown while they fit in `budget`; the rest as markers."""
    sizes = {(i, key): json_size(item[key]) for i, item in enumerate(items) for key in keys if item.get(key)}
    shown = [dict(item) for item in items]
    for (i, key), size in sorted(sizes.items(), key=lambda entry: entry[1]):
        if size <= budget:
            budget -= size
        else:
            budget = 0  # the rest are larger still: shown as markers
            shown[i][key] = {"truncated": True, "originalBytes": size, "maxAnswerBytes": max_bytes}
    return shown


def omitted_line(omitted: int) -> str:
    return (
        f"{omitted} more schedules not shown: the answer would pass VIBE_JOBS_MAX_ANSWER_BYTES "
        "(`vibe-jobs schedules list` shows them all)"
    )


MAX_SHOWN_METADATA = 64 * 1024  # of a job's progress metadata in one answer over HTTP (it has no cap of its own)


def carried_result(
    result: dict[str, Any] | None, request: object, max_bytes: int, job_id: str, taken: int = 0
) -> dict[str, Any] | None:
    """A job's result as an answer shows it: whole over stdio; over HTTP (`request`: the request the SDK read it
    from) within `max_bytes`, `taken` of them by the rest of the answer (`within_answer`): the MCP Python client
    reads no server-sent event over 1 MiB, and a result of up to max_result_bytes (4 MiB) would leave it
    unreadable there for good."""
    if result is None or request is None:
        return result
    return within_answer(result, max_bytes, f"`vibe-jobs jobs show {job_id}` where its store is", taken)


def carried_status(msg: JobStatusMessage, request: object, max_bytes: int) -> JobStatusMessage:
    """A job's status message as an answer over HTTP shows it: its progress metadata within MAX_SHOWN_METADATA,
    its result within what the rest leaves (the rest shows twice: in the message and, as text, beside it)."""
    if request is None:
        return msg
    details = msg.details
    if details is not None and details.metadata and (size := json_size(details.metadata)) > MAX_SHOWN_METADATA:
        marker = {"truncated": True, "originalBytes": size, "maxShownBytes": MAX_SHOWN_METADATA}
        msg = msg.model_copy(update={"details": details.model_copy(update={"metadata": marker})})
    if msg.result is None:
        return msg
    taken = 2 * json_size(msg.model_copy(update={"result": None}).wire())
    return msg.model_copy(update={"result": carried_result(msg.result, request, max_bytes, msg.job_id, taken)})
