"""The stdio wire to an upstream: the SDK's process handling, with a reader of our own.

The SDK's `stdio_client` reader joins each chunk to the line so far and splits the whole again, with no
cap: a 100 MB line took 105 s and 170 MB more memory while every other call to that upstream waited. It
also drops a line that is not a JSON-RPC message, so the call that line answered waits for ever. Here:
- lines are cut as they come (linear time) and a line over `MAX_LINE_BYTES` is skipped as it streams
  (bounded memory), logged with its size;
- an answer that cannot be used (too long, or not JSON-RPC) fails the call it answers, with a message
  saying why, when its id can be read from its start; anything else is logged and dropped;
- bytes that are not UTF-8 become U+FFFD (strict decoding ended the SDK's reader at the first one).

Starting and stopping the process (its own process group, the inherited environment, the shutdown order
of the MCP specification) is the SDK's, through `server/sdk.py`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import anyio
import mcp_types as types
from anyio.abc import ByteReceiveStream
from mcp import StdioServerParameters
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from vibe_jobs.logs import get_logger
from vibe_jobs.server import sdk

log = get_logger("vibe_jobs.server.proxy")

MAX_LINE_BYTES = 64 * 1024 * 1024  # an upstream's message; a result is cut to max_result_bytes anyway
HEAD_BYTES = 4096  # the start and the end of an over-long line, kept to find whose answer it is
INTERNAL_ERROR = -32603
_ID = rb'(-?\d{1,15}|"[^"\\]{0,256}")'
# An over-long answer's id, where the SDKs write it: first after "jsonrpc" and before "result"/"error" (Python),
# or last, in a line that starts with "result"/"error" (TypeScript). Either way the line is an answer, so the id
# is one of our calls', never that of a request of the upstream's own (which has a "method").
_ID_FIRST = re.compile(rb'\A\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*' + _ID + rb'\s*,\s*"(?:result|error)"')
_ANSWER_START = re.compile(rb'\A\s*\{\s*"(?:result|error)"\s*:')
_ID_LAST = re.compile(rb'"id"\s*:\s*' + _ID + rb"\s*\}\s*\Z")


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than the limit: its size, its first bytes and its last ones."""

    size: int
    head: bytes
    tail: bytes = b""


async def lines(stream: ByteReceiveStream, limit: int = MAX_LINE_BYTES) -> AsyncIterator[bytes | Overlong]:
    """The lines of `stream` without their newline; one over `limit` bytes as an `Overlong`, never held whole."""
    buffer = bytearray()
    skipped: int | None = None  # bytes of the over-long line being skipped
    head = tail = b""
    async for chunk in stream:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            piece = chunk[start:end]
            start = end + 1
            if skipped is not None:
                yield Overlong(skipped + len(piece), _head(head, piece), _tail(tail, piece))
                skipped = None
            elif len(buffer) + len(piece) > limit:
                yield Overlong(len(buffer) + len(piece), _head(buffer, piece), _tail(buffer, piece))
                buffer.clear()
            elif buffer:
                buffer += piece
                yield bytes(buffer)
                buffer.clear()
            else:
                yield piece  # the whole line came in this chunk: no copy
        rest = chunk[start:]
        if skipped is not None:
            skipped, head, tail = skipped + len(rest), _head(head, rest), _tail(tail, rest)
        elif len(buffer) + len(rest) > limit:
            head, tail, skipped = _head(buffer, rest), _tail(buffer, rest), len(buffer) + len(rest)
            buffer.clear()
        else:
            buffer += rest


def _head(start: bytes | bytearray, more: bytes) -> bytes:
    """The first HEAD_BYTES of `start` followed by `more`."""
    if len(start) >= HEAD_BYTES:
        return bytes(start[:HEAD_BYTES])
    return bytes(start) + more[: HEAD_BYTES - len(start)]


