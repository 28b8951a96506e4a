"""A stored result is JSON-safe and bounded (`results.bounded_result`): the one rule, tested on its own."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vibe_jobs.results import bounded_result, canonical_json, json_safe, safe_json, text_result, to_call_result


def encodes(value: object) -> int:
    return len(canonical_json(value).encode())


def test_a_result_that_fits_is_kept_as_it_is() -> None:
    result = text_result("héllo ✓", structured={"n": [1, 2.5, None, True]})
    assert bounded_result(result, 4096) is result


def test_what_json_cannot_carry_is_replaced() -> None:
    result = {"content": [{"type": "text", "text": "a\udcffb"}], "structuredContent": {1: math.nan, "x": math.inf}}
    safe = bounded_result(result, 1 << 20)
    assert safe["content"][0]["text"] == "a\\udcffb"
    assert safe["structuredContent"] == {"1": None, "x": None}
    assert json_safe({"o": object()})["o"].startswith("<object object")


def test_a_result_over_the_limit_keeps_its_start_and_says_so() -> None:
    result = text_result("\x01" * 100_000, is_error=True)  # escapes make the JSON six times the text
    cut = bounded_result(result, 8192)
    assert encodes(cut) <= 8192 and cut["isError"] is True
    assert cut["structuredContent"] == {"truncated": True, "originalBytes": encodes(result), "maxResultBytes": 8192}
    assert cut["content"][0]["text"].startswith("\x01") and "[result truncated: " in cut["content"][0]["text"]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None, exclude_categories=())),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(JSONISH, st.integers(4096, 20_000))
def test_any_result_becomes_encodable_and_bounded(structured: object, limit: int) -> None:
    cut = bounded_result(
        {"content": [{"type": "text", "text": str(structured)}], "structuredContent": structured}, limit
    )
    wire = json.dumps(cut, allow_nan=False, ensure_ascii=False).encode()  # raises on what JSON cannot carry
    assert len(canonical_json(cut).encode()) <= limit and wire


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(max_codepoint=127), max_size=3000), max_size=10), st.booleans(),
       st.integers(4096, 20_000))  # fmt: skip
def test_plain_text_results_are_kept_when_they_fit_and_cut_when_they_do_not(
    texts: list[str], is_error: bool, limit: int
) -> None:
    """Text blocks of ASCII (control characters grow six times as JSON) take the quick path when they surely fit:
    kept as they are exactly when their JSON fits, and bounded otherwise."""
    result = {"content": [{"type": "text", "text": t} for t in texts], "isError": is_error}
    out = bounded_result(result, limit)
    assert encodes(out) <= limit
    assert (out is result) == (encodes(result) <= limit)


def shared_lists(depth: int) -> list[Any]:
    """Lists `depth` deep, each holding the one below twice: no cycle, 2^depth values walked as a tree."""
    shared: list[Any] = []
    for _ in range(depth):
        shared = [shared, shared]
    return shared


def count_values(value: Any) -> int:
    """The values inside `value`, walked as a tree."""
    if not isinstance(value, dict | list):
        return 0
    inner = value.values() if isinstance(value, dict) else value
    return sum(1 + count_values(item) for item in inner)


def test_a_cycle_becomes_a_marker_and_shared_values_without_one_are_kept() -> None:
    cycle: dict[str, Any] = {"n": 1}
    cycle["a"] = cycle
    cycle["b"] = [cycle, (cycle,)]
    assert json_safe(cycle) == {"n": 1, "a": "<cycle>", "b": ["<cycle>", ["<cycle>"]]}
    twice = {"k": [1]}
    assert json_safe([twice, twice]) == [{"k": [1]}, {"k": [1]}]
    result = bounded_result(text_result("c", structured=cycle), 1 << 20)
    assert result["structuredContent"] == json_safe(cycle)


@pytest.mark.timeout(60)  # it walked 2^40 values: never ended
def test_shared_references_are_walked_at_most_a_million_values() -> None:
    dag = shared_lists(40)
    safe = json_safe(dag)
    text = canonical_json(safe)
    assert "<too many values>" in text and count_values(safe) <= 1_000_000
    assert json_safe(safe) == safe, "what json_safe makes is kept as it is"
    stored = bounded_result(text_result("d", structured={"v": dag}), 4 << 20)
    assert encodes(stored) <= 4 << 20


@pytest.mark.timeout(60)
def test_a_plain_return_value_with_shared_references_becomes_a_result() -> None:
    cycle: dict[str, Any] = {"n": 1}
    cycle["self"] = cycle
    made = to_call_result(cycle)
    assert made["structuredContent"] == {"n": 1, "self": "<cycle>"}
    assert json.loads(made["content"][0]["text"]) == made["structuredContent"]
    assert "<too many values>" in to_call_result(shared_lists(40))["content"][0]["text"]


@pytest.mark.parametrize(
    ("value", "structured"),
    [
        ({"x": math.nan, "y": [math.inf]}, {"x": None, "y": [None]}),
        ([math.nan], {"result": [None]}),
        ({"b": b"\xff\x00"}, {"b": "b'\\xff\\x00'"}),
        ({"s": {1}}, {"s": "{1}"}),
        ({"n": 10**5000}, {"n": "<integer too large>"}),
        ({10**5000: 1}, {"<int: str() failed>": 1}),
        (range(2), {"result": "range(0, 2)"}),
    ],
)
def test_a_plain_return_value_json_cannot_carry_is_made_safe_as_a_stored_result_is(
    value: object, structured: dict[str, Any]
) -> None:
    """README: NaN and infinities become null, other objects their repr: a plain dict or list too."""
    made = to_call_result(value)
    assert made["structuredContent"] == structured and made["isError"] is False
    text = made["content"][0]["text"]
    assert json.loads(text) == (structured if isinstance(value, dict) else structured["result"])


def test_an_object_whose_repr_raises_is_named_by_its_type() -> None:
    class Unshowable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert json_safe({"o": Unshowable()}) == {"o": "<Unshowable: repr() failed>"}


def walked_twice(value: object, max_bytes: int) -> dict[str, Any]:
    """A plain value stored as before its result was measured once: made safe for its text, then the call
    result walked and encoded again, as any dict given to `bounded_result` is. (That walk does not know what the
    first one cut: a value cut to the values walked for its text is tested with its mark, below.)"""
    safe, text, _size, _cuts = safe_json(value)
    return bounded_result(text_result(text, structured=safe if isinstance(safe, dict) else {"result": safe}), max_bytes)


def nested_dicts(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"bottom": 1}
    for _ in range(depth - 1):
        value = {"down": value}
    return value


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def stored_as_before(value: object, max_bytes: int) -> None:
    new, old = bounded_result(to_call_result(value), max_bytes), walked_twice(value, max_bytes)
    assert type(new) is dict and canonical_json(new) == canonical_json(old)


def looped() -> dict[str, Any]:
    loop: dict[str, Any] = {"n": 1, "é": [math.nan]}
    loop["self"] = [loop]
    return loop


STORED_ALIKE = {
    "small dict": {"path": "src/app.py", "lines": 120, "ok": True, "score": 0.93, "tags": ["a", "b"]},
    "rows": {"rows": [{"id": i, "name": f"row {i}", "score": i / 3} for i in range(500)]},
    "non-ASCII": {"name": "héllo ✓ 日本語", "emoji": "🙂" * 50},
    "NaN and infinities": {"x": math.nan, "y": [math.inf, -math.inf]},
    "a lone surrogate": {"k\udcff": "v\udcff"},
    "int keys, bytes, sets": {1: b"\xff", "s": {1}, "t": (1, 2)},
    "a cycle": looped(),
    "shared, no cycle": {"a": (shared := [1, 2]), "b": shared},
    "a list": [1, "two", 3.0, None, True],
    "a scalar": 12.5,
    "a large int": 10**5000,
    "dicts 99 deep": nested_dicts(99),
    "dicts 100 deep": nested_dicts(100),  # whole as text; cut a level short as structured content (one level down)
    "lists 99 deep": nested_lists(99),
    "lists 150 deep": nested_lists(150),
}


@pytest.mark.parametrize("value", STORED_ALIKE.values(), ids=STORED_ALIKE.keys())
def test_a_plain_value_is_stored_as_when_its_result_was_walked_twice(value: object) -> None:
    """`to_call_result` measures the result it makes, and `bounded_result` keeps it without walking it again: the
    same result to the byte, at any limit, and around the size where it is cut."""
    size = encodes(walked_twice(value, 1 << 30))
    for max_bytes in (size - 1, size, size + 1, 4096, 4 << 20):
        stored_as_before(value, max_bytes)


@pytest.mark.parametrize("values", [999_993, 999_994, 999_999])
def test_a_plain_value_near_the_values_walked_is_stored_as_when_its_result_was_walked_twice(values: int) -> None:
    """The result holds 6 values more than the value ({"flags": [...]}: 1 + n): 999,993 flags are walked whole
    twice; from 999,994 to 999,999 the value is whole for its text and the result's walk cuts them."""
    stored_as_before({"flags": [0] * values}, 4 << 20)


