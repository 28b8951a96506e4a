"""Flattened output schemas accept exactly what the pydantic schemas accept, at less cost to clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import validators
from pydantic import BaseModel

from vibe_jobs.models import JobStarted, JobStatusMessage
from vibe_jobs.server.schemas import flat_schema, or_error, untitled

STARTED = {
    "jobId": "a" * 32, "status": "pending", "toolName": "noop", "message": "Job started",
    "pollingRecommendation": {"interval": 1000, "nextCheckTime": 123},
}  # fmt: skip
STATUS = {
    "jobId": "b" * 32, "toolName": "noop", "status": "running", "message": "Job is running", "progress": 40.0,
    "timestamp": 1, "details": {"currentStage": "scan", "diagnostics": [], "subProgress": None, "metadata": {}},
    "rateLimited": False, "accessCount": 2, "createdAt": 1, "updatedAt": 1,
    "pollingRecommendation": {"interval": 2000, "nextCheckTime": 5},
}  # fmt: skip


def valid(schema: dict[str, Any], instance: Any) -> bool:
    return bool(validators.validator_for(schema)(schema).is_valid(instance))


def variants(base: dict[str, Any]) -> list[Any]:
    """The instance, plus one change per field: null, a wrong type, an unknown enum value, missing."""
    out: list[Any] = [base, {**base, "extra": 1}]
    for key, value in base.items():
        out += [{**base, key: None}, {**base, key: "text" if not isinstance(value, str) else 7}]
        out.append({k: v for k, v in base.items() if k != key})
        if key == "status":
            out.append({**base, key: "exploded"})
        if isinstance(value, dict):
            for inner in value:
                out.append({**base, key: {**value, inner: None}})
                out.append({**base, key: {**value, inner: [1]}})
    return out


@pytest.mark.parametrize(("model", "instance"), [(JobStarted, STARTED), (JobStatusMessage, STATUS)])
def test_flat_schema_accepts_and_refuses_exactly_what_the_original_does(
    model: type[BaseModel], instance: dict[str, Any]
) -> None:
    original = model.model_json_schema(by_alias=True)
    flat = flat_schema(original)
    assert "$ref" not in json.dumps(flat)
    assert valid(original, instance) and valid(flat, instance)
    cases = variants(instance)
    verdicts = [(valid(original, case), valid(flat, case)) for case in cases]
    assert all(a == b for a, b in verdicts), [c for c, (a, b) in zip(cases, verdicts, strict=True) if a != b]
    assert any(not a for a, _ in verdicts)  # the variants do include refused instances


def test_nullable_fields_become_type_lists_and_nullable_enums_take_null() -> None:
    schema = {
        "$defs": {"Colour": {"enum": ["red", "blue"], "type": "string"}},
        "properties": {
            "n": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}], "default": None},
            "c": {"anyOf": [{"$ref": "#/$defs/Colour"}, {"type": "null"}]},
        },
        "type": "object",
    }
    flat = flat_schema(schema)
    assert flat["properties"]["n"] == {"type": ["integer", "null"], "minimum": 0, "default": None}
    assert flat["properties"]["c"] == {"enum": ["red", "blue", None], "type": ["string", "null"]}
    assert "$defs" not in flat


def test_a_recursive_schema_is_left_as_it_is() -> None:
    schema = {
        "$defs": {"Node": {"properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}},
        "$ref": "#/$defs/Node",
    }
    assert flat_schema(schema) == schema


def test_only_exact_rewrites_are_made() -> None:
    combined = {"anyOf": [{"type": "integer", "allOf": [{"minimum": 1}]}, {"type": "null"}]}
    assert flat_schema(combined) == combined  # allOf would apply to null too once folded
    with_enum_null = {"anyOf": [{"type": "string", "enum": ["a", None]}, {"type": "null"}]}
    assert flat_schema(with_enum_null)["enum"] == ["a", None]
    constrained_ref = {"$defs": {"N": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/N", "minimum": 3}}}
    assert flat_schema(constrained_ref) == constrained_ref  # a sibling constraint: keep the reference as it is


REFUSAL = {"error": {"code": "invalid_params", "message": "unknown argument 'x'", "unknown": ["x"]}}


@pytest.mark.parametrize(("model", "instance"), [(JobStarted, STARTED), (JobStatusMessage, STATUS)])
def test_or_error_accepts_the_answer_or_a_refusal_and_nothing_else(
    model: type[BaseModel], instance: dict[str, Any]
) -> None:
    for schema in (model.model_json_schema(by_alias=True), flat_schema(model.model_json_schema(by_alias=True))):
        either = or_error(schema)
        assert either["type"] == "object"  # MCP: an outputSchema is an object schema
        assert valid(either, instance) and valid(either, REFUSAL)
        assert not valid(either, {"error": "no code"}) and not valid(either, {**instance, "jobId": 7})


def test_or_error_keeps_defs_at_the_top_where_refs_point() -> None:
    node = {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}
    recursive = {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}
    either = or_error(recursive)
    assert "$defs" in either and valid(either, {"next": {"next": None}}) and valid(either, REFUSAL)
    assert not valid(either, {"next": {"next": 3}})


def test_untitled_drops_only_the_titles_made_up_from_names() -> None:
    schema = {
        "title": "fnArguments",
        "type": "object",
        "properties": {
            "jobId": {"title": "Jobid", "type": "string"},
            "max_files": {"title": "Max Files", "type": "integer"},
            "named": {"title": "A title given on purpose", "type": "string"},
            "properties": {"title": "Properties", "type": "object", "properties": {"x": {"title": "X"}}},
        },
    }
    assert untitled(schema, top=True) == {
        "type": "object",
        "properties": {
            "jobId": {"type": "string"},
            "max_files": {"type": "integer"},
            "named": {"title": "A title given on purpose", "type": "string"},
            "properties": {"type": "object", "properties": {"x": {}}},
        },
    }
    assert untitled(schema)["title"] == "fnArguments"  # an output schema keeps its model's name
