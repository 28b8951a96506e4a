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
