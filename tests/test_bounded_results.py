"""A stored result is JSON-safe and bounded (`results.bounded_result`): the one rule, tested on its own."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from vibe_jobs.results import bounded_result, canonical_json, json_safe, text_result


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
