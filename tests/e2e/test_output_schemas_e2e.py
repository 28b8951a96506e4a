"""Every structured answer a tool gives validates against the outputSchema it advertises.

Clients validate structuredContent against the tool's outputSchema even when isError is set (the TypeScript
SDK does, and then fails the call with -32602 instead of showing the refusal), so a refusal's
`{"error": {...}}` must match the advertised schema as much as a success does. Drives the real
`vibe-jobs serve` over stdio, both eras, with successes and refusals of every listed tool.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, stdio_client_for

pytestmark = pytest.mark.timeout(120)

CONTROL_TOOLS = ("get-job-result", "list-jobs", "cancel-job", "submit-job", "job-stats")
UNKNOWN = {"notAnArgument": 1}  # refused by every tool that checks its arguments itself
CALLS: dict[str, list[dict[str, Any]]] = {  # successes and refusals besides the unknown argument
    "sleepy": [{"seconds": 0.01, "steps": 1}, {"seconds": "soon"}, {}],
    "echo": [{"text": "hi"}, {"text": "hi", "count": "many"}],
    "noop": [{}],
    "plain-noop": [{}],
    "get-job-result": [{"jobId": "no-such-job"}],
    "cancel-job": [{"jobId": "no-such-job"}],
    "answer-job": [{"jobId": "no-such-job", "decline": True}],
    "submit-job": [
        {"tool": "echo", "arguments": {"text": "hi"}},
        {"tool": "no-such-tool"},
        {"tool": "echo", "arguments": {"text": "hi", "bogus": 1}},
        {"tool": "echo", "arguments": {"text": "hi"}, "runAt": 2_000_000_000_000, "deadline": 1},
    ],
    "list-jobs": [{}],
    "job-stats": [{}],
    "schedule-job": [{"tool": "echo", "arguments": {"text": "hi"}, "everySeconds": 3600}, {"tool": "no-such-tool"}],
    "list-schedules": [{}],
    "pause-schedule": [{"scheduleId": "no-such-schedule"}],
    "resume-schedule": [{"scheduleId": "no-such-schedule"}],
    "delete-schedule": [{"scheduleId": "no-such-schedule"}],
}


async def answers(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The call's structuredContent (None when it has none or the call is refused as a protocol error)."""
    try:
        result = await client.call_tool(name, arguments)
    except Exception:  # a protocol-level refusal (-32602) carries no structuredContent to check
        return None
    structured: dict[str, Any] | None = result.structured_content
    return structured


@pytest.mark.parametrize("mode", MODES)
async def test_every_answer_validates_against_the_advertised_output_schema(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        tools = (await client.list_tools()).tools
        job_id = (await client.call_tool("noop", {})).structured_content or {}
        calls = {**CALLS, "get-job-result": [*CALLS["get-job-result"], {"jobId": job_id.get("jobId")}]}
        checked: list[tuple[str, bool]] = []
        for tool in tools:
            if tool.output_schema is None:
                continue
            jsonschema.Draft202012Validator.check_schema(tool.output_schema)
            assert tool.output_schema["type"] == "object", tool.name  # MCP: an outputSchema is an object schema
            for arguments in [*calls.get(tool.name, []), UNKNOWN]:
                structured = await answers(client, tool.name, arguments)
                if structured is None:
                    continue
                errors = list(jsonschema.Draft202012Validator(tool.output_schema).iter_errors(structured))
                assert not errors, f"{tool.name}({arguments}) answered {structured}: {errors[0].message}"
                checked.append((tool.name, "error" in structured))
        refused = {name for name, is_error in checked if is_error}
        assert {"sleepy", "echo", "submit-job", "get-job-result"} <= refused  # the refusals were exercised
        assert {"sleepy", "echo", "submit-job"} <= {name for name, is_error in checked if not is_error}


@pytest.mark.parametrize("mode", MODES)
async def test_every_control_tool_advertises_an_output_schema_its_answers_fit(mode: str) -> None:
    """Issue 3: each control tool has input and output schemas. list-jobs and cancel-job had none."""
    async with stdio_client_for(mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        missing = sorted(name for name in CONTROL_TOOLS if tools[name].output_schema is None)
        assert not missing, f"control tools without an outputSchema: {missing}"
        job_id = str(((await client.call_tool("sleepy", {"seconds": 10})).structured_content or {})["jobId"])
        await client.call_tool("noop", {})
        answered = {
            "cancel-job": [
                await client.call_tool("cancel-job", {"jobId": job_id, "reason": "schema check"}),
                await client.call_tool("cancel-job", {"jobId": job_id}),  # finished: refused
            ],
            "list-jobs": [
                first := await client.call_tool("list-jobs", {"limit": 1}),
                await client.call_tool(
                    "list-jobs", {"limit": 1, "cursor": (first.structured_content or {})["nextCursor"]}
                ),
                await client.call_tool("list-jobs", {"status": "bogus"}),  # refused
            ],
        }
    assert [r.is_error for r in answered["cancel-job"]] == [False, True]
    assert [r.is_error for r in answered["list-jobs"]] == [False, False, True]
    for name, results in answered.items():
        schema = tools[name].output_schema
        assert schema is not None
        for result in results:
            structured = result.structured_content
            assert structured is not None, (name, result.content)
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(structured))
            assert not errors, f"{name} answered {structured}: {errors[0].message}"


@pytest.mark.parametrize("mode", MODES)
async def test_answer_job_advertises_an_output_schema_its_answers_fit(mode: str) -> None:
    """answer-job is a control tool (issue 3: each has input and output schemas); it advertised no outputSchema,
    so a client could not know or check the shape of its answer."""
    async with stdio_client_for(mode) as client:
        schema = next(t for t in (await client.list_tools()).tools if t.name == "answer-job").output_schema
        assert schema is not None, "answer-job advertises no outputSchema"
        job_id = str(((await client.call_tool("confirm", {})).structured_content or {})["jobId"])
        asked = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        assert (asked.structured_content or {}).get("waitingFor"), asked.content
        answers = [
            await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": "perhaps"}}),  # refused
            await client.call_tool("answer-job", {"jobId": job_id, "answer": {"confirm": True}}),
        ]
    assert [a.is_error for a in answers] == [True, False]
    for answer in answers:
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(answer.structured_content))
        assert not errors, f"answer-job answered {answer.structured_content}: {errors[0].message}"
