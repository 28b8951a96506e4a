"""The HTTP wire to an upstream: its answers held to the size the stdio wire allows one message.

The SDK's streamable HTTP client reads a JSON answer whole (`response.aread()`): a 300 MB answer took the proxy
to 1.2 GB, and a larger one would end it, every job with it. Server-sent events are read an event at a time,
each within the SDK's own limit; any other body is cut at `MAX_LINE_BYTES` as it streams (at once when its
`Content-Length` says so), and the call it answers fails with the reason (the SDK turns a `StreamError` while
reading an answer into that call's error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2

from vibe_jobs.server.proxy.wire import MAX_LINE_BYTES


class AnswerTooLarge(httpx2.StreamError):
    """An upstream's HTTP answer over the proxy's limit."""


class _Capped(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int, declared: int | None) -> None:
        self.inner, self.limit, self.declared = inner, limit, declared

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.declared is not None and self.declared > self.limit:  # refused unread
            raise AnswerTooLarge(too_large(f"{self.declared:,}", self.limit))
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise AnswerTooLarge(too_large(f"over {self.limit:,}", self.limit))
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def too_large(size: str, limit: int) -> str:
    return f"the upstream's answer is {size} bytes, over the proxy's limit of {limit:,}"


def capping(limit: int = MAX_LINE_BYTES) -> dict[str, list[Callable[[httpx2.Response], Awaitable[None]]]]:
    """`event_hooks` for an `httpx2.AsyncClient`: every answer but an event stream held to `limit` bytes. The
    hook only wraps the body: the SDK reads it where it turns a `StreamError` into the error of the call."""

    async def cap(response: httpx2.Response) -> None:
        if response.headers.get("content-type", "").lower().startswith("text/event-stream"):
            return  # read an event at a time, each within the SDK's `max_sse_event_size`
        declared = response.headers.get("content-length", "")
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _Capped(response.stream, limit, int(declared) if declared.isdigit() else None)

    return {"response": [cap]}
