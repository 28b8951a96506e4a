"""JobServer as a library: plain tools added by method or decorator are served as ordinary MCP tools."""

from __future__ import annotations

from mcp import Client
from mcp_types import TextContent

from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.settings import Settings


def shout(text: str) -> str:
    return text.upper()


async def test_plain_tools_answer_within_the_request() -> None:
    server = JobServer(settings=Settings(store_url="memory://"))
    server.add_plain_tool(shout, "shout", "Upper-cases a text")

    @server.tool(description="Adds two numbers")
    def add(a: int, b: int) -> int:
        return a + b

    async with server.manager, Client(server.build()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        loud = await client.call_tool("shout", {"text": "hi"})
        total = await client.call_tool("add", {"a": 2, "b": 3})
    assert tools["shout"].description == "Upper-cases a text"
    assert tools["add"].description == "Adds two numbers"
    assert isinstance(loud.content[0], TextContent) and loud.content[0].text == "HI"
    assert not total.is_error and total.structured_content == {"result": 5}
