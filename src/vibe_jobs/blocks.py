"""Content blocks and numbers as the MCP carries them, checked without the SDK (the core imports no MCP).

A job's sampling question is put to clients as a `sampling/createMessage` request and shown in `waitingFor`:
a block or an option the SDK's models refuse made every long-poll of the job fail for as long as it waited. So
what a job gives `JobContext.sample()` is checked here, field by field, against the shapes of the MCP's content
models (TextContent, ImageContent, AudioContent, ToolUseContent, ToolResultContent, ResourceLink,
EmbeddedResource, Annotations). tests/test_sampling_requests.py compares these checks with the SDK's own models
on generated inputs: what passes here, the SDK takes. Each problem is told as a short sentence (values cut at 80
characters) naming the block and the field.

The same checks decide which of a job's result blocks get-job-result shows as they are (`RESULT_BLOCKS`): one
that fails them made the whole answer fail, for every reader. Binary data (an image's, an audio's, a blob's) must
be base64 as a client decodes it: the TypeScript SDK's client refuses a whole message holding one that is not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from vibe_jobs.results import safe_text

__all__ = [
    "RESULT_BLOCKS",
    "SAMPLING_BLOCKS",
    "block_problem",
    "carried_block_problem",
    "finite_number",
    "fraction",
    "shown_blocks",
]

SAMPLING_BLOCKS = ("text", "image", "audio", "tool_use", "tool_result")  # what a SamplingMessage's content holds
RESULT_BLOCKS = ("text", "image", "audio", "resource_link", "resource")  # what a tool result's content holds
ROLES = ("user", "assistant")

Field = tuple[str, Callable[[Any], bool], str]  # a field's name, its check, and the words for what it must be


def finite_number(value: Any) -> bool:
    """A number JSON and the MCP's float fields take: not a bool, not NaN or infinite, no int past a float."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _object(value: Any) -> bool:
    """A JSON object: its keys are strings (the MCP's dict[str, Any] refuses any other, as JSON has none)."""
    return isinstance(value, Mapping) and all(isinstance(key, str) for key in value)


def _whole(value: Any) -> bool:
    """A whole number, as the MCP's int fields take it (5.0 too)."""
    return finite_number(value) and value == int(value)


def fraction(value: Any) -> bool:
    """A finite number from 0 to 1 (an annotation's priority, a model preference's)."""
    return finite_number(value) and 0 <= value <= 1


