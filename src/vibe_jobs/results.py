"""CallToolResult-shaped values as plain dicts (the core does not import the MCP SDK)."""

from __future__ import annotations

import json
from typing import Any


def as_result_dict(value: Any) -> dict[str, Any]:
    """Normalise a CallToolResult (pydantic model) or dict into the wire dict form."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(value, dict):
        raise TypeError(f"a result must be a CallToolResult or a dict, not {type(value).__name__}")
    if not isinstance(value.get("content", []), list):
        raise TypeError("a result's 'content' must be a list")
    return value


def text_result(text: str, *, is_error: bool = False, structured: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def is_error(result: dict[str, Any] | None) -> bool:
    return bool(result and result.get("isError"))


def first_text(result: dict[str, Any] | None) -> str | None:
    """The first text block of a result, if any."""
    for block in (result or {}).get("content", ()):
        if isinstance(block, dict) and block.get("type") == "text":
            return str(block.get("text", ""))
    return None


_COMPACT = {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}
_ENCODER = json.JSONEncoder(**_COMPACT)  # type: ignore[arg-type]
_SORTED_ENCODER = json.JSONEncoder(sort_keys=True, **_COMPACT)  # type: ignore[arg-type]


def canonical_json(value: Any, *, sort_keys: bool = False) -> str:
    """Strict JSON (no NaN); raises TypeError/ValueError for what JSON cannot carry."""
    return (_SORTED_ENCODER if sort_keys else _ENCODER).encode(value)


def to_call_result(value: Any) -> dict[str, Any]:
    """A job function's return value as a CallToolResult dict.

    A CallToolResult passes through; a pydantic model or dict becomes structured content plus JSON
    text; a str becomes text; other JSON values become `{"result": value}`.
    """
    if _is_call_tool_result(value):
        return as_result_dict(value)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, str):
        return text_result(value)
    if value is None:
        return {"content": [], "isError": False}
    structured = value if isinstance(value, dict) else {"result": value}
    return text_result(canonical_json(value), structured=structured)


def _is_call_tool_result(value: Any) -> bool:
    if isinstance(value, dict):
        return "content" in value and set(value) <= {
            "content",
            "isError",
            "structuredContent",
            "_meta",
            "meta",
        }
    return type(value).__name__ == "CallToolResult" and hasattr(value, "content")
