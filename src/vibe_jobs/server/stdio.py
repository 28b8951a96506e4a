"""The stdio transport: MCP over the process's stdin and stdout, hardened against what a client may send.

Replaces the SDK's `stdio_server` for three reasons:
- a frame that is not a JSON-RPC message (invalid JSON or UTF-8, nesting too deep, a 5000-digit number,
  a lone surrogate) is answered with a JSON-RPC error (its id when one can be read, else null), as the
  HTTP transports answer it; the SDK's stdio drops it, and the client waits forever;
- an answer that cannot be encoded (a lone surrogate in a result) fails its own request with a clear
  error; in the SDK's writer it raises and ends the server;
- stdin is read, and stdout written, by daemon threads, so a signal stops the server at once: not at the
  next input line, nor never when the client stops reading (a write blocked on a full pipe held the exit).

The session ends at EOF, or when the process that started the server exits while another holds stdin open (no
EOF comes then: the server ran on for ever after its client crashed).

While serving, fd 0 reads the null device and fd 1 writes to stderr (children and stray prints miss the
wire); the wire is served from private duplicates of both. fd 1 stays on stderr once serving ends: jobs
cancelled at shutdown may still print, and a client reading stdout must see nothing but the protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import asynccontextmanager, contextmanager
from typing import Any, BinaryIO

import anyio
import mcp_types as types
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.from_thread import BlockingPortal
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from vibe_jobs.logs import get_logger
from vibe_jobs.results import encodable
from vibe_jobs.server.http.requestids import wrong_request_id

log = get_logger("vibe_jobs.server.stdio")

PARSE_ERROR, INVALID_REQUEST, INTERNAL_ERROR = -32700, -32600, -32603
MIN_FRAME_BYTES = 4 * 1024 * 1024  # a frame longer than this (or twice the params limit) is refused unread
_ID_SCAN_BYTES = 64 * 1024
WRITE_QUEUE, WRITE_WAIT = 64, 0.01  # lines waiting for a client that reads slowly; how often a full queue is tried
DRAIN_SECONDS = 1.0  # at the end, how long what was answered may take to reach the client
EOF_GRACE_SECONDS = 2.0  # at EOF, how long the requests read may take to be answered before the session ends
PARENT_CHECK_SECONDS = 1.0  # how often the server looks whether the process that started it is gone
# The top-level "id" of an object, looked for before any nested object or array (linear: the alternatives
# start with different characters).
_TOP_ID = re.compile(rb'\A\s*\{(?:[^{}\[\]"]|"(?:[^"\\]|\\.)*")*?"id"\s*:\s*(-?\d{1,15}|"(?:[^"\\]|\\.){0,256}")')


def frame_limit(max_params_bytes: int) -> int:
    return max(MIN_FRAME_BYTES, 2 * max_params_bytes)


# -- reading ---------------------------------------------------------------------------------------


def parse_frame(line: bytes) -> SessionMessage | types.JSONRPCError | None:
    """The message of one stdin line; else the error that answers it; None for a blank line or a broken
    notification (which has nobody to answer)."""
    if not line.strip():
        return None
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as exc:
        return _refusal(line, exc)
    if isinstance(message, types.JSONRPCNotification) and wrong_request_id(_loads(line)):
        # a request whose id the SDK's model left out (null, a float, a bool...): refused, not run unanswered
        return error_answer(None, INVALID_REQUEST, "Invalid Request: the id must be a string or an integer")
    return SessionMessage(message)


def _refusal(line: bytes, exc: ValidationError) -> types.JSONRPCError | None:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return error_answer(_frame_id(line), PARSE_ERROR, f"Parse error: {first['msg']}")
    parsed = _loads(line)
    if isinstance(parsed, dict) and "method" in parsed and "id" not in parsed:
        log.warning("stdio.bad_notification", error=_one_line(exc))
        return None
    where = ".".join(str(part) for part in first["loc"])
    reason = f"{first['msg']}" + (f" (at {where})" if where else "")
    return error_answer(_frame_id(line), INVALID_REQUEST, f"Invalid Request: not a JSON-RPC 2.0 message: {reason}")


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _frame_id(line: bytes) -> types.RequestId | None:
    """The request id of a frame, when it can be read (a string or an integer at the top level)."""
    parsed = _loads(line)
    if isinstance(parsed, dict):
        return _answerable(parsed.get("id"))
    match = _TOP_ID.match(line[:_ID_SCAN_BYTES])
    return None if match is None else _answerable(_loads(match[1]))


def _answerable(value: Any) -> types.RequestId | None:
    """`value` as the id of an answer, or None: an integer, or a string an answer can carry (json reads a
    lone surrogate, `"\\ud800"`, that no answer can be written with)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and encodable(value):
        return value
    return None


