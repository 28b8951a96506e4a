"""Every tool's advertised inputSchema says what the server accepts: a value the server refuses for its shape or
range is one the schema refuses, and a value the server accepts is one the schema accepts.

Clients (and agents' tool-call constraints) build calls from the inputSchema; a schema that admits what the
server then refuses sends an agent round a loop of refusals it could not have foreseen. Drives the real
`vibe-jobs serve` over stdio in both eras; each call is checked against the listed schema with jsonschema and
against the server's answer.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.e2e.conftest import MODES, stdio_client_for

pytestmark = pytest.mark.timeout(120)

EVERY = {"tool": "noop", "everySeconds": 3600}
# calls the server refuses for a value's shape or range (not for what the value names: an unknown id, say)
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("schedule-job", {"tool": "noop", "everySeconds": 0.5}),
    ("schedule-job", {"tool": "noop", "everySeconds": 1e300}),
    ("schedule-job", {**EVERY, "maxCatchUp": 0}),
    ("schedule-job", {**EVERY, "maxCatchUp": 5000}),
    ("schedule-job", {**EVERY, "startAt": -1}),
    ("schedule-job", {**EVERY, "endAt": 10**16}),
    ("schedule-job", {**EVERY, "tool": "n" * 300}),
    ("schedule-job", {**EVERY, "timezone": "Z" * 100}),
    ("schedule-job", {"tool": "noop", "cron": "* " * 300}),
    ("pause-schedule", {"scheduleId": "s" * 300}),
    ("get-job-result", {"jobId": "x", "waitSeconds": 51}),
    ("list-jobs", {"limit": 501}),
    ("submit-job", {"tool": "noop", "maxRetries": 101}),
    ("submit-job", {"tool": "noop", "timeoutSeconds": 0}),
]
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("schedule-job", {"tool": "noop", "everySeconds": 1, "maxCatchUp": 1000, "startAt": 0}),
    ("schedule-job", {"tool": "noop", "cron": "@daily", "timezone": "Europe/Paris", "maxCatchUp": 1}),
    ("list-jobs", {"limit": 500}),
    ("submit-job", {"tool": "noop", "maxRetries": 100, "timeoutSeconds": 0.5}),
]


def schema_refuses(schema: dict[str, Any], arguments: dict[str, Any]) -> bool:
    return any(True for _ in jsonschema.Draft202012Validator(schema).iter_errors(arguments))


@pytest.mark.parametrize("mode", MODES)
async def test_what_the_server_refuses_by_shape_the_input_schema_refuses(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        answers = [(name, args, await client.call_tool(name, args)) for name, args in REFUSED + ACCEPTED]
    refused = [(name, args) for name, args, result in answers if result.is_error]
    assert refused == REFUSED, [(n, a, r.content) for n, a, r in answers if (n, a) in ACCEPTED and r.is_error]
    admitted_by_schema = [(name, args) for name, args in REFUSED if not schema_refuses(schemas[name], args)]
    assert not admitted_by_schema, f"the inputSchema admits what the server refuses: {admitted_by_schema}"
    refused_by_schema = [(name, args) for name, args in ACCEPTED if schema_refuses(schemas[name], args)]
    assert not refused_by_schema, f"the inputSchema refuses what the server accepts: {refused_by_schema}"
