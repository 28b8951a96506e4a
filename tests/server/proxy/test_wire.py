"""The upstream wire's reader: lines cut as they come, whatever the chunks; an over-long one never held whole."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.message import SessionMessage
from structlog.testing import capture_logs

from vibe_jobs.server.proxy.wire import (
    HEAD_BYTES,
    INVALID_REQUEST,
    MAX_VALUES,
    Drops,
    Overlong,
    Reply,
    lines,
    message_of,
    values_in,
)

LIMIT = 16


async def read(chunks: list[bytes], limit: int = LIMIT) -> list[bytes | Overlong]:
    return [line async for line in lines(_Chunks(chunks), limit)]  # type: ignore[arg-type]


class _Chunks:
    """What `lines` reads of a byte stream: its chunks, by async iteration."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = iter(chunks)

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self.chunks)
        except StopIteration:
            raise StopAsyncIteration from None


def expected(data: bytes, limit: int = LIMIT) -> list[bytes | tuple[int, bytes, bytes]]:
    *whole, _rest = data.split(b"\n")  # what follows the last newline is not a line yet
    return [line if len(line) <= limit else (len(line), line[:HEAD_BYTES], line[-HEAD_BYTES:]) for line in whole]


def plain(found: list[bytes | Overlong]) -> list[bytes | tuple[int, bytes, bytes]]:
    return [(x.size, x.head, x.tail) if isinstance(x, Overlong) else x for x in found]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"bcd", b"\n", b"x" * 20, b"\n\n", b"y" * 7 + b"\n"]), max_size=30),
    st.data(),
)
def test_lines_are_the_same_however_the_bytes_are_cut(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]
    assert plain(anyio.run(read, chunks)) == expected(stream)


async def test_an_over_long_line_keeps_its_size_and_head_only() -> None:
    big = b'{"jsonrpc":"2.0","id":7,"result":' + b"z" * 100_000 + b"}"
    found = await read([big[i : i + 1000] for i in range(0, len(big), 1000)] + [b"\n", b"{}\n"], limit=10_000)
    assert found == [Overlong(len(big), big[:HEAD_BYTES], big[-HEAD_BYTES:]), b"{}"]


def test_an_unusable_answer_fails_the_call_it_answers() -> None:
    answer = message_of(Overlong(10**9, b'{"jsonrpc": "2.0", "id": 7, "result": {"content": ['), Drops("up"))
    assert isinstance(answer, SessionMessage) and isinstance(answer.message, types.JSONRPCError)
    assert answer.message.id == 7 and "1,000,000,000 bytes, over the proxy's limit" in answer.message.error.message
    wrong = message_of(b'{"jsonrpc":"2.0","id":"a","result":[]}', Drops("up"))
    assert isinstance(wrong, SessionMessage) and isinstance(wrong.message, types.JSONRPCError)
    assert wrong.message.id == "a" and "not JSON-RPC" in wrong.message.error.message
    # the TypeScript SDK writes the id last: {"result": ..., "jsonrpc": "2.0", "id": 8}
    ts = message_of(
        Overlong(10**9, b'{"result":{"content":[{"type":"text","text":"xx', b'xx"}]},"jsonrpc":"2.0","id":8}'),
        Drops("up"),
    )
    assert isinstance(ts, SessionMessage) and isinstance(ts.message, types.JSONRPCError) and ts.message.id == 8
    ts_bad = message_of(b'{"result":"not an object","jsonrpc":"2.0","id":9}', Drops("up"))
    assert isinstance(ts_bad, SessionMessage) and isinstance(ts_bad.message, types.JSONRPCError)
    assert ts_bad.message.id == 9
    assert message_of(b"not json at all", Drops("up")) is None
    assert message_of(b'{"jsonrpc":"2.0","id":true,"result":[]}', Drops("up")) is None  # no id a call can have
    assert message_of(b"  ", Drops("up")) is None


@pytest.mark.parametrize(
    "line",
    [
        b'{"method":"sampling/createMessage","params":"bad","jsonrpc":"2.0","id":7}',
        b'{"jsonrpc":"2.0","id":7,"method":42}',
        Overlong(10**9, b'{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"'),
        Overlong(10**9, b'{"method":"sampling/createMessage","params":{"x":"', b'xx"},"jsonrpc":"2.0","id":7}'),
    ],
    ids=["params not an object", "method not a text", "over-long", "over-long, id last"],
)
def test_a_request_of_the_upstreams_that_cannot_be_used_is_answered_invalid_and_never_taken_for_an_answer(
    line: bytes | Overlong,
) -> None:
    """The upstream waited for ever for an answer to such a request; the session must not see it either (it
    has the id of one of our calls, 7, by chance)."""
    reply = message_of(line, Drops("up"))
    assert isinstance(reply, Reply) and isinstance(reply.message.message, types.JSONRPCError)
    error = reply.message.message
    assert error.id == 7 and error.error.code == INVALID_REQUEST
    assert error.error.message.startswith("the proxy could not use this request: the upstream's message is")


def test_a_flood_of_broken_lines_is_logged_as_it_doubles_not_line_by_line() -> None:
    drops = Drops("up")
    with capture_logs() as logs:
        for _ in range(1000):
            assert message_of(b"not json at all", drops) is None
    assert [entry["dropped"] for entry in logs] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert all(entry["event"] == "proxy.upstream_line_dropped" and entry["upstream"] == "up" for entry in logs)


def structure_outside_texts(line: bytes) -> int:
    """The commas, `[` and `{` of a JSON line outside its texts, read a byte at a time."""
    count, within, escaped = 0, False, False
    for byte in line:
        char = chr(byte)
        if within:
            within, escaped = (within, False) if escaped else (char != '"', char == "\\")
        elif char == '"':
            within = True
        else:
            count += char in ",[{"
    return count


TEXT = st.text(alphabet='ab,[{"\\\n', max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_values_of_a_line_are_counted_outside_its_texts(value: Any) -> None:
    """`values_in` counts what a reader of each byte counts (review helper-150), whatever texts hold: commas,
    brackets, quotes and backslashes, escaped or not."""
    line = json.dumps(value, ensure_ascii=False).encode()
    assert values_in(line, limit=0) == structure_outside_texts(line)


def test_a_line_of_more_values_than_the_limit_fails_the_call_it_answers_unparsed() -> None:
    """Each value became Python objects several times over: 52 MB of empty text blocks took the proxy to 3.8 GB. A
    text of many commas is one value."""
    blocks = b",".join([b'{"type":"text","text":""}'] * (MAX_VALUES // 2))
    answer = message_of(b'{"jsonrpc":"2.0","id":7,"result":{"content":[' + blocks + b"]}}", Drops("up"))
    assert isinstance(answer, SessionMessage) and isinstance(error := answer.message, types.JSONRPCError)
    assert error.id == 7 and "JSON values or more, over the proxy's limit of 1,000,000" in error.error.message
    text = json.dumps(
        {"jsonrpc": "2.0", "id": 8, "result": {"content": [{"type": "text", "text": ",[{" * MAX_VALUES}]}}
    )
    assert isinstance(message_of(text.encode(), Drops("up")), SessionMessage)