def error_answer(request_id: types.RequestId | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message[:1000]))


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def read_lines(wire: BinaryIO, limit: int) -> Iterator[bytes | tuple[int, bytes]]:
    """The lines of `wire`; a line longer than `limit` is skipped unparsed and yields its length and its
    first bytes instead (where a request's id is looked for, to answer it)."""
    while line := wire.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        size, head = len(line), line[:_ID_SCAN_BYTES]
        del line
        while (rest := wire.readline(limit)) and not rest.endswith(b"\n"):
            size += len(rest)
        yield size + len(rest), head


# -- writing ---------------------------------------------------------------------------------------


def encode_message(message: types.JSONRPCMessage) -> bytes | None:
    """One wire line for `message`. A response that cannot be encoded becomes an error answering its
    request; any other message that cannot be encoded is dropped (None) and logged."""
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    except (ValueError, TypeError) as exc:  # pydantic's serialisation errors are ValueErrors
        reason = _one_line(exc)
    request_id = getattr(message, "id", None)
    if not isinstance(message, types.JSONRPCResponse | types.JSONRPCError) or request_id is None:
        log.error("stdio.unencodable_message", error=reason)
        return None
    log.error("stdio.unencodable_answer", request_id=request_id, error=reason)
    text = f"The answer to this request could not be encoded as JSON ({reason}); nothing else is affected."
    return (
        error_answer(_answerable(request_id), INTERNAL_ERROR, text)
        .model_dump_json(by_alias=True, exclude_none=True)
        .encode()
        + b"\n"
    )


