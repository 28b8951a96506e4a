"""The conformance fixtures (`--tools vibe_jobs.testing.everything`) through the real client, and their absence
from a default server. `make conformance` runs the official suite against them; this is the quick check."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    PromptReference,
    TextContent,
)

from tests.e2e.conftest import stdio_params


@asynccontextmanager
async def everything(mode: str, **callbacks: Any) -> AsyncIterator[Client]:
    params = stdio_params()
    params = StdioServerParameters(
        command=params.command, args=[*params.args, "--tools", "vibe_jobs.testing.everything"], env=params.env,
        cwd=params.cwd,
    )  # fmt: skip
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=60, **callbacks) as c:
            yield c


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def answer_sampling(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="forty-two"), model="m")


async def answer_elicitation(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.org"})


async def test_the_fixtures_answer_through_the_real_client() -> None:
    async with everything("legacy", sampling_callback=answer_sampling, elicitation_callback=answer_elicitation) as c:
        assert text_of(await c.call_tool("test_sampling", {"prompt": "the answer?"})) == "LLM response: forty-two"
        elicited = text_of(await c.call_tool("test_elicitation", {"message": "who?"}))
        assert elicited == 'User response: action=accept, content={"username": "ada", "email": "ada@example.org"}'
        tools = {t.name: t for t in (await c.list_tools()).tools}
        schema = tools["json_schema_2020_12_tool"].input_schema
        assert schema["$schema"].endswith("2020-12/schema") and "address" in schema["$defs"]
        assert schema["additionalProperties"] is False
        assert "sleepy" in tools and "get-job-result" in tools  # the job server is all still there
        read = await c.read_resource("test://template/123/data")
        assert read.contents[0].text == '{"id":"123","templateTest":true,"data":"Data for ID: 123"}'  # type: ignore[union-attr]
        prompt = await c.get_prompt("test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"})
        assert prompt.messages[0].content.text == "Prompt with arguments: arg1='hello', arg2='world'"  # type: ignore[union-attr]
        done = await c.complete(
            PromptReference(type="ref/prompt", name="test_prompt_with_arguments"), {"name": "arg1", "value": "par"}
        )
        assert done.completion.values == ["paris", "park", "party"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_default_server_has_none_of_them(mode: str) -> None:
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(stdio_params(), errlog=errlog), mode=mode, read_timeout_seconds=60) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert not any(name.startswith("test_") for name in names) and "json_schema_2020_12_tool" not in names
            assert (await c.list_prompts()).prompts == []
