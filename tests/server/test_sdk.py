"""server/sdk.py: every MCP SDK internal we rely on, against the SDK release it was checked with.

When mcp is upgraded the first test fails on purpose: run the others against the new release, read
server/sdk.py's notes again (a public hook may have appeared), then move SDK_VERSION.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from importlib.metadata import version
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, EmptyResult, SetLevelRequestParams, SubscribeRequestParams

from vibe_jobs.server.sdk import (
    SDK_VERSION,
    add_request_handler,
    add_tool_object,
    check_outputs_with,
    connection_of,
    spawn_stdio_server,
    stop_stdio_server,
)


def test_the_installed_sdk_is_the_one_sdk_py_was_checked_against() -> None:
    installed = version("mcp")
    # the minor series: pyproject pins mcp to it (>=2.3,<2.4), so a fresh install gets a checked release
    assert installed.split(".")[:2] == SDK_VERSION.split(".")[:2], (
        f"mcp {installed} is installed but src/vibe_jobs/server/sdk.py was checked against mcp {SDK_VERSION}: "
        "re-check each SDK internal it uses (the other tests in tests/server/test_sdk.py), then set SDK_VERSION"
    )


async def test_an_added_request_handler_is_served_and_its_capability_advertised() -> None:
    levels: list[str] = []

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        levels.append(str(params.level))
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        return EmptyResult()

    mcp: MCPServer[Any] = MCPServer("sdk-check")
    add_request_handler(mcp, "logging/setLevel", SetLevelRequestParams, set_level)
    add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, subscribe)
    async with Client(mcp, mode="legacy") as client:
        caps = client.server_capabilities
        assert caps is not None and caps.logging is not None
        assert caps.resources is not None and caps.resources.subscribe is True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MCPDeprecationWarning: logging is gone in 2026-07-28
            await client.set_logging_level("warning")
    assert levels == ["warning"]


async def test_connection_of_names_one_connection_across_its_requests() -> None:
    seen: list[tuple[str, object, object]] = []  # (uri, session, connection)

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        seen.append((str(params.uri), ctx.session, connection_of(ctx.session)))
        return EmptyResult()

    mcp: MCPServer[Any] = MCPServer("sdk-check")
    add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, subscribe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        async with Client(mcp, mode="legacy") as first, Client(mcp, mode="legacy") as second:
            await first.subscribe_resource("job://a")
            await first.subscribe_resource("job://b")
            await second.subscribe_resource("job://a")
    (_, session_a, conn_a), (_, session_b, conn_b), (_, _, conn_c) = seen
    assert session_a is not session_b  # a session is per request: it cannot key a subscriber
    assert conn_a is conn_b
    assert conn_c is not conn_a


async def test_a_tool_object_added_to_a_running_server_is_listed_and_called() -> None:
    from mcp.server.mcpserver.tools import Tool

    def shout(text: str) -> str:
        return text.upper()

    mcp: MCPServer[Any] = MCPServer("sdk-check")
    async with Client(mcp, mode="legacy") as client:
        assert not (await client.list_tools()).tools
        add_tool_object(mcp, Tool.from_function(shout, name="shout"))
        assert [t.name for t in (await client.list_tools()).tools] == ["shout"]
        result = await client.call_tool("shout", {"text": "hi"})
    assert [getattr(c, "text", None) for c in result.content] == ["HI"]


async def test_a_clients_output_check_uses_the_validator_given_built_once_per_schema() -> None:
    from jsonschema import Draft202012Validator
    from mcp.server.mcpserver.tools import Tool

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}

    def count(n: int) -> CallToolResult:
        return CallToolResult(content=[], structured_content={"n": n})

    mcp: MCPServer[Any] = MCPServer("sdk-check")
    add_tool_object(mcp, Tool.from_function(count, name="count", structured_output=False))
    mcp._tool_manager._tools["count"].fn_metadata.output_schema = schema
    built: list[dict[str, Any]] = []

    def build(output_schema: dict[str, Any]) -> Any:
        built.append(output_schema)
        return Draft202012Validator(output_schema)

    async with Client(mcp, mode="legacy") as client:
        check_outputs_with(client.session, build)
        await client.list_tools()
        assert (await client.call_tool("count", {"n": 1})).structured_content == {"n": 1}
        with pytest.raises(RuntimeError, match="Invalid structured content returned by tool count"):
            await client.call_tool("count", {"n": -1})
    assert built == [schema]


CHILD = """
import os, sys, time
print(os.environ.get("VJ_SECRET", "-"), os.environ.get("VJ_GIVEN", "-"), sys.stdin.readline().strip(), flush=True)
time.sleep(120)  # it ignores its closed stdin: the stop has to kill it
"""


async def test_a_stdio_server_is_spawned_with_the_given_environment_only_and_stopped_for_sure() -> None:
    """What `mcp.stdio_client` does with a process (proxy/wire.py keeps it): the child gets the SDK's safe
    variables and its own, not ours (a secret of the proxy's stays with it); a child that ignores its closed
    stdin is killed, with its process group."""
    os.environ["VJ_SECRET"] = "proxy-only"
    try:
        params = StdioServerParameters(command=sys.executable, args=["-c", CHILD], env={"VJ_GIVEN": "given"})
        with tempfile.TemporaryFile("w+") as errlog:
            process = await spawn_stdio_server(params, errlog)
    finally:
        del os.environ["VJ_SECRET"]
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send(b"ping\n")
    with anyio.fail_after(10):
        line = await process.stdout.receive()
    assert line.decode().split() == ["-", "given", "ping"]
    with anyio.fail_after(15):
        await stop_stdio_server(process)
    assert process.returncode is not None
