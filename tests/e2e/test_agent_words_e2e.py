"""The words an agent reads (tool descriptions, resource descriptions, answer texts), read from the real server
over stdio in both protocol eras, and each claim they make checked by doing what they say, literally."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, stdio_client_for
from tests.e2e.test_jobs_e2e import start, structured, texts
from vibe_jobs.server.control import CONTROL_TOOL_NAMES
from vibe_jobs.server.scheduletools import SCHEDULE_TOOL_NAMES
from vibe_jobs.server.wrap import JOB_NOTE

pytestmark = pytest.mark.timeout(120)


async def _finished(client: Client, job_id: str) -> dict[str, Any]:
    body = structured(await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 20}))
    assert body["status"] in {"completed", "failed", "cancelled"}, body
    return body


def _next_call(said: str, tool: str) -> dict[str, Any]:
    """The arguments a text tells the agent to call `tool` with next: `call TOOL with {...}` (JSON), or
    `call TOOL with NAME 'VALUE'` (one argument)."""
    found = re.search(rf"call {re.escape(tool)} with (\{{.*?\}})", said)
    if found:
        return dict(json.loads(found.group(1)))
    one = re.search(rf"call {re.escape(tool)} with (\w+) '([^']*)'", said)
    assert one, f"no 'call {tool} with ...' in: {said}"
    return {one.group(1): one.group(2)}


TOOLS = ["noop", "explode", "noop", "explode"]  # completed and failed jobs, interleaved


@pytest.mark.parametrize("mode", MODES)
async def test_following_list_jobs_more_hint_pages_on_through_the_same_filter(mode: str) -> None:
    """list-jobs said 'More: call list-jobs with cursor ...' and nothing of the filter: an agent that listed its
    failed jobs and did as told got the next page of every status (the cursor keeps only the position)."""
    async with stdio_client_for(mode) as client:
        made = [await start(client, tool, {"message": "boom"} if tool == "explode" else {}) for tool in TOOLS]
        for job_id in made:
            await _finished(client, job_id)
        failed = made[1::2]
        first = await client.call_tool("list-jobs", {"status": "failed", "limit": 1})
        assert [j["id"] for j in structured(first)["jobs"]] == [failed[1]], texts(first)
        told = _next_call(texts(first), "list-jobs")
        second = await client.call_tool("list-jobs", told)
    shown = [(j["id"], j["status"]) for j in structured(second)["jobs"]]
    assert shown == [(failed[0], "failed")], f"following {told} listed {shown}"


@pytest.mark.parametrize("mode", MODES)
async def test_recent_jobs_next_cursor_is_said_where_to_pass_and_pages_on_there(mode: str) -> None:
    """jobs://recent answers {jobs, nextCursor}, but a resource takes no cursor and its description did not say
    what nextCursor is for: an agent could not reach the jobs past the first page."""
    async with stdio_client_for(mode) as client:
        resources = {r.uri: r for r in (await client.list_resources()).resources}
        described = resources["jobs://recent"].description or ""
        ids = [await start(client, "noop", {}) for _ in range(51)]
        recent = json.loads((await client.read_resource("jobs://recent")).contents[0].text)  # type: ignore[union-attr]
        assert "list-jobs" in described and "cursor" in described, described
        older = await client.call_tool("list-jobs", {"cursor": recent["nextCursor"]})
    shown = recent["jobs"] + structured(older)["jobs"]
    assert len(recent["jobs"]) == 50 and sorted(j["id"] for j in shown) == sorted(ids), texts(older)
    # newest first; jobs made in the same millisecond come in id order (two quick calls can share one)
    newest_first = sorted(shown, key=lambda j: (j["createdAt"], j["id"]), reverse=True)
    assert [j["id"] for j in shown] == [j["id"] for j in newest_first]


def _generated_titles(schema: Any, where: str = "") -> list[str]:
    """The titles pydantic made up from a name (`jobId` -> "Jobid", a function's `__call__Arguments`): words an
    agent pays for in every tools/list that say nothing the property's name does not."""
    found: list[str] = []
    if isinstance(schema, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, dict) and sub.get("title") == key.title().replace("_", " "):
                found.append(f"{where}.{key}: {sub['title']}")
        for key, sub in schema.items():
            found += _generated_titles(sub, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += _generated_titles(sub, f"{where}[{i}]")
    return found


@pytest.mark.parametrize("mode", MODES)
async def test_tool_schemas_carry_no_titles_made_up_from_names(mode: str) -> None:
    """Every property's title was its name capitalised ("Jobid", "Maxfiles", "Errorrate5M") and every input schema
    was titled after a Python function ("__call__Arguments", "get_job_resultArguments"): 196 titles, 15% of the
    built-in server's tools/list, read by an agent on every connection and telling it nothing."""
    async with stdio_client_for(mode) as client:
        listed = (await client.list_tools()).tools
    ours = CONTROL_TOOL_NAMES | SCHEDULE_TOOL_NAMES  # and the job tools; a plain tool's schema is the SDK's
    tools = [t for t in listed if t.name in ours or JOB_NOTE in (t.description or "")]
    assert len(tools) > len(ours)
    made_up = [
        f"{tool.name}{found}"
        for tool in tools
        for found in _generated_titles(tool.input_schema, ".in") + _generated_titles(tool.output_schema, ".out")
    ]
    python_named = [f"{t.name}: {t.input_schema['title']}" for t in tools if "title" in t.input_schema]
    assert not made_up and not python_named, (made_up[:10], python_named)


@pytest.mark.parametrize("mode", MODES)
async def test_a_paused_schedule_is_not_said_to_fire_next(mode: str) -> None:
    """pause-schedule answered 'Schedule S paused; next firing at T.': an agent told the user it would run at T,
    and at T nothing ran (the tool's own description: 'it fires nothing until resumed')."""
    async with stdio_client_for(mode) as client:
        made = await client.call_tool("schedule-job", {"tool": "noop", "everySeconds": 1})
        schedule_id = structured(made)["scheduleId"]
        paused = await client.call_tool("pause-schedule", {"scheduleId": schedule_id})
        said, planned = texts(paused), structured(paused)["nextFireAt"]
        fired = await client.call_tool("submit-job", {"tool": "noop", "runAt": planned + 500})  # read past T
        await _finished(client, structured(fired)["jobId"])
        jobs = structured(await client.call_tool("list-jobs", {"toolName": "noop"}))["jobs"]
    ran = [j["id"] for j in jobs if j["id"] != structured(fired)["jobId"]]
    assert not ran, f"fired while paused: {ran}"  # what the description promises, so the answer must not say more
    assert "next firing" not in said and "resume-schedule" in said, said


def _descriptions(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["description"]] if isinstance(schema.get("description"), str) else []
        return own + [d for value in schema.values() for d in _descriptions(value)]
    if isinstance(schema, list):
        return [d for item in schema for d in _descriptions(item)]
    return []


# the code's words: a function (`redact_params`), the developers' reference ("the specification's TaskJob"), the
# Python side of a model ("the wire values"): a docstring written for this code's readers, shown to every agent
CODE_WORDS = re.compile(r"`[a-z]+_[a-z_]+`|specification|wire|frozen|operator CLI")


@pytest.mark.parametrize("mode", MODES)
async def test_schema_descriptions_speak_to_the_agent_not_of_the_code(mode: str) -> None:
    """The schemas' descriptions were the models' docstrings: 'Values are the wire values' (7 times), a schedule
    '`***` (`redact_params`)', submit-job's `dependencies` 'dependsOn by the specification's TaskJob name': an
    agent has no specification nor code to look these up in."""
    async with stdio_client_for(mode) as client:
        tools = (await client.list_tools()).tools
    said = {
        f"{tool.name}: {text}"
        for tool in tools
        for text in _descriptions(tool.input_schema) + _descriptions(tool.output_schema) + [tool.description or ""]
        if CODE_WORDS.search(text)
    }
    assert not said, sorted(said)


@pytest.mark.parametrize("mode", MODES)
async def test_a_run_past_its_tools_usual_time_is_not_read_every_second_to_the_end(mode: str) -> None:
    """The recommendation clamps to the time a run is expected to need (learned from the tool's runs); once a
    run went past it, the remaining time was 0 and every recommendation the base interval, for the rest of the
    run: after three `echo`s, an agent obeying it read a 10-minute `run-command` 600 times (each answer in its
    context) instead of about 25. Past its estimate, a run is expected to need about as long again as it
    overran: still never above the backoff, never below the base, and an obeying agent is never limited."""
    env = {"VIBE_JOBS_ALLOWED_COMMANDS": "echo,sleep", "VIBE_JOBS_POLL_BASE_MS": "200", "VIBE_JOBS_POLL_MAX_MS": "5000"}
    async with stdio_client_for(mode, env) as client:
        for _ in range(3):  # the tool's usual run: a few milliseconds
            await _finished(client, await start(client, "run-command", {"command": ["echo", "quick"]}))
        started = await client.call_tool("run-command", {"command": ["sleep", "1.6"]})
        body, intervals = structured(started), []
        while body.get("pollingRecommendation"):
            reco = body["pollingRecommendation"]
            intervals.append(reco["interval"])
            await anyio.sleep(max(0.0, reco["nextCheckTime"] / 1000 - time.time()))  # as told, to the ms
            body = structured(await client.call_tool("get-job-result", {"jobId": body["jobId"]}))
            assert not body.get("rateLimited"), (intervals, body)
    assert body["status"] == "completed", body
    assert max(intervals) > 200 and len(intervals) <= 6, intervals  # at the base: 9 reads


@pytest.mark.parametrize("mode", MODES)
async def test_a_failed_job_s_answer_says_its_error_once_beside_its_result(mode: str) -> None:
    """A failed job's get-job-result said its error three times (the heading, the result, and again as the first
    line of its diagnostics): the diagnostics block now leaves out what the answer said already."""
    async with stdio_client_for(mode) as client:
        job_id = await start(client, "explode", {"message": "the disk is on fire"})
        answer = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 20})
    said = [getattr(block, "text", "") for block in answer.content]
    assert answer.is_error and said[-1].startswith("Diagnostics:"), said
    assert "\n".join(said).count("ValueError: the disk is on fire") == 2, said  # the heading, the result
    assert "about to explode" in said[-1] and "raised at sample_tools.py" in said[-1], said
    diagnostics = structured(answer)["details"]["diagnostics"]
    assert diagnostics[0] == "ValueError: the disk is on fire", diagnostics  # the structured answer keeps them all
