"""An upstream tool's input schema, enforced before a job exists: the refusals name each problem."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tests.e2e.hostile_upstream import doubling
from tests.json_server import json_server
from vibe_jobs.errors import InvalidArguments
from vibe_jobs.server.proxy.schema import SchemaArguments, output_validator

SUM: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


def refusal(schema: dict[str, Any], arguments: Any) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as caught:
        SchemaArguments("get-sum", schema).check(arguments)
    return caught.value


def test_valid_arguments_pass_unchanged() -> None:
    assert SchemaArguments("get-sum", SUM).check({"a": 1, "b": 2.5}) == {"a": 1, "b": 2.5}


def test_an_unknown_argument_is_refused_with_a_suggestion_although_the_schema_does_not_close_the_object() -> None:
    exc = refusal(SUM, {"a": 1, "b": 2, "bb": 3})
    assert "unknown argument 'bb' (did you mean 'b'?)" in str(exc)
    assert exc.unknown == ["bb"] and exc.accepted == ["a", "b"]


def test_missing_and_mistyped_arguments_are_each_named() -> None:
    text = str(refusal(SUM, {"a": "one"}))
    assert "a: 'one' is not of type 'number'" in text
    assert "arguments: 'b' is a required property" in text
    assert text.startswith("Invalid arguments for 'get-sum'")


def test_a_schema_that_opens_the_object_accepts_other_names() -> None:
    schema = {**SUM, "additionalProperties": True}
    assert SchemaArguments("get-sum", schema).check({"a": 1, "b": 2, "c": 3}) == {"a": 1, "b": 2, "c": 3}


def test_arguments_that_are_not_an_object_are_refused() -> None:
    assert "arguments must be an object, not list" in str(refusal(SUM, [1, 2]))


def test_no_properties_and_an_empty_schema_take_anything_as_an_object() -> None:
    assert SchemaArguments("t", {}).check({"x": 1}) == {"x": 1}
    assert SchemaArguments("t", {"type": "object"}).check({}) == {}


def test_a_broken_upstream_schema_still_checks_the_shape_and_is_reported() -> None:
    rule = SchemaArguments("t", {"type": "object", "properties": {"a": {"type": "no-such-type"}}})
    assert rule.schema_problem is not None
    assert rule.check({"a": 1}) == {"a": 1}


def test_the_listed_schema_is_the_upstreams_own() -> None:
    assert SchemaArguments("get-sum", SUM).schema() == SUM


def test_the_job_function_gets_the_checked_arguments_under_one_name() -> None:
    assert SchemaArguments("get-sum", SUM).typed({"a": 1, "b": 2}) == {"arguments": {"a": 1, "b": 2}}


def nested(depth: int) -> dict[str, Any]:
    """An object schema `depth` objects deep (valid JSON Schema, deeper than the validator's recursion allows)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def test_a_schema_nested_too_deep_for_the_validator_leaves_the_shape_check() -> None:
    """It raised RecursionError out of the constructor: the proxy stopped at start, or (a tool added at run time)
    its upstream was restarted for ever (review helper-54)."""
    rule = SchemaArguments("deep", nested(200))
    assert rule.schema_problem is not None and "deeper" in rule.schema_problem
    assert rule.check({"x": {}}) == {"x": {}}
    assert "arguments must be an object" in str(refusal(nested(200), []))


def test_a_ref_the_validator_cannot_follow_refuses_the_call_naming_the_schema() -> None:
    """A `$ref` loop and a remote `$ref` failed every call with the SDK's generic "Error executing tool"."""
    for ref in ("#/$defs/a", "https://example.invalid/schema.json"):
        schema = {"type": "object", "properties": {"v": {"$ref": ref}}, "$defs": {"a": {"$ref": "#/$defs/a"}}}
        assert "cannot be checked against the upstream's schema" in str(refusal(schema, {"v": 1}))


def test_no_regular_expression_of_the_upstreams_runs_on_the_callers_arguments() -> None:
    """`^(a+)+$` took 7 s on 28 characters, on the event loop (every client waited), doubling per character:
    patterns are the upstream's to check. Here 60 characters would take years."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}, "n": {"type": "integer"}},
        "patternProperties": {"^(b+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    hostile = "a" * 60 + "!"
    assert SchemaArguments("slow", schema).check({"name": hostile, "b" * 60 + "!": "x"})["name"] == hostile
    nested_names = {"type": "object", "properties": {"o": {"propertyNames": {"pattern": "^(a+)+$"}}}}
    assert SchemaArguments("slow", nested_names).check({"o": {hostile: 1}}) == {"o": {hostile: 1}}
    assert "n: 'x' is not of type 'integer'" in str(refusal(schema, {"n": "x"}))  # the rest is still checked


def test_a_subschema_naming_its_own_dialect_runs_no_regular_expression_either() -> None:
    """A nested `$schema` made the validator check that subschema with the dialect's stock class, which ran
    `pattern` again: 9 s on 29 characters (review helper-57). A property named `$schema` is still a property."""
    dialect = "https://json-schema.org/draft/2020-12/schema"
    schema = {
        "type": "object",
        "properties": {
            "x": {"$schema": dialect, "type": "string", "pattern": "^(a+)+$"},
            "$schema": {"type": "string"},
        },
    }
    hostile = "a" * 60 + "!"
    assert SchemaArguments("slow", schema).check({"x": hostile})["x"] == hostile
    assert "$schema: 5 is not of type 'string'" in str(refusal(schema, {"x": "a", "$schema": 5}))


def test_a_ref_to_a_url_is_not_fetched() -> None:
    """jsonschema's default registry fetched a `$ref`'s URL on every call: blocking, with no time-out, on the event
    loop, at any address the upstream names (review helper-57). It is refused, and nothing is fetched."""
    hits: list[str] = []

    def answer(path: str) -> bytes:
        hits.append(path)
        return b'{"type": "integer"}'

    with json_server(answer) as base:
        schema = {"type": "object", "properties": {"v": {"$ref": f"{base}/schema.json"}}}
        assert "cannot be checked against the upstream's schema" in str(refusal(schema, {"v": 1}))
    assert hits == []


def test_an_output_schema_is_checked_without_its_patterns_and_a_deep_one_is_a_schema_error() -> None:
    """The SDK's client checked an upstream's structured content with the stock validator: `^(a+)+$` on its own
    result held the proxy's event loop for hours (review helper-93)."""
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}, "n": {"type": "integer"}}}
    validator = output_validator(schema)
    assert not list(validator.iter_errors({"s": "a" * 60 + "!"}))
    assert [e.message for e in validator.iter_errors({"n": "x"})] == ["'x' is not of type 'integer'"]
    with pytest.raises(SchemaError, match="deeper"):
        output_validator(nested(2000))


