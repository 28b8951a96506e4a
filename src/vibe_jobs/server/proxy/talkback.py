"""Requests an upstream sends back during a job: elicitation and sampling.

`answer_upstream_request` is the one place they are answered. Until the talk-back paths land
(`JobContext.elicit` / `JobContext.sample`), they are declined, and each job that was running on that upstream
gets a diagnostic saying so. Routing them to the client later changes this function only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from mcp_types import INVALID_REQUEST, ElicitResult, ErrorData

from vibe_jobs.context import JobContext
from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.server.proxy")

Kind = Literal["elicitation", "sampling"]


def declined_text(kind: Kind, upstream: str) -> str:
    return (
        f"upstream '{upstream}' sent {'an' if kind == 'elicitation' else 'a'} {kind} request during this job; "
        f"the proxy does not pass {kind} requests to the client yet, so it was declined"
    )


async def answer_upstream_request(
    kind: Kind, upstream: str, params: Any, jobs: Iterable[JobContext]
) -> ElicitResult | ErrorData:
    """The answer to an upstream's `elicitation/create` or `sampling/createMessage` made while `jobs` ran."""
    text = declined_text(kind, upstream)
    for ctx in jobs:
        ctx.diagnostic(text)
    log.warning("proxy.upstream_request_declined", upstream=upstream, kind=kind)
    if kind == "elicitation":
        return ElicitResult(action="decline")
    return ErrorData(code=INVALID_REQUEST, message=text)
