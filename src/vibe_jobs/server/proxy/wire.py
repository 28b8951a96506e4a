"""The stdio wire to an upstream: the SDK's process handling, with a reader of our own.

The SDK's `stdio_client` reader joins each chunk to the line so far and splits the whole again, with no
cap: a 100 MB line took 105 s and 170 MB more memory while every other call to that upstream waited. It
also drops a line that is not a JSON-RPC message, so the call that line answered waits for ever. Here:
- lines are cut as they come (linear time) and a line over `MAX_LINE_BYTES` is skipped as it streams
  (bounded memory), logged with its size;
- an answer that cannot be used (too long, or not JSON-RPC) fails the call it answers, with a message
  saying why, when its id can be read from its ends; a request of the upstream's own that cannot be used is
  answered with an Invalid Request error (the upstream would wait for ever for its answer); anything else is
  logged and dropped;
- bytes that are not UTF-8 become U+FFFD (strict decoding ended the SDK's reader at the first one);
- a line of more JSON values than `MAX_VALUES` is not parsed: it fails the call it answers, as an over-long one
  does (counted in a few passes over its bytes, only when a rough count of them is over the limit).

The process is started by `tether.spawn` (its own process group, the SDK's inherited environment, tied to the
proxy's life); stopping it (the shutdown order of the MCP specification) is the SDK's, through `server/sdk.py`.
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
from anyio.abc import ByteReceiveStream, Process
from mcp import StdioServerParameters
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from vibe_jobs.logs import get_logger
from vibe_jobs.server import sdk
from vibe_jobs.server.proxy import tether

log = get_logger("vibe_jobs.server.proxy")

MAX_LINE_BYTES = 64 * 1024 * 1024  # an upstream's message; a result is cut to max_result_bytes anyway
# the JSON values an upstream's message may hold (as many as a stored result keeps): each becomes Python objects,
# some of them pydantic models, several times over (parsed, validated, dumped): a line of 52 MB of empty text
# blocks took the proxy to 3.8 GB, 43 s of its event loop
MAX_VALUES = 1_000_000
_STRUCTURE = b'",[{'  # what is left of a line to count its values (`values_in`)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
HEAD_BYTES = 4096  # the start and the end of an over-long line, kept to find whose answer it is
INTERNAL_ERROR = -32603
INVALID_REQUEST = -32600
EXIT_POLL_SECONDS = 0.2  # how often a stdio upstream's process is looked at: has it exited?
EXIT_DRAIN_SECONDS = 1.0  # after it exited, how long its output may take to end (what it wrote is read first)
REPLIES_QUEUED = 64  # answers to the upstream's unusable requests waiting for its stdin; more are dropped
_ID = rb'(-?\d{1,15}|"[^"\\]{0,256}")'
# An over-long message's id, where the SDKs write it: first after "jsonrpc" and before "result"/"error" (an
# answer) or "method" (a request) (Python), or last, in a line that starts with "result"/"error"/"method"
# (TypeScript). The key beside the id tells an answer to one of our calls from a request of the upstream's own.
_FIRST = re.compile(rb'\A\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*' + _ID + rb'\s*,\s*"(result|error|method)"')
_START = re.compile(rb'\A\s*\{\s*"(result|error|method)"\s*:')
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

    def add(self, why: str, whose: Whose | None) -> None:
        self.count += 1
        if self.count & (self.count - 1) == 0:
            said = {} if whose is None else {"request" if whose.request else "answers": whose.id}
            log.warning("proxy.upstream_line_dropped", upstream=self.label, why=why, dropped=self.count, **said)


@dataclass(frozen=True, slots=True)
class Whose:
    """Whom an unusable line concerns: `id` of one of our calls it answers, or of a `request` of the upstream's."""

    id: types.RequestId
    request: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """What the proxy itself answers the upstream: one of its requests could not be used."""

    message: SessionMessage


def message_of(line: bytes | Overlong, drops: Drops) -> SessionMessage | Reply | None:
    """What one line from an upstream comes to: its message for the session; for a line that cannot be used,
    an error answering the call it answered, or a `Reply` to the request it made; or None (a blank line, or a
    broken one whose id cannot be read)."""
    if isinstance(line, Overlong):
        why = f"the upstream's message is {line.size:,} bytes, over the proxy's limit of {MAX_LINE_BYTES:,}"
        return _unusable(_overlong_whose(line), why, drops)
    if not line.strip():
        return None
    if (values := values_in(line)) > MAX_VALUES:
        why = too_many_values(values)
        return _unusable(_overlong_whose(Overlong(len(line), line[:HEAD_BYTES], line[-HEAD_BYTES:])), why, drops)
    text = line.decode(errors="replace")
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        why = f"the upstream's message is not JSON-RPC: {first['msg']}" + (f" (at {where})" if where else "")
        return _unusable(_whose(line), why, drops)


def too_many_values(values: int) -> str:
    return f"the upstream's message holds {values:,} JSON values or more, over the proxy's limit of {MAX_VALUES:,}"


def values_in(line: bytes, limit: int = MAX_VALUES) -> int:
    """About how many JSON values `line` holds, at most that many (its commas, `[` and `{` outside its texts); any
    number up to `limit` when a count of them inside its texts too is no more (most lines: no further pass)."""
    rough = line.count(b",") + line.count(b"[") + line.count(b"{") if len(line) > limit else 0
    if rough <= limit:
        return rough
    # escaped backslashes and quotes out, every quote left opens or closes a text; of the structure left, two
    # quotes side by side close a text and open the next (or hold an empty one): the characters between the
    # quotes still left alternate out and in a text
    plain = line.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = plain.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    return len(b"".join(structure.split(b'"')[::2]))