@settings(max_examples=200, deadline=None)
@given(JSONISH, st.integers(100, 3000))
def test_any_plain_value_is_stored_as_when_its_result_was_walked_twice(value: object, max_bytes: int) -> None:
    assume(value is not None and not isinstance(value, str))  # text and None: no structured content
    stored_as_before(value, max_bytes)


class ReadsCounted(dict[str, Any]):
    """A job's dict that notes each time it is read whole: walked (`values`) or encoded (`items`)."""

    def __init__(self, **items: Any) -> None:
        super().__init__(**items)
        self.reads: list[str] = []

    def values(self) -> Any:
        self.reads.append("walked")
        return super().values()

    def items(self) -> Any:
        self.reads.append("encoded")
        return super().items()


def test_a_plain_dict_is_walked_once_and_encoded_once_on_its_way_to_the_store() -> None:
    value = ReadsCounted(rows=[{"id": 1}, {"id": 2}], note="x")
    stored = bounded_result(to_call_result(value), 4 << 20)
    assert value.reads == ["walked", "encoded"]
    assert stored["structuredContent"] == value and json.loads(stored["content"][0]["text"]) == value


def test_a_dict_given_to_be_stored_is_walked_and_encoded_even_when_a_plain_value_made_it() -> None:
    """Only a result this module made and measured is kept unwalked: a copy of one, or a dict shaped like it, is
    made safe and bounded as any result is."""
    made = dict(to_call_result({"x": 1}))
    made["structuredContent"] = {"x": math.nan, "big": "y" * 10_000}
    stored = bounded_result(made, 4096)
    assert stored["structuredContent"]["truncated"] is True and encodes(stored) <= 4096