# -- the transport ---------------------------------------------------------------------------------


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """fd 1 pointed at stderr for the block: what runs before the wire is claimed (tool modules imported,
    the server built) may print, and on stdio only the protocol may reach stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def claim_wire() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Private duplicates of fd 0 and 1 (the wire), with fd 0 pointed at the null device and fd 1 at stderr."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield os.fdopen(wire_in, "rb", closefd=False), os.fdopen(wire_out, "wb", closefd=False)
    finally:
        os.dup2(wire_in, 0)
        # fd 1 stays on stderr (module docstring); wire_in stays open: the reader thread may still block on it
        # until the process exits, as the writer thread may on wire_out


@asynccontextmanager
async def stdio_streams(
    max_frame_bytes: int, on_eof: Callable[[], None] | None = None
) -> AsyncIterator[tuple[ObjectReceiveStream[SessionMessage | Exception], ObjectSendStream[SessionMessage]]]:
    """The (read, write) streams of a server session over stdio, until the block ends or stdin closes
    (`on_eof()` is called then, on the event loop: the client has begun the server's stop)."""
    read_send, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    with claim_wire() as (wire_in, wire_out):
        writer = WireWriter(wire_out)
        try:
            async with BlockingPortal() as portal, anyio.create_task_group() as tg:
                answers = write_stream.clone()
                inflight = InFlight(on_eof)
                reader = threading.Thread(
                    target=_read_wire,
                    args=(wire_in, max_frame_bytes, portal, read_send, answers, inflight),
                    name="vibe-jobs-stdin",
                    daemon=True,
                )
                reader.start()
                tg.start_soon(_write_wire, writer, write_receive, inflight)
                tg.start_soon(_until_parent_gone, os.getppid(), inflight, read_send)
                try:
                    yield read_stream, write_stream
                finally:
                    tg.cancel_scope.cancel()
                    answers.close()  # the reader thread's clone (its sends after this end it quietly: `_read_wire`)
        finally:
            with anyio.CancelScope(shield=True):
                await writer.drain(DRAIN_SECONDS)


def _read_wire(
    wire: BinaryIO,
    limit: int,
    portal: BlockingPortal,
    messages: ObjectSendStream[SessionMessage | Exception],
    answers: ObjectSendStream[SessionMessage],
    inflight: InFlight,
) -> None:
    """The reader thread: each line to the session, or its error answer to the writer; EOF closes the session
    once the requests read are answered (EOF_GRACE_SECONDS at most)."""
    try:
        for line in read_lines(wire, limit):
            if isinstance(line, tuple):
                size, head = line
                text = f"Invalid Request: the frame is {size:,} bytes, over the limit of {limit:,} bytes"
                portal.call(answers.send, SessionMessage(error_answer(_frame_id(head), INVALID_REQUEST, text)))
                continue
            item = parse_frame(line)
            if isinstance(item, SessionMessage):
                portal.call(inflight.deliver, messages, item)
            elif item is not None:
                log.warning("stdio.bad_frame", error=item.error.message[:200])
                portal.call(answers.send, SessionMessage(item))
        portal.call(inflight.at_eof, EOF_GRACE_SECONDS)
        portal.call(messages.aclose)
    except (RuntimeError, CancelledError, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        pass  # the server is stopping (the portal or the streams are closed, or a signal cancelled the wait at EOF)


async def _until_parent_gone(
    parent: int, inflight: InFlight, messages: ObjectSendStream[SessionMessage | Exception]
) -> None:
    """The process that started the server (its client) is gone, while another holds stdin open (Claude Desktop
    crashed, a process it started having inherited the pipe): no EOF comes, and the server ran on for ever, an
    orphan with its jobs. It is seen by the parent changing (the server adopted by init or a subreaper), one look
    a PARENT_CHECK_SECONDS, and ends the session as EOF does (`_read_wire`)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of a parent's exit (pidfd: Linux only)
        await anyio.sleep(PARENT_CHECK_SECONDS)
    log.warning("stdio.client_gone", parent=parent, why="the process that started the server has exited")
    await inflight.at_eof(EOF_GRACE_SECONDS)
    await messages.aclose()


async def _write_wire(writer: WireWriter, messages: ObjectReceiveStream[SessionMessage], inflight: InFlight) -> None:
    async with messages:
        async for item in messages:
            data = encode_message(item.message)
            if data is not None:
                await writer.send(data)
            inflight.answered(item.message)


class InFlight:
    """The requests read and not answered yet. At EOF the session is closed (which cancels what it still runs)
    only once they are answered, or after a grace: closed at once, `printf ... | vibe-jobs serve` lost its last
    answers (review helper-65 F4). A long-poll still waiting then is cut, as before. A request the client cancels
    is not answered (notifications/cancelled): it leaves at once, or its id stayed for the session's life."""

    def __init__(self, on_eof: Callable[[], None] | None = None) -> None:
        self.ids: set[types.RequestId] = set()
        self._changed = anyio.Event()
        self._on_eof = on_eof

    async def deliver(self, messages: ObjectSendStream[SessionMessage | Exception], item: SessionMessage) -> None:
        message = item.message
        if isinstance(message, types.JSONRPCRequest):
            self.ids.add(message.id)
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
            self._done((message.params or {}).get("requestId"))
        await messages.send(item)

    def answered(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self._done(getattr(message, "id", None))

    def _done(self, request_id: Any) -> None:
        if request_id in self.ids:
            self.ids.discard(request_id)
            self._changed.set()
            self._changed = anyio.Event()

    async def at_eof(self, seconds: float) -> None:
        if self._on_eof is not None:
            self._on_eof()
        await self.settled(seconds)

    async def settled(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            while self.ids:
                await self._changed.wait()


class WireWriter:
    """Writes lines to the wire in order from a daemon thread of its own: a client that stops reading fills the
    pipe and blocks the write for ever, and a thread the interpreter waits for would keep the process alive after
    a signal or EOF. At most WRITE_QUEUE lines wait; a sender beyond that waits for room."""

    def __init__(self, wire: BinaryIO) -> None:
        self._lines: queue.Queue[bytes | None] = queue.Queue(WRITE_QUEUE)
        self._thread = threading.Thread(target=self._run, args=(wire,), name="vibe-jobs-stdout", daemon=True)
        self._thread.start()

    def _run(self, wire: BinaryIO) -> None:
        while (data := self._lines.get()) is not None:
            try:
                wire.write(data)
                wire.flush()
            except OSError:  # the client closed its end: nobody reads what follows
                return

    async def send(self, data: bytes) -> None:
        while self._thread.is_alive():
            try:
                return self._lines.put_nowait(data)
            except queue.Full:
                await anyio.sleep(WRITE_WAIT)

    async def drain(self, seconds: float) -> None:
        """Let what was sent reach the wire, for `seconds` at most (a client that reads nothing gets nothing)."""
        with contextlib.suppress(queue.Full):
            self._lines.put_nowait(None)
        await anyio.to_thread.run_sync(self._thread.join, seconds)
        if self._thread.is_alive():
            log.warning("stdio.answers_unwritten", queued=self._lines.qsize(), why="the client reads no more")