def whose_message(message: bytes) -> Whose | None:
    """Whom one whole message concerns: read from its ends where the SDKs write its id (linear), else parsed."""
    found = _overlong_whose(Overlong(len(message), message[:HEAD_BYTES], message[-HEAD_BYTES:]))
    return found if found is not None else _whose(message)


def _overlong_whose(line: Overlong) -> Whose | None:
    """Whom an over-long line concerns, when its ends show its id and its kind (`_FIRST`, `_START`, `_ID_LAST`)."""
    if (found := _FIRST.match(line.head)) is not None:
        return Whose(_id(found[1]), found[2] == b"method")
    if (start := _START.match(line.head)) is not None and (last := _ID_LAST.search(line.tail)) is not None:
        return Whose(_id(last[1]), start[1] == b"method")
    return None


def _whose(line: bytes) -> Whose | None:
    """Whom a line that is not a JSON-RPC message concerns: an object with an id a request can have (an integer
    or a string) and a "method" (a request of the upstream's) or a "result" or an "error" (an answer of ours)."""
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        return _overlong_whose(Overlong(len(line), line[:HEAD_BYTES], line[-HEAD_BYTES:]))
    if not isinstance(parsed, dict):
        return None
    found = parsed.get("id")
    if not isinstance(found, str | int) or isinstance(found, bool):
        return None
    if "method" in parsed:
        return Whose(found, request=True)
    return Whose(found, request=False) if "result" in parsed or "error" in parsed else None


def _unusable(whose: Whose | None, why: str, drops: Drops) -> SessionMessage | Reply | None:
    drops.add(why, whose)
    if whose is None:
        return None
    if whose.request:
        error = types.ErrorData(code=INVALID_REQUEST, message=f"the proxy could not use this request: {why}")
        return Reply(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=whose.id, error=error)))
    error = types.ErrorData(code=INTERNAL_ERROR, message=f"{why} (upstream {drops.label})")
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=whose.id, error=error))


def _id(raw: bytes) -> types.RequestId:
    return raw[1:-1].decode(errors="replace") if raw.startswith(b'"') else int(raw)


@asynccontextmanager
async def stdio_upstream(
    params: StdioServerParameters, label: str, errlog: TextIO = sys.stderr
) -> AsyncIterator[tuple[Any, Any]]:
    """Run the upstream of `params` and yield its (read, write) streams, as `mcp.stdio_client` does."""
    process = await tether.spawn(params, errlog)
    read_send, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    # our answers to the upstream's unusable requests: queued, not awaited, so that the reader never waits on
    # the upstream's stdin (an upstream blocked writing to its stdout would never read it)
    reply_send, reply_receive = anyio.create_memory_object_stream[SessionMessage](REPLIES_QUEUED)
    stdin_lock = anyio.Lock()
    read_done = anyio.Event()

    async def reader() -> None:
        assert process.stdout is not None
        drops = Drops(label)
        async with read_send, reply_send:
            try:
                async for line in lines(process.stdout):
                    message = message_of(line, drops)
                    if isinstance(message, Reply):
                        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                            reply_send.send_nowait(message.message)
                    elif message is not None:
                        await read_send.send(message)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass  # our shutdown closed the pipe or the session's stream
        read_done.set()
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for _ in process.stdout:  # drained: an upstream blocked on a full pipe could not exit when asked
                pass

    async def send(item: SessionMessage) -> None:
        assert process.stdin is not None
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        async with stdin_lock:
            await process.stdin.send(data.encode(errors="replace") + b"\n")

    async def writer() -> None:
        try:
            async with write_receive:
                async for item in write_receive:
                    await send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the upstream stopped reading: the session sees the end, no call hangs

    async def replier() -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async with reply_receive:
                async for item in reply_receive:
                    await send(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        tg.start_soon(replier)
        tg.start_soon(_end_with_process, process, read_done, label)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):  # the process is stopped whatever cancels us
                read_stream.close()
                write_stream.close()
                await sdk.stop_stdio_server(process)
                tether.release(process)
            tg.cancel_scope.cancel()


async def _end_with_process(process: Process, read_done: anyio.Event, label: str) -> None:
    """End the upstream's output when its process has exited, even if a process it left behind holds the pipe.

    Its output normally ends with it. A child it left in its process group that inherited its stdout keeps the
    pipe open: the session would never see the end, and a call in flight would wait for ever. What the upstream
    wrote before it exited is read first (EXIT_DRAIN_SECONDS); then, while its group has members, they are
    killed (nothing of it may speak for it any more), and the output ends with them. A process that holds the
    pipe from outside the group left it on purpose (a wrapper that forks the server into a session of its own,
    as `setsid` does, and exits): that is the server, and it is read on."""
    while process.returncode is None:  # noqa: ASYNC110 (asyncio's `wait()` also waits for the pipes to close)
        await anyio.sleep(EXIT_POLL_SECONDS)
    with anyio.move_on_after(EXIT_DRAIN_SECONDS):
        await read_done.wait()
    if read_done.is_set() or not tether.group_alive(process):
        return
    log.warning("proxy.upstream_output_held", upstream=label, pid=process.pid, returncode=process.returncode)
    tether.kill_group(process)