def _tail(before: bytes | bytearray, more: bytes) -> bytes:
    """The last HEAD_BYTES of `before` followed by `more`."""
    if len(more) >= HEAD_BYTES:
        return bytes(more[-HEAD_BYTES:])
    return (bytes(before[-HEAD_BYTES:]) + more)[-HEAD_BYTES:]


class Drops:
    """The lines of one upstream that could not be used, logged as they double (the 1st, 2nd, 4th, 8th...):
    an upstream that writes a million broken lines gets 20 log lines, not a million."""

    def __init__(self, label: str) -> None:
        self.label, self.count = label, 0

    def add(self, why: str, answers: types.RequestId | None) -> None:
        self.count += 1
        if self.count & (self.count - 1) == 0:
            log.warning(
                "proxy.upstream_line_dropped", upstream=self.label, why=why, answers=answers, dropped=self.count
            )


def message_of(line: bytes | Overlong, drops: Drops) -> SessionMessage | None:
    """What the session gets for one line from an upstream: its message, an error answering the call a line
    that cannot be used answered, or None (a blank line, or a broken one that answers nothing)."""
    if isinstance(line, Overlong):
        why = f"the upstream's message is {line.size:,} bytes, over the proxy's limit of {MAX_LINE_BYTES:,}"
        return _failed_answer(_overlong_id(line), why, drops)
    if not line.strip():
        return None
    text = line.decode(errors="replace")
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        why = f"the upstream's message is not JSON-RPC: {first['msg']}" + (f" (at {where})" if where else "")
        return _failed_answer(_answer_id(line), why, drops)


def _overlong_id(line: Overlong) -> types.RequestId | None:
    """The id of the call an over-long line answers, when its ends show one (`_ID_FIRST`, `_ID_LAST`)."""
    if (found := _ID_FIRST.match(line.head)) is None and _ANSWER_START.match(line.head):
        found = _ID_LAST.search(line.tail)
    return None if found is None else _id(found[1])


def _answer_id(line: bytes) -> types.RequestId | None:
    """The id of the call a line that is not a JSON-RPC message answers: an object with a "result" or an
    "error", no "method", and an id a call of ours can have (an integer or a string)."""
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        return _overlong_id(Overlong(len(line), line[:HEAD_BYTES], line[-HEAD_BYTES:]))
    if not isinstance(parsed, dict) or "method" in parsed or not ("result" in parsed or "error" in parsed):
        return None
    found = parsed.get("id")
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None


def _failed_answer(request_id: types.RequestId | None, why: str, drops: Drops) -> SessionMessage | None:
    drops.add(why, request_id)
    if request_id is None:
        return None
    error = types.ErrorData(code=INTERNAL_ERROR, message=f"{why} (upstream {drops.label})")
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _id(raw: bytes) -> types.RequestId:
    return raw[1:-1].decode(errors="replace") if raw.startswith(b'"') else int(raw)


@asynccontextmanager
async def stdio_upstream(
    params: StdioServerParameters, label: str, errlog: TextIO = sys.stderr
) -> AsyncIterator[tuple[Any, Any]]:
    """Run the upstream of `params` and yield its (read, write) streams, as `mcp.stdio_client` does."""
    process = await sdk.spawn_stdio_server(params, errlog)
    read_send, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_receive = anyio.create_memory_object_stream[SessionMessage](0)

    async def reader() -> None:
        assert process.stdout is not None
        drops = Drops(label)
        async with read_send:
            try:
                async for line in lines(process.stdout):
                    message = message_of(line, drops)
                    if message is not None:
                        await read_send.send(message)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass  # our shutdown closed the pipe or the session's stream
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for _ in process.stdout:  # drained: an upstream blocked on a full pipe could not exit when asked
                pass

    async def writer() -> None:
        assert process.stdin is not None
        try:
            async with write_receive:
                async for item in write_receive:
                    data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send(data.encode(errors="replace") + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the upstream stopped reading: the session sees the end, no call hangs

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):  # the process is stopped whatever cancels us
                read_stream.close()
                write_stream.close()
                await sdk.stop_stdio_server(process)
            tg.cancel_scope.cancel()
