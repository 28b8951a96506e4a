"""What agents read: short texts that say exactly what to call next, and when."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from vibe_jobs.arguments import closest, shown
from vibe_jobs.models import JobStatusMessage, PollingRecommendation
from vibe_jobs.states import JobStatus


def when(reco: PollingRecommendation) -> str:
    return _when(reco.interval, reco.next_check_time)


def _when(interval: int, next_check_time: int) -> str:
    return f"in {interval / 1000:g} s (nextCheckTime {next_check_time}, {utc_clock(next_check_time)})"


def utc_clock(ms: int) -> str:
    """Epoch milliseconds as the UTC wall clock: HH:MM:SS.mmm UTC (epoch days are whole UTC days)."""
    seconds, millis = divmod(ms, 1000)
    hours, rest = divmod(seconds % 86_400, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{millis:03d} UTC"


def call_hint(job_id: str) -> str:
    return f"get-job-result with {{{_JOB_ID_KEY}: {_quoted(job_id)}}}"


def _quoted(text: str) -> str:
    """`text` as a JSON string (an id of letters and digits, as every job id is, needs no encoder)."""
    return f'"{text}"' if text.isascii() and text.isalnum() else json.dumps(text)


_JOB_ID_KEY = json.dumps("jobId")


def started_text(
    job_id: str, tool_name: str, interval: int, next_check_time: int, max_wait: float, deferred: int | None = None
) -> str:
    """What a job tool answers: read the job in `interval` ms, at `next_check_time` (its polling recommendation);
    `deferred`: the job's runAt, when it is still ahead."""
    if deferred is not None:
        return (
            f"Job {job_id} for tool '{tool_name}' is deferred: it does not run before runAt {deferred} "
            f"({utc_clock(deferred)}), so there is nothing to read before then. "
            f"Next: call {call_hint(job_id)} {_when(interval, next_check_time)}. Do not guess the result."
        )
    return (
        f"Job {job_id} started for tool '{tool_name}'; it runs in the background and its result is not known yet. "
        f"Next: call {call_hint(job_id)} {_when(interval, next_check_time)}. To wait instead, call get-job-result "
        f'with {{"jobId": "{job_id}", "waitSeconds": {max_wait:g}}}. Do not guess the result.'
    )


def progress_line(msg: JobStatusMessage) -> str:
    pct = f" {msg.progress:g}%" if msg.progress is not None else ""
    stage = msg.details.current_stage if msg.details and msg.details.current_stage else None
    stage_text = f" [{stage}]" if stage else ""
    return f"Job {msg.job_id} ({msg.tool_name}) is {msg.status.value}{pct}{stage_text}: {msg.message}"


def unfinished_text(msg: JobStatusMessage) -> str:
    reco = msg.polling_recommendation
    assert reco is not None
    if msg.waiting_for:
        return waiting_text(msg.job_id, msg.tool_name, msg.waiting_for)
    if msg.rate_limited:
        return (
            f"Too early: job {msg.job_id} is still {msg.status.value}. Wait and call {call_hint(msg.job_id)} "
            f"{when(reco)}; reads before then are not counted. Do not guess the result."
        )
    return f"{progress_line(msg)}. Next: call {call_hint(msg.job_id)} {when(reco)}. Do not guess the result."


def not_served_text(msg: JobStatusMessage) -> str:
    """Said of an unfinished job whose tool this server does not have (another program's, on a shared store):
    another server runs it, or will once one that has the tool runs."""
    return (
        f"This server has no tool '{msg.tool_name}': a server that has it runs this job (while none runs, the "
        "job waits for one)."
    )


def finished_text(msg: JobStatusMessage) -> str:
    if msg.status is JobStatus.COMPLETED:
        return f"Job {msg.job_id} ({msg.tool_name}) completed. Its result follows."
    if msg.status is JobStatus.CANCELLED:
        return f"Job {msg.job_id} ({msg.tool_name}) was cancelled; it has no result. {msg.message or ''}".strip()
    reason = (msg.message or "no message").removeprefix("Job failed: ")
    return f"Job {msg.job_id} ({msg.tool_name}) failed: {reason}"


def diagnostics_text(details: Any, said: Collection[str] = ()) -> str | None:
    """The job's last diagnostics as a text, without the lines the answer `said` already (a failed job's error is
    its result and its first diagnostic: it was said three times)."""
    lines = [line for line in getattr(details, "diagnostics", None) or [] if line not in said]
    return "Diagnostics:\n" + "\n".join(lines[-20:]) if lines else None


def waiting_text(job_id: str, tool_name: str, question: dict[str, Any]) -> str:
    """A job that waits for an answer: the question, and exactly how to answer or cancel it."""
    refused = f"Your last answer was refused: {question['answerRefused']}. " if question.get("answerRefused") else ""
    if question.get("notDelivered"):  # nobody saw it: the caller's client could not take the request
        refused += (
            f"Your client could not take this question ({question['notDelivered']}), so nobody was asked and it is "
            "not put to this connection again: answer-job answers it. "
        )
    return refused + _asked_text(job_id, tool_name, question)


def _asked_text(job_id: str, tool_name: str, question: dict[str, Any]) -> str:
    jid = json.dumps(job_id)
    rid = f', "requestId": {json.dumps(question["requestId"])}' if question.get("requestId") else ""
    if question.get("kind") == "sampling":
        asked = _last_text(question.get("messages") or [])
        system = f" (system prompt: {question['systemPrompt']})" if question.get("systemPrompt") else ""
        return (
            f"Job {job_id} ({tool_name}) is waiting for a model reply (sampling, at most {question.get('maxTokens')} "
            f"tokens){system}: {asked!r}. Write the reply and call answer-job with "
            f'{{"jobId": {jid}{rid}, "answer": "<the reply>"}}, or {{"jobId": {jid}{rid}, "action": "decline"}}; '
            f"or stop the job with cancel-job. Do not guess the job's result."
        )
    schema = json.dumps(question.get("requestedSchema") or {}, separators=(",", ":"))
    return (
        f"Job {job_id} ({tool_name}) is waiting for an answer: {question.get('message')!r}. Ask the user, then call "
        f'answer-job with {{"jobId": {jid}{rid}, "answer": {{...}}}} where answer matches this schema: {schema}; '
        f'or {{"jobId": {jid}{rid}, "action": "decline"}} if the user declines; or stop the job with cancel-job. '
        f"Do not answer for the user."
    )


def _last_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, dict) and content.get("type") == "text":
            return str(content.get("text"))
    return ""


MAX_TOOLS_NAMED = 50  # of a server's tools, in the refusal of an unknown one (a proxy may serve hundreds)


def unknown_tool_text(name: str, tools: list[str]) -> str:
    """The refusal of a call to a tool this server does not have: the tool most likely meant, and the tools."""
    name = shown(name)
    meant = closest(name, tools)
    hint = f" (did you mean '{meant}'?)" if meant is not None else ""
    more = f" and {len(tools) - MAX_TOOLS_NAMED} more (tools/list)" if len(tools) > MAX_TOOLS_NAMED else ""
    return f"Unknown tool: {name}{hint}. This server's tools: {', '.join(tools[:MAX_TOOLS_NAMED])}{more}"
