"""`vibe-jobs proxy` end to end, against real upstream servers no one here wrote: the reference
`@modelcontextprotocol/server-everything` (npm, on Node 22) and `mcp-server-time` (PyPI, in a venv of its own),
both installed by scripts/upstreams.sh. The real MCP client drives the real proxy over stdio, in both eras.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import PromptReference, ResourceTemplateReference

from tests.e2e.conftest import MODES
from tests.e2e.proxy_fixtures import (
    FAKE,
    Tap,
    direct_client,
    own_tools,
    proxy_args,
    proxy_client,
    started,
    status,
    temp_tap,
    texts,
    until,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LONG = "trigger-long-running-operation"
LONG_TEXT = "Long running operation completed. Duration: 4 seconds, Steps: 4."


@pytest.fixture
def tap() -> Iterator[Tap]:
    with temp_tap() as found:
        yield found


@pytest.mark.parametrize("mode", MODES)
async def test_every_upstream_tool_is_listed_with_its_schema_and_annotations(mode: str, everything: list[str]) -> None:
    async with direct_client(everything) as upstream:
        theirs = {t.name: t for t in (await upstream.list_tools()).tools}
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        ours = {t.name: t for t in (await client.list_tools()).tools}
    assert set(ours) == set(theirs) | await own_tools()
    assert {"get-job-result", "cancel-job"} <= await own_tools()
    for name, tool in theirs.items():
        assert ours[name].input_schema == tool.input_schema, name
        assert ours[name].annotations == tool.annotations, name
        assert ours[name].description == tool.description, name  # the same description (issue 21), no suffix
        assert ours[name].title == tool.title, name


@pytest.mark.parametrize("mode", MODES)
async def test_a_long_operation_answers_at_once_shows_progress_and_ends_with_the_upstreams_text(
    mode: str, everything: list[str]
) -> None:
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        await client.list_tools()
        began = time.monotonic()
        job_id = started(await client.call_tool(LONG, {"duration": 4, "steps": 4}))
        assert time.monotonic() - began < 1.0
        seen: list[float] = []
        with anyio.fail_after(30):
            while (msg := await status(client, job_id))["status"] not in ("completed", "failed"):
                if msg["status"] == "running" and msg.get("progress") is not None:
                    seen.append(msg["progress"])
                await anyio.sleep(0.2)  # sampling progress while it runs, under a deadline
        assert msg["status"] == "completed", msg
        assert any(0 < p < 100 for p in seen), seen
        assert texts(msg["result"]) == [LONG_TEXT]
        assert msg["result"]["isError"] is False


@pytest.mark.parametrize("mode", MODES)
async def test_echo_comes_back_as_the_upstream_answers_it(mode: str, everything: list[str]) -> None:
    async with direct_client(everything) as upstream:
        theirs = await upstream.call_tool("echo", {"message": "héllo, proxy"})
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        job_id = started(await client.call_tool("echo", {"message": "héllo, proxy"}))
        msg = await until(client, job_id, ("completed", "failed"))
    expected = theirs.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert msg["status"] == "completed"
    assert msg["result"] == {k: v for k, v in expected.items() if k in ("content", "structuredContent", "isError")}


@pytest.mark.parametrize("mode", MODES)
async def test_a_misspelt_or_mistyped_argument_is_refused_and_no_job_exists(mode: str, everything: list[str]) -> None:
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        misspelt = await client.call_tool("echo", {"mesage": "hi"})
        mistyped = await client.call_tool("get-sum", {"a": 1, "b": "two"})
        missing = await client.call_tool("get-sum", {"a": 1})
        jobs = await client.call_tool("list-jobs", {})
    assert misspelt.is_error and "'mesage' (did you mean 'message'?)" in texts(misspelt)[0]
    assert mistyped.is_error and "b: 'two' is not of type 'number'" in texts(mistyped)[0]
    assert missing.is_error and "'b' is a required property" in texts(missing)[0]
    assert jobs.structured_content is not None and jobs.structured_content["jobs"] == []


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_reaches_the_upstream_and_the_job_ends_cancelled(
    mode: str, everything: list[str], tap: Tap
) -> None:
    async with proxy_client(mode, proxy_args(everything, tap)) as client:
        job_id = started(await client.call_tool(LONG, {"duration": 60, "steps": 60}))
        await until(client, job_id, ("running",))
        wait_for(lambda: any(m.get("method") == "tools/call" for m in tap.received()))
        await client.call_tool("cancel-job", {"jobId": job_id, "reason": "test"})
        msg = await until(client, job_id, ("completed", "failed", "cancelled"))
    assert msg["status"] == "cancelled"
    call = next(m for m in tap.received() if m.get("method") == "tools/call")
    wait_for(lambda: any(_cancels(m, call["id"]) for m in tap.received()))


def _cancels(message: dict[str, Any], request_id: Any) -> bool:
    params = message.get("params") or {}
    return message.get("method") == "notifications/cancelled" and params.get("requestId") == request_id


@pytest.mark.parametrize("mode", MODES)
async def test_resources_and_prompts_read_through_the_proxy_match_the_upstreams(
    mode: str, everything: list[str]
) -> None:
    async with direct_client(everything) as upstream:
        resources = (await upstream.list_resources()).resources
        templates = (await upstream.list_resource_templates()).resource_templates
        prompts = (await upstream.list_prompts()).prompts
        read = await upstream.read_resource(resources[0].uri)
        templated = await upstream.read_resource("demo://resource/dynamic/text/2")
        prompt = await upstream.get_prompt("args-prompt", {"city": "Paris", "state": "TX"})
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        our_resources = [r for r in (await client.list_resources()).resources if not str(r.uri).startswith("job")]
        our_templates = [t for t in (await client.list_resource_templates()).resource_templates]
        our_prompts = (await client.list_prompts()).prompts
        our_read = await client.read_resource(resources[0].uri)
        our_templated = await client.read_resource("demo://resource/dynamic/text/2")  # listed by no one
        recent = await client.read_resource("jobs://recent")  # the proxy's own resources stay its own
        our_prompt = await client.get_prompt("args-prompt", {"city": "Paris", "state": "TX"})
    assert our_resources == resources
    assert [t for t in our_templates if not t.uri_template.startswith("job")] == templates
    assert our_prompts == prompts
    assert our_read.contents == read.contents
    assert _stamped(our_templated.contents) == _stamped(templated.contents)  # the upstream stamps the time it made it
    assert recent.contents and str(recent.contents[0].uri) == "jobs://recent"
    assert our_prompt.messages == prompt.messages


async def _completions(client: Client, prefix: str = "") -> list[list[str]]:
    """completion/complete of a prompt's arguments (the second given the first) and of a template's variable."""
    prompt = PromptReference(type="ref/prompt", name=f"{prefix}completable-prompt")
    template = ResourceTemplateReference(type="ref/resource", uri="demo://resource/dynamic/text/{resourceId}")
    asked = [
        await client.complete(prompt, {"name": "department", "value": "E"}),
        await client.complete(prompt, {"name": "name", "value": ""}, {"department": "Engineering"}),
        await client.complete(template, {"name": "resourceId", "value": "1"}),
    ]
    return [result.completion.values for result in asked]


@pytest.mark.parametrize("mode", MODES)
async def test_completions_pass_through_to_the_upstream(mode: str, everything: list[str]) -> None:
    """Issue 21: completions pass through. The proxy sent the upstream `{department: "E"}` as the argument
    (not `{name, value}`), so every completion/complete answered "Error completing argument department"."""
    async with direct_client(everything) as upstream:
        theirs = await _completions(upstream)
    async with proxy_client(mode, proxy_args(everything, None)) as client:
        ours = await _completions(client)
    named = ["-m", "vibe_jobs", "proxy", "--store", "memory://", "--upstream", f"ev={shlex.join(everything)}"]
    async with proxy_client(mode, named) as client:
        prefixed = await _completions(client, "ev.")
    assert theirs[0] == ["Engineering"] and theirs[1] and theirs[2], theirs
    assert ours == theirs and prefixed == theirs


def _stamped(contents: Any) -> list[tuple[str, str]]:
    return [(str(c.uri), str(getattr(c, "text", "")).split(" created at ")[0]) for c in contents]


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_killed_mid_job_idempotent_tool_runs_again_on_the_restarted_upstream(
    mode: str, everything: list[str], tap: Tap
) -> None:
    async with proxy_client(mode, proxy_args(everything, tap)) as client:
        job_id = started(await client.call_tool(LONG, {"duration": 4, "steps": 4}))
        await until(client, job_id, ("running",))
        wait_for(lambda: any(m.get("method") == "tools/call" for m in tap.received()))
        killed = tap.kill_upstream()
        msg = await until(client, job_id, ("completed", "failed", "cancelled"), seconds=60)
        assert msg["status"] == "completed", msg  # idempotentHint: true -> run again, as retry_safe
        assert texts(msg["result"]) == [LONG_TEXT]
        assert len(tap.pids()) >= 2 and killed not in tap.pids()[1:]
        echo = started(await client.call_tool("echo", {"message": "after"}))
        assert (await until(client, echo, ("completed",)))["result"]["content"][0]["text"] == "Echo: after"


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_killed_mid_job_fails_it_as_interrupted_and_the_next_call_is_served(mode: str, tap: Tap) -> None:
    async with proxy_client(mode, proxy_args(FAKE, tap)) as client:
        job_id = started(await client.call_tool("slow-write", {"seconds": 30}))
        await until(client, job_id, ("running",))
        wait_for(lambda: any(m.get("method") == "tools/call" for m in tap.received()))
        tap.kill_upstream()
        msg = await until(client, job_id, ("completed", "failed", "cancelled"))
        assert msg["status"] == "failed"
        assert "interrupted: upstream exited" in msg["message"]
        again = started(await client.call_tool("slow-write", {"seconds": 0}))
        assert texts((await until(client, again, ("completed",)))["result"]) == ["wrote after 0 s"]
    assert len(tap.pids()) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_an_upstream_error_of_code_32000_fails_its_job_only(mode: str, tap: Tap) -> None:
    """-32000 is also what the SDK reports for a closed connection: a live upstream answering it was taken for
    dead, restarted, and every job running on it failed as interrupted."""
    async with proxy_client(mode, proxy_args(FAKE, tap)) as client:
        slow = started(await client.call_tool("slow-write", {"seconds": 2}))
        await until(client, slow, ("running",))
        refused = started(await client.call_tool("refuse", {}))
        msg = await until(client, refused, ("completed", "failed", "cancelled"))
        assert msg["status"] == "failed" and "upstream refused: quota exceeded" in msg["message"], msg
        assert "interrupted" not in msg["message"]
        assert (await until(client, slow, ("completed", "failed", "cancelled")))["status"] == "completed"
    assert len(tap.pids()) == 1, "the upstream was restarted"


@pytest.mark.parametrize("mode", MODES)
async def test_a_python_upstream_from_pypi(mode: str, time_server: list[str]) -> None:
    async with direct_client(time_server) as upstream:
        theirs = {t.name: t for t in (await upstream.list_tools()).tools}
        converted = await upstream.call_tool(
            "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
    async with proxy_client(mode, proxy_args(time_server, None)) as client:
        ours = {t.name: t for t in (await client.list_tools()).tools}
        job_id = started(
            await client.call_tool(
                "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
            )
        )
        msg = await until(client, job_id, ("completed", "failed"))
        refused = await client.call_tool("get_current_time", {"timezone": 7})
    assert set(ours) == set(theirs) | await own_tools()
    assert msg["status"] == "completed"
    assert msg["result"]["content"] == converted.model_dump(mode="json", by_alias=True, exclude_none=True)["content"]
    assert refused.is_error and "timezone: 7 is not of type 'string'" in texts(refused)[0]
