"""The "everything" fixtures the official MCP conformance suite (`@modelcontextprotocol/conformance`, server
scenarios) expects of a server: tools with every kind of content, logging, progress, sampling and elicitation
inside a call, a JSON Schema 2020-12 input schema, static and templated resources, subscriptions, prompts with
arguments, images and resources, and completion.

Load it with `vibe-jobs serve --tools vibe_jobs.testing.everything` (what `make conformance` does); it is never
loaded by default. Everything here answers within the request (plain tools): the suite calls them directly.
The job tools, control tools and job resources of the server are all still there. Over streamable HTTP it also
keeps an in-memory event store (SSE event ids, a priming event and a `retry` hint, resumption with
`Last-Event-ID`), which the SSE polling scenario (SEP-1699) looks for.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import warnings
import wave
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp_types import (
    AudioContent,
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmbeddedResource,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)

from vibe_jobs.server.hooks import EXTRA_TOOLS, http_options, on_build
from vibe_jobs.testing.eventstore import MemoryEventStore

__all__ = ["AUDIO_WAV", "PNG_1X1", "register"]


def _png_1x1_red() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * 80)  # 10 ms of silence
    return buffer.getvalue()


PNG_1X1 = base64.b64encode(_png_1x1_red()).decode()
AUDIO_WAV = base64.b64encode(_wav_silence()).decode()
SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"


@contextmanager
def _deprecated_ok() -> Iterator[None]:
    """Logging, sampling and this elicitation are deprecated in 2026-07-28; the suite tests them on 2025-11-25."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# -- tools ---------------------------------------------------------------------------------------


def _image() -> ImageContent:
    return ImageContent(type="image", data=PNG_1X1, mime_type="image/png")


async def test_simple_text() -> str:
    return "This is a simple text response for testing."


async def test_image_content() -> CallToolResult:
    return CallToolResult(content=[_image()])


async def test_audio_content() -> CallToolResult:
    return CallToolResult(content=[AudioContent(type="audio", data=AUDIO_WAV, mime_type="audio/wav")])


def _resource(uri: str, text: str, mime: str) -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime, text=text))


async def test_embedded_resource() -> CallToolResult:
    resource = _resource("test://embedded-resource", "This is an embedded resource content.", "text/plain")
    return CallToolResult(content=[resource])


async def test_multiple_content_types() -> CallToolResult:
    data = json.dumps({"test": "data", "value": 123}, separators=(",", ":"))
    text = TextContent(type="text", text="Multiple content types test:")
    return CallToolResult(
        content=[text, _image(), _resource("test://mixed-content-resource", data, "application/json")]
    )


async def test_tool_with_logging(ctx: Context) -> str:
    for i, line in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
        if i:
            await anyio.sleep(0.05)
        with _deprecated_ok():
            await ctx.log("info", line)
    return "Tool with logging executed successfully"


async def test_error_handling() -> CallToolResult:
    text = TextContent(type="text", text="This tool intentionally returns an error for testing")
    return CallToolResult(content=[text], is_error=True)


async def test_tool_with_progress(ctx: Context) -> str:
    for i, value in enumerate((0.0, 50.0, 100.0)):
        if i:
            await anyio.sleep(0.05)
        await ctx.report_progress(value, 100.0)
    return "Tool with progress executed successfully"


async def test_sampling(prompt: str, ctx: Context) -> str:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    session = ctx.request_context.session
    with _deprecated_ok():
        result = await session.create_message(messages=[message], max_tokens=100, related_request_id=ctx.request_id)
    content = result.content
    text = content.text if isinstance(content, TextContent) else json.dumps(content.model_dump(mode="json"))
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> tuple[str, Any]:
    session = ctx.request_context.session
    result = await session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return result.action, result.content


async def test_elicitation(message: str, ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    action, content = await _elicit(ctx, message, schema)
    return f"User response: action={action}, content={json.dumps(content)}"


async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    action, content = await _elicit(ctx, "Please review and update the form fields with defaults", schema)
    return f"Elicitation completed: action={action}, content={json.dumps(content)}"


def _titled(prefix: str, titles: list[str]) -> list[dict[str, str]]:
    return [{"const": f"{prefix}{i + 1}", "title": title} for i, title in enumerate(titles)]


async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    options = ["option1", "option2", "option3"]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Untitled single-select", "enum": options},
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": _titled("value", ["First Option", "Second Option", "Third Option"]),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {"anyOf": _titled("value", ["First Choice", "Second Choice", "Third Choice"])},
            },
        },
        "required": [],
    }
    action, content = await _elicit(ctx, "Please select options from the enum fields", schema)
    return f"Elicitation completed: action={action}, content={json.dumps(content)}"


