"""The HTTP wire to an upstream: its answers held to the size the stdio wire allows one message.

The SDK's streamable HTTP client reads a JSON answer whole (`response.aread()`): a 300 MB answer took the proxy
to 1.2 GB, and a larger one would end it, every job with it. Server-sent events are read an event at a time,
each within the SDK's own limit; any other body is cut at `MAX_LINE_BYTES` as it streams (at once when its
`Content-Length` says so), and the call it answers fails with the reason (the SDK turns a `StreamError` while
reading an answer into that call's error). A compressed body is held to the limit as decoded (gzip, deflate: the
encodings the proxy asks for): on the wire a 65 MiB answer of one letter is 65 KiB.

A JSON answer to a POST of more JSON values than a stdio line may hold fails that POST's request, unparsed (each
value became Python objects several times over: 10 MB of empty text blocks took the proxy to 800 MB).

A POST's JSON body at a success status answers that POST's request. One that answers under another id was passed on
as it was: no call took it, and the request waited for its time-out (the SDK gives an answer on an event stream the
request's id). Here it fails that request, naming both ids: the upstream is at fault, and its answer may be another
call's. An error under the id null (its server could not read the request's id) is given the request's id, reason
kept. An error status's body is left to the SDK, which gives its JSON-RPC error the request's id itself; but a 404 to
a request in a session says that session is gone (the spec), whatever error its body holds.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx2
from mcp.client.streamable_http import MCP_SESSION_ID
from mcp.shared.dispatcher import coerce_request_id
from mcp_types import INTERNAL_ERROR, RequestId

from vibe_jobs.server.proxy.wire import MAX_LINE_BYTES, MAX_VALUES, too_many_values, values_in, whose_message


class AnswerTooLarge(httpx2.StreamError):
    """An upstream's HTTP answer over the proxy's limit."""


class AnswerUndecodable(httpx2.StreamError):
    """An upstream's HTTP answer encoded otherwise than the proxy asked, or not as it says (the call fails)."""


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


ACCEPT_ENCODING = "gzip, deflate"  # what the proxy decodes itself, within the limit (`_Inflated`)
_INFLATE = zlib.MAX_WBITS | 32  # a gzip or zlib header, told apart by zlib


class _Inflated(httpx2.AsyncByteStream):
    """A gzip or deflate body, decoded here a bounded piece at a time and held to `limit` bytes as decoded (the
    response no longer says it is encoded: httpx2 would decode it again, whole, past any limit)."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int, layers: int) -> None:
        self.inner, self.limit, self.layers = inner, limit, layers

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces: AsyncIterator[bytes] = self.inner.__aiter__()
        for _ in range(self.layers):
            pieces = self._inflate(pieces)
        seen = 0
        async for piece in pieces:
            seen += len(piece)
            if seen > self.limit:
                raise AnswerTooLarge(too_large(f"over {self.limit:,} (decoded)", self.limit))
            yield piece

    async def _inflate(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        inflater, step = zlib.decompressobj(_INFLATE), 2**20
        try:
            async for chunk in pieces:
                while chunk and not inflater.eof:
                    yield inflater.decompress(chunk, step)  # at most `step` bytes of output at a time
                    chunk = inflater.unconsumed_tail
        except zlib.error as exc:
            raise AnswerUndecodable(f"the upstream's answer cannot be decoded: {exc}") from None
        if not inflater.eof:
            raise AnswerUndecodable("the upstream's answer ends within its compressed data")

    async def aclose(self) -> None:
        await self.inner.aclose()


def too_large(size: str, limit: int) -> str:
    return f"the upstream's answer is {size} bytes, over the proxy's limit of {limit:,}"


def capping(limit: int = MAX_LINE_BYTES) -> dict[str, list[Callable[[httpx2.Response], Awaitable[None]]]]:
    """`event_hooks` for an `httpx2.AsyncClient`: every answer but an event stream held to `limit` bytes. The
    hook only wraps the body: the SDK reads it where it turns a `StreamError` into the error of the call."""

    async def cap(response: httpx2.Response) -> None:
        if response.status_code == 404 and MCP_SESSION_ID in response.request.headers:
            # the session is gone (a restarted server): the SDK says "Session terminated", the loss the upstream
            # connects again after, only when the body is no JSON-RPC error; the Python and TypeScript SDKs' servers
            # send one ("Session not found"), which was passed on as the call's error, and every later call failed
            response.headers.pop("content-type", None)
        if response.headers.get("content-type", "").lower().startswith("text/event-stream"):
            return  # read an event at a time, each within the SDK's `max_sse_event_size`
        declared = response.headers.get("content-length", "")
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        stream: httpx2.AsyncByteStream = _Capped(response.stream, limit, int(declared) if declared.isdigit() else None)
        codings = [c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True)]
        codings = [c for c in codings if c != "identity"]
        if codings:  # decoded here, within the limit (httpx2 would decode it whole)
            if not set(codings) <= {"gzip", "x-gzip", "deflate"}:
                why = f"the upstream's answer is encoded {', '.join(codings)}, not as the proxy asked"
                stream = _Refused(stream, why)
            else:
                stream = _Inflated(stream, limit, len(codings))
            del response.headers["content-encoding"]
        # an error status's JSON-RPC error is the SDK's to give the request's id (servers write one under id null or
        # "server-error", the Python SDK 1.x's): only a success's answer is held to the POST's id
        asked = _request_id(response.request) if response.is_success else None
        if asked is not None and response.headers.get("content-type", "").lower().startswith("application/json"):
            stream = _Addressed(stream, asked)
        response.stream = stream

    return {"response": [cap]}


class _Refused(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, why: str) -> None:
        self.inner, self.why = inner, why

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AnswerUndecodable(self.why)
        yield b""  # (a generator)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _request_id(request: httpx2.Request) -> RequestId | None:
    """The id of the JSON-RPC request a POST carries (None: a notification, an answer, no body read)."""
    if request.method != "POST":
        return None
    try:
        found = whose_message(request.content)
    except httpx2.RequestNotRead:
        return None
    return found.id if found is not None and found.request else None


class _Addressed(httpx2.AsyncByteStream):
    """The JSON answer to the request `asked`: under another id, an error answering `asked` instead (module doc)."""

    def __init__(self, inner: httpx2.AsyncByteStream, asked: RequestId) -> None:
        self.inner, self.asked = inner, asked

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = b"".join([chunk async for chunk in self.inner])  # held to the limit by the streams within
        if (values := values_in(body)) > MAX_VALUES:  # as a stdio line is held, before anything parses it
            yield self._answer({"code": INTERNAL_ERROR, "message": too_many_values(values)})
            return
        said = whose_message(body)
        if said is None:  # an error under the id null is this request's, as the SDK has it at an error status
            error = _error_without_id(body)  # anything else is no JSON-RPC answer: the SDK refuses it itself
            yield body if error is None else self._answer(error)
        elif said.request or coerce_request_id(said.id) == coerce_request_id(self.asked):
            yield body  # its own answer, or a request of the upstream's
        else:
            why = f"the upstream answered this request under another id ({said.id!r})"
            yield self._answer({"code": INTERNAL_ERROR, "message": why})

    def _answer(self, error: Mapping[str, Any]) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": self.asked, "error": error}).encode()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _error_without_id(body: bytes) -> dict[str, Any] | None:
    """The error of a JSON-RPC error message under the id null (a server that could not read the request's id)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or "id" not in message or message["id"] is not None:
        return None
    error = message.get("error")
    return error if isinstance(error, dict) and "result" not in message else None