@pytest.mark.parametrize(
    ("value", "whole"),
    [
        (nested_lists(100), True),
        (nested_lists(101), False),
        (nested_dicts(100), True),
        (nested_dicts(101), False),
        ([[0] * 499_999, [0] * 499_999], True),  # 1,000,000 values, on two levels
        ([[0] * 499_999, [0] * 500_000], False),
        (shared_lists(18), True),  # 2^19 - 2 values as an encoder walks it
        (shared_lists(19), False),  # 2^20 - 2
    ],
)
def test_a_value_is_kept_whole_up_to_100_levels_and_a_million_values(value: object, whole: bool) -> None:
    """What the walk that decides whether a value must be made safe (`_unwieldy`) lets through as it is."""
    assert (safe_json(value)[0] is value) is whole


MARKED_VALUES = {"truncated": True, "maxValues": 1_000_000}
MARKED_DEPTH = {"truncated": True, "maxDepth": 100}


def notes(result: dict[str, Any]) -> list[str]:
    """The notes of a result's cut: its text blocks that say so."""
    return [b["text"] for b in result["content"] if b["text"].startswith("[result truncated: ")]


@pytest.fixture(scope="module")
def flags() -> dict[str, Any]:
    """A flat result of 3 MB of JSON (within the 4 MiB default) holding more values than a stored result keeps."""
    return to_call_result({"flags": [0] * 1_500_000})