async def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
    return f"name={name!r}, address={address!r}"


SCHEMA_2020_12_INPUT: dict[str, Any] = {
    "$schema": SCHEMA_2020_12,
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


async def test_reconnection(ctx: Context) -> str:
    """Close this call's SSE stream mid-call (the client reconnects with Last-Event-ID), then answer."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    return "Reconnection test completed successfully"


TOOLS: list[tuple[Callable[..., Any], str]] = [
    (test_simple_text, "A tool that returns simple text"),
    (test_image_content, "A tool that returns an image"),
    (test_audio_content, "A tool that returns audio"),
    (test_embedded_resource, "A tool that returns an embedded resource"),
    (test_multiple_content_types, "A tool that returns text, an image and a resource"),
    (test_tool_with_logging, "A tool that logs three messages while it runs"),
    (test_error_handling, "A tool that always returns an error"),
    (test_tool_with_progress, "A tool that reports progress 0, 50, 100 of 100"),
    (test_sampling, "A tool that asks the client's model (sampling)"),
    (test_elicitation, "A tool that asks the user (elicitation)"),
    (test_elicitation_sep1034_defaults, "A tool that elicits with defaults for every primitive type"),
    (test_elicitation_sep1330_enums, "A tool that elicits with the five enum variants"),
    (test_reconnection, "A tool that closes its SSE stream mid-call, then answers"),
]


def _tool_2020_12() -> Tool:
    tool = Tool.from_function(
        json_schema_2020_12_tool, name="json_schema_2020_12_tool", description="Tool with JSON Schema 2020-12 features"
    )
    tool.parameters = SCHEMA_2020_12_INPUT  # advertised as written ($schema, $defs, additionalProperties kept)
    return tool


# -- resources, prompts, completion ---------------------------------------------------------------


def _add_resources(mcp: MCPServer[Any]) -> None:
    @mcp.resource(
        "test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", name="static-binary", description="A 1x1 PNG", mime_type="image/png")
    def static_binary() -> bytes:
        return base64.b64decode(PNG_1X1)

    @mcp.resource("test://watched-resource", name="watched-resource", description="A resource to subscribe to")
    def watched() -> str:
        return "Watched resource content."

    @mcp.resource(
        "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


def _add_prompts(mcp: MCPServer[Any]) -> None:
    @mcp.prompt(name="test_simple_prompt", description="A simple prompt without arguments")
    def simple() -> list[Message]:
        return [UserMessage("This is a simple prompt for testing.")]

    @mcp.prompt(name="test_prompt_with_arguments", description="A prompt with two required arguments")
    def with_arguments(arg1: str, arg2: str) -> list[Message]:
        return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]

    @mcp.prompt(name="test_prompt_with_embedded_resource", description="A prompt that embeds a resource")
    def with_resource(resourceUri: str) -> list[Message]:
        resource = _resource(resourceUri, "Embedded resource content for testing.", "text/plain")
        return [UserMessage(resource), UserMessage("Please process the embedded resource above.")]

    @mcp.prompt(name="test_prompt_with_image", description="A prompt with an image")
    def with_image() -> list[Message]:
        return [UserMessage(_image()), UserMessage("Please analyze the image above.")]


COMPLETIONS = {"arg1": ["paris", "park", "party", "test", "testing"], "id": ["123", "456"]}


async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
) -> Completion:
    values = [v for v in COMPLETIONS.get(argument.name, []) if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


@on_build
def register(mcp: MCPServer[Any]) -> None:
    """Add every fixture to `mcp` (called by `build_mcp` once this module is imported)."""
    _add_resources(mcp)
    _add_prompts(mcp)
    mcp.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is untyped


EXTRA_TOOLS.extend(Tool.from_function(fn, name=fn.__name__, description=text) for fn, text in TOOLS)
EXTRA_TOOLS.append(_tool_2020_12())
http_options.update(event_store=MemoryEventStore(), retry_interval=500)
