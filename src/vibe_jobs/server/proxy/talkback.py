"""Requests an upstream sends back during a job: elicitation and sampling.

`answer_upstream_request` is the one place they are answered. The upstream's request carries nothing that ties it
to one of the proxy's calls (over stdio a server-to-client request has no related request id; the SDK's client
callback gets only the upstream's own request id), so the job is found by elimination: when exactly one job is
calling that upstream, the request is that job's and is asked of its client (`JobContext.elicit` /
`JobContext.sample`: the job waits with `waitingFor` set until the client answers); the answer goes back upstream.
A call that is no job's (a direct tool, a passthrough request) counts too (`Upstream.sole_job`): the request may
be its caller's, perhaps another principal's. With no job, several calls in flight on that upstream, or a request
the job cannot ask (a URL-mode elicitation, a schema that is not flat, a question too large), it is declined, and
each job running on that upstream gets a diagnostic saying why (not what was asked).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from mcp_types import (
    INVALID_REQUEST,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestFormParams,
    ElicitResult,
    ErrorData,
    TextContent,
)

from vibe_jobs.context import JobContext
from vibe_jobs.errors import InvalidParams, JobError
from vibe_jobs.logs import get_logger
from vibe_jobs.questions import fitting_defaults

log = get_logger("vibe_jobs.server.proxy")

Kind = Literal["elicitation", "sampling"]
Answer = ElicitResult | CreateMessageResult | ErrorData


def declined_text(kind: Kind, upstream: str, why: str) -> str:
    return (
        f"upstream '{upstream}' sent {'an' if kind == 'elicitation' else 'a'} {kind} request during this job; "
        f"it was declined: {why}"
    )


class Declines:
    """How many of one upstream's requests were declined; logged as they double (the 1st, 2nd, 4th...): each was a
    warning line, and an upstream asking a million wrote a million (review helper-150)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self) -> bool:
        """Count one; whether to log it."""
        self.count += 1
        return self.count & (self.count - 1) == 0


async def answer_upstream_request(
    kind: Kind, upstream: str, params: Any, jobs: Iterable[JobContext], sole: JobContext | None, declines: Declines
) -> Answer:
    """The answer to an upstream's `elicitation/create` or `sampling/createMessage` made while `jobs` ran; `sole`:
    the job whose call was the only one in flight (`Upstream.sole_job`), the only one it can be asked of;
    `declines`: that upstream's."""
    running = list(jobs)
    if sole is None:
        why = (
            "no job is calling that upstream"
            if not running
            else f"{len(running)} jobs are calling that upstream"
            if len(running) > 1
            else "a call that is not a job is in flight on that upstream too"
        )
        return _decline(kind, upstream, running, f"{why}, so the proxy cannot tell whose request it is", declines)
    ctx = sole
    try:
        if kind == "elicitation":
            return await _elicit(ctx, params)
        return await _sample(ctx, params)
    except InvalidParams as exc:
        return _decline(kind, upstream, running, str(exc), declines)
    except JobError as exc:  # the job ended (its call answered) or moved on while its question was open
        return _withdrawn(kind, upstream, exc)


async def _elicit(ctx: JobContext, params: Any) -> ElicitResult:
    if not isinstance(params, ElicitRequestFormParams):
        raise InvalidParams("only form elicitations can be passed to the client (this one asks to open a URL)")
    answer = await ctx.elicit(params.message, fitting_defaults(params.requested_schema))
    if answer.action == "accept":
        return ElicitResult(action="accept", content=answer.content)
    return ElicitResult(action="cancel" if answer.action in ("cancel", "timeout") else "decline")


async def _sample(ctx: JobContext, params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
    messages = [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in params.messages]
    prefs = params.model_preferences
    answer = await ctx.sample(
        messages,
        max_tokens=params.max_tokens,
        system=params.system_prompt,
        temperature=params.temperature,
        stop_sequences=params.stop_sequences,
        model_preferences=prefs.model_dump(mode="json", by_alias=True, exclude_none=True) if prefs else None,
    )
    if answer.action != "accept":
        said = "nobody answered in time" if answer.action == "timeout" else f"the client answered {answer.action}"
        return ErrorData(code=INVALID_REQUEST, message=f"sampling request not answered: {said}")
    result = dict(answer.result or {})
    if not isinstance(result.get("content"), dict):  # none, or several blocks: the text the job read
        result["content"] = TextContent(type="text", text=answer.text or "").model_dump()
    result.update(role="assistant", model=answer.model or result.get("model") or "unknown")
    return CreateMessageResult.model_validate(result)


def _withdrawn(kind: Kind, upstream: str, exc: JobError) -> ElicitResult | ErrorData:
    """The answer to a question its job can no longer take: an upstream that answered the call that asked it, its
    question still open, ended the job. The handler raised, logged as an error with a traceback, and the upstream
    got the proxy's job and question ids (review helper-150). It is cancelled, as a question nobody answered."""
    log.info("proxy.upstream_request_withdrawn", upstream=upstream, kind=kind, reason=str(exc))
    if kind == "elicitation":
        return ElicitResult(action="cancel")
    return ErrorData(code=INVALID_REQUEST, message="sampling request not answered: its job ended first")


def _decline(
    kind: Kind, upstream: str, jobs: list[JobContext], why: str, declines: Declines
) -> ElicitResult | ErrorData:
    text = declined_text(kind, upstream, why)
    for ctx in jobs:
        ctx.diagnostic(text)
    if declines.add():
        log.warning(
            "proxy.upstream_request_declined", upstream=upstream, kind=kind, reason=why, declined=declines.count
        )
    if kind == "elicitation":
        return ElicitResult(action="decline")
    return ErrorData(code=INVALID_REQUEST, message=text)
