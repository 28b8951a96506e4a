"""The form a job's question sends is one the MCP's elicitation schema allows, whatever pydantic model the job
asks with, against the real `vibe-jobs serve` over stdio (raw frames: the schema exactly as sent).

A 2025-11-25 client checks `elicitation/create` against the spec's `PrimitiveSchemaDefinition`: the TypeScript
SDK's client (1.32) refuses a request whose property has `"default": null` (a pydantic `X | None = None` field) or a
string `format` outside date, date-time, email and uri, with -32602 before its callback runs: the person was never
asked and the job went on as if they had declined. An Enum field (a `$ref` into the model's `$defs`) failed the job
("must be a string, number, integer, boolean or enum"), though enums are what a form may ask for.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.e2e.raw_stdio import raw_stdio

pytestmark = pytest.mark.timeout(60)

# schema/2025-11-25.json of the MCP specification, ElicitRequestFormParams.requestedSchema and the
# PrimitiveSchemaDefinition members, as written there (keys the spec does not name are allowed: clients drop them)
TEXT = {"type": "string"}
_ENUM_STRINGS = {"type": "array", "items": TEXT}
_OPTIONS = {"type": "array", "items": {"type": "object", "required": ["const", "title"]}}
PRIMITIVE = {
    "anyOf": [
        {  # StringSchema
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": "string"},
                "title": TEXT,
                "description": TEXT,
                "minLength": {"type": "integer"},
                "maxLength": {"type": "integer"},
                "format": {"enum": ["email", "uri", "date", "date-time"]},
                "default": TEXT,
            },
        },
        {  # NumberSchema
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["number", "integer"]},
                "title": TEXT,
                "description": TEXT,
                "minimum": {"type": "number"},
                "maximum": {"type": "number"},
                "default": {"type": "number"},
            },
        },
        {  # BooleanSchema
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": "boolean"},
                "title": TEXT,
                "description": TEXT,
                "default": {"type": "boolean"},
            },
        },
        {  # UntitledSingleSelectEnumSchema, TitledSingleSelectEnumSchema, LegacyTitledEnumSchema
            "type": "object",
            "required": ["type"],
            "anyOf": [{"required": ["enum"]}, {"required": ["oneOf"]}],
            "properties": {
                "type": {"const": "string"},
                "title": TEXT,
                "description": TEXT,
                "enum": _ENUM_STRINGS,
                "enumNames": _ENUM_STRINGS,
                "oneOf": _OPTIONS,
                "default": TEXT,
            },
        },
        {  # UntitledMultiSelectEnumSchema, TitledMultiSelectEnumSchema
            "type": "object",
            "required": ["type", "items"],
            "properties": {
                "type": {"const": "array"},
                "title": TEXT,
                "description": TEXT,
                "minItems": {"type": "integer"},
                "maxItems": {"type": "integer"},
                "items": {
                    "anyOf": [
                        {"type": "object", "required": ["type", "enum"], "properties": {"enum": _ENUM_STRINGS}},
                        {"type": "object", "required": ["anyOf"], "properties": {"anyOf": _OPTIONS}},
                    ]
                },
                "default": _ENUM_STRINGS,
            },
        },
    ]
}
REQUESTED_SCHEMA = {
    "type": "object",
    "required": ["type", "properties"],
    "properties": {
        "type": {"const": "object"},
        "properties": {"type": "object", "additionalProperties": PRIMITIVE},
        "required": _ENUM_STRINGS,
    },
}

CASES: dict[str, tuple[dict[str, Any], str]] = {  # tool: (the person's answer, what the job's model then holds)
    "ask_optional": ({"count": 3}, "accept Optionals(count=3, name=None, ok=None)"),
    "ask_paint": (
        {"second": "blue", "extra": ["red", "blue"]},
        "accept Paint(colour=<Colour.RED: 'red'>, second=<Colour.BLUE: 'blue'>, "
        "extra=[<Colour.RED: 'red'>, <Colour.BLUE: 'blue'>])",
    ),
    "ask_formats": (
        {"ref": "12345678-1234-5678-1234-567812345678", "at": "10:30:00", "day": "2026-12-06"},
        "accept Formats(ref=UUID('12345678-1234-5678-1234-567812345678'), at=datetime.time(10, 30), "
        "day=datetime.date(2026, 12, 6))",
    ),
}


@pytest.mark.parametrize("tool", CASES)
async def test_the_form_a_job_asks_with_is_one_the_specification_allows(tool: str) -> None:
    content, held = CASES[tool]
    async with raw_stdio(tools="tests.e2e.form_tools", capabilities={"elicitation": {"form": {}}}) as raw:
        started = await raw.call(tool, {})
        job_id = started["result"]["structuredContent"]["jobId"]
        poll_id = await raw.call_later("get-job-result", {"jobId": job_id, "waitSeconds": 20})
        while (asked := await raw.answer()).get("method") != "elicitation/create":
            assert asked.get("id") != poll_id, f"the job was not asked: {asked}"
        jsonschema.validate(asked["params"]["requestedSchema"], REQUESTED_SCHEMA)
        await raw.send({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": content}})
        while (answer := await raw.answer()).get("id") != poll_id:
            pass
    status = answer["result"]["structuredContent"]
    assert status["status"] == "completed", status
    assert status["result"]["content"][0]["text"] == held