def test_a_check_whose_cost_doubles_at_each_reference_is_refused_and_large_arguments_still_pass() -> None:
    """`$defs` that each name the next twice check a value 2^N times: 16 levels held the event loop 2.4 s, 60 for
    good (review helper-150). The check is held to a cost that grows with the value checked, not with the schema:
    an argument of 2,000 objects against an ordinary schema is checked whole."""
    assert "cannot be checked against the upstream's schema (checking it takes more than" in str(
        refusal(doubling(60), {"v": "x"})
    )
    with pytest.raises(RuntimeError, match="cannot be checked against the output schema"):
        output_validator(doubling(60)).iter_errors({"v": "x"})
    row = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}
    rows = {"type": "object", "properties": {"rows": {"type": "array", "items": {"anyOf": [row, {"type": "null"}]}}}}
    many = {"rows": [{"a": n, "b": str(n)} for n in range(2000)]}
    assert SchemaArguments("many", rows).check(many) == many
    wrong = {"rows": [*many["rows"][:-1], {"a": "x"}]}
    assert "rows.1999: {'a': 'x'} is not valid under any of the given schemas" in str(refusal(rows, wrong))


JSON = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, 2, 0.0, 1.0, 2.5, -0.0]) | st.sampled_from(["", "a", "1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(JSON, max_size=5), JSON)
def test_enum_and_unique_items_hold_the_values_jsonschema_holds_equal(values: list[Any], value: Any) -> None:
    """The look-ups that replace jsonschema's comparisons (review helper-150) agree with them: a bool is no number,
    1 is 1.0, an object's keys in any order."""
    for schema in ({"enum": values}, {"uniqueItems": True}):
        for instance in (value, [*values, value]):
            stock = Draft202012Validator(schema).is_valid(instance)
            assert (not list(output_validator(schema).iter_errors(instance))) == stock, (schema, instance)


def test_unique_items_of_many_objects_and_an_enum_of_many_values_are_checked_at_once() -> None:
    """jsonschema compared each item of a `uniqueItems` array with every other (2,000 objects: 10 s, 20,000: a
    quarter of an hour), and an argument with each value of an `enum` (a million: 0.2 s a value), on the event
    loop. A long enum is not written out in a refusal."""
    unique = output_validator({"type": "array", "uniqueItems": True})
    rows = [{"k": n, "v": [n, {"n": n}]} for n in range(20_000)]
    assert list(unique.iter_errors(rows)) == []
    again = {"v": [0, {"n": 0}], "k": 0.0}  # the first row, its keys in another order, 0 as 0.0
    assert [e.message.endswith("has non-unique elements") for e in unique.iter_errors([*rows, again])] == [True]
    choices = [f"c{n}" for n in range(200_000)]
    schema = {"type": "object", "properties": {"v": {"type": "array", "items": {"enum": choices}}}}
    rule = SchemaArguments("many", schema)
    assert rule.check({"v": ["c199999"] * 1000}) == {"v": ["c199999"] * 1000}
    with pytest.raises(InvalidArguments, match=r"v\.1: True is not one of the 200,000 values the schema lists$"):
        rule.check({"v": ["c1", True]})