def _roles(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(role in ROLES for role in value)


def _icons(value: Any) -> bool:
    """A resource link's icons: a list of Icon {src, mimeType?, sizes?, theme?}."""
    return isinstance(value, list) and all(
        _object(icon) and _string(icon.get("src")) and _optional_problem(icon, _ICON_OPTIONAL, "icon") is None
        for icon in value
    )


_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
_ASCII_SPACE = str.maketrans("", "", "\t\n\f\r ")


def _base64(value: Any) -> bool:
    """Base64 as the WHATWG forgiving decoder (`atob`, what the TypeScript SDK checks with) takes it: ASCII
    whitespace ignored, padding optional, nothing outside the standard alphabet."""
    if not isinstance(value, str):
        return False
    data = value.translate(_ASCII_SPACE)
    if len(data) % 4 == 0:
        data = data[:-2] if data.endswith("==") else data.removesuffix("=")
    return len(data) % 4 != 1 and _BASE64.fullmatch(data) is not None


def _resource(value: Any) -> bool:
    """TextResourceContents or BlobResourceContents: a uri, and a text or a blob, all strings (a blob base64)."""
    if not isinstance(value, Mapping) or not _string(value.get("uri")):
        return False
    if not any(_string(value.get(k)) for k in ("text", "blob")):
        return False
    if value.get("blob") is not None and not _base64(value["blob"]):
        return False
    return _optional_problem(value, _CONTENTS_OPTIONAL, "resource") is None


_STRING, _OBJECT = "a string", "an object"
_REQUIRED: dict[str, tuple[Field, ...]] = {
    "text": (("text", _string, _STRING),),
    "image": (("data", _string, _STRING), ("mimeType", _string, _STRING)),
    "audio": (("data", _string, _STRING), ("mimeType", _string, _STRING)),
    "tool_use": (("id", _string, _STRING), ("name", _string, _STRING), ("input", _object, _OBJECT)),
    "tool_result": (("toolUseId", _string, _STRING),),
    "resource_link": (("uri", _string, _STRING), ("name", _string, _STRING)),
    "resource": (("resource", _resource, "an object with a uri and a text or a blob (strings; a blob base64)"),),
}
_ENCODED: dict[str, tuple[Field, ...]] = {kind: (("data", _base64, "base64"),) for kind in ("image", "audio")}
_ANNOTATIONS: tuple[Field, ...] = (
    ("audience", _roles, "a list of 'user' and 'assistant'"),
    ("priority", fraction, "a number from 0 to 1"),
    ("lastModified", _string, _STRING),
)
_EVERY_OPTIONAL: tuple[Field, ...] = (("annotations", _object, _OBJECT), ("_meta", _object, _OBJECT))
_OPTIONAL: dict[str, tuple[Field, ...]] = {
    "tool_result": (("isError", lambda v: isinstance(v, bool), "true or false"),),
    "resource_link": (
        ("title", _string, _STRING),
        ("description", _string, _STRING),
        ("mimeType", _string, _STRING),
        ("size", _whole, "a whole number"),
        ("icons", _icons, "a list of {src, mimeType, sizes, theme} objects (strings; sizes a list of them)"),
    ),
}
_ICON_OPTIONAL: tuple[Field, ...] = (
    ("mimeType", _string, _STRING),
    ("sizes", lambda v: isinstance(v, list) and all(map(_string, v)), "a list of strings"),
    ("theme", lambda v: v in ("light", "dark"), "'light' or 'dark'"),
)
_CONTENTS_OPTIONAL: tuple[Field, ...] = (("mimeType", _string, _STRING), ("_meta", _object, _OBJECT))
_READ_FIELDS = {kind: _REQUIRED[kind] for kind in ("text", "image", "audio")}


def block_problem(block: Any) -> str | None:
    """Why `block` is no content block a job can read (a text, image or audio block, or another typed one)."""
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        return f"a block is an object with a type, not {block!r:.80}"
    return _fields_problem(block, _READ_FIELDS.get(block["type"], ()), f"a {block['type']} block")


def carried_block_problem(block: Any, types: tuple[str, ...] = SAMPLING_BLOCKS) -> str | None:
    """Why `block` is no block of `types` the MCP's models take: its required fields, and its optional ones when
    given (a tool result's inner blocks too)."""
    if (problem := block_problem(block)) is not None:
        return problem
    kind, where = block["type"], f"a {block['type']} block"
    if kind not in types:
        return f"a block's type is one of {', '.join(types)}, not {kind!r:.80}"
    problem = _fields_problem(block, (*_REQUIRED.get(kind, ()), *_ENCODED.get(kind, ())), where) or _optional_problem(
        block, (*_EVERY_OPTIONAL, *_OPTIONAL.get(kind, ())), where
    )
    if problem is None and isinstance(block.get("annotations"), Mapping):
        problem = _optional_problem(block["annotations"], _ANNOTATIONS, f"{where}'s annotation")
    if problem is None and kind == "tool_result" and "content" in block:  # a list when given, never null
        inner = block["content"]
        if not isinstance(inner, list):
            return f"a tool_result block's content must be a list of blocks, not {inner!r:.80}"
        return next(filter(None, (carried_block_problem(b, RESULT_BLOCKS) for b in inner)), None)
    return problem


def shown_blocks(blocks: Any) -> list[dict[str, Any]]:
    """A job's result blocks as a reader is given them (get-job-result's content, `vibe_jobs.client`'s result):
    each the MCP can carry, as it is; another (a type it has no model for, a missing field, data that is not
    base64) as a text saying why. Sent or parsed as it was, one such block failed the whole answer for every
    reader, for as long as the job was kept."""
    shown: list[dict[str, Any]] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, Mapping):
            continue
        problem = carried_block_problem(block, RESULT_BLOCKS)
        if problem is None:
            shown.append(dict(block))
        else:
            kind = str(block.get("type"))[:80]
            shown.append(
                {"type": "text", "text": safe_text(f"[a {kind} block of the result cannot be shown: {problem}]")}
            )
    return shown


def _fields_problem(found: Mapping[str, Any], fields: tuple[Field, ...], where: str) -> str | None:
    for name, check, words in fields:
        if not check(found.get(name)):
            return f"{where}'s {name} must be {words}, not {found.get(name)!r:.80}"
    return None


def _optional_problem(found: Mapping[str, Any], fields: tuple[Field, ...], where: str) -> str | None:
    given = tuple(field for field in fields if found.get(field[0]) is not None)
    return _fields_problem(found, given, where)