def test_a_result_cut_to_the_values_walked_says_so_as_one_cut_to_its_size_does(flags: dict[str, Any]) -> None:
    stored = bounded_result(flags, 4 << 20)
    kept = json_safe({"flags": [0] * 1_500_000})
    assert len(kept["flags"]) == 999_900 and kept["flags"][-1] == "<too many values>"
    assert stored["structuredContent"] == {**kept, **MARKED_VALUES}
    assert json.loads(stored["content"][0]["text"]) == kept, "a dict's JSON text stays its JSON"
    assert notes(stored) == [
        "[result truncated: cut to 1,000,000 values (one referred to from n places counts n times): "
        'each container still open there ends with "<too many values>"]'
    ]
    assert encodes(stored) <= 4 << 20


def test_a_result_cut_to_the_values_walked_and_then_to_its_size_says_both(flags: dict[str, Any]) -> None:
    stored = bounded_result(flags, 1 << 20)
    size = encodes(bounded_result(flags, 4 << 20))
    assert stored["structuredContent"] == {
        "truncated": True, "originalBytes": size, "maxResultBytes": 1 << 20, "maxValues": 1_000_000
    }  # fmt: skip
    assert encodes(stored) <= 1 << 20


def test_a_result_nested_too_deep_says_so() -> None:
    result = text_result("deep", structured={"v": nested_lists(150)})
    stored = bounded_result(result, 1 << 20)
    assert stored["structuredContent"] == {**json_safe(result)["structuredContent"], **MARKED_DEPTH}
    assert stored["content"][0]["text"] == "deep"
    assert notes(stored) == [
        '[result truncated: cut at 100 levels of nesting: a container deeper is "<nested too deep>"]'
    ]
    made = bounded_result(to_call_result(nested_lists(150)), 1 << 20)
    assert made["structuredContent"]["truncated"] is True and made["structuredContent"]["maxDepth"] == 100


@pytest.mark.timeout(60)
def test_a_result_cut_anywhere_says_so_in_structured_content_made_for_it() -> None:
    """A result without structured content, cut in its `_meta`: structured content is made to say so."""
    stored = bounded_result({"content": [{"type": "text", "text": "d"}], "_meta": {"v": shared_lists(40)}}, 4 << 20)
    assert stored["structuredContent"] == MARKED_VALUES
    assert stored["content"][0] == {"type": "text", "text": "d"} and len(notes(stored)) == 1


def test_a_cycle_made_safe_is_not_a_cut() -> None:
    """A cycle loses nothing JSON could carry (every value is there, once): like NaN as null, it is not marked."""
    cycle: dict[str, Any] = {"n": 1}
    cycle["self"] = cycle
    stored = bounded_result(to_call_result(cycle), 4 << 20)
    assert stored["structuredContent"] == {"n": 1, "self": "<cycle>"} and notes(stored) == []


def test_a_value_the_tool_changes_after_returning_is_stored_as_it_was_returned() -> None:
    """A plain value's result is measured when the tool returns. A tool that goes on writing to what it returned
    (shared state, a task it left running) while its outcome waited for the store (locked: retried) had it stored
    past max_result_bytes, uncut, or its job failed on a NaN written late (review helper-80 F1)."""
    limit = 64 * 1024
    state: dict[str, Any] = {"log": ["x"], "n": 1}
    result = to_call_result(state)
    state["log"].extend(["x" * 1000] * 200)
    state["late"] = float("nan")
    stored = bounded_result(result, limit)
    assert stored == bounded_result(to_call_result({"log": ["x"], "n": 1}), limit)
    assert len(canonical_json(stored)) < limit
