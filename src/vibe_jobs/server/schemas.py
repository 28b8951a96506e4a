"""Output schemas that clients can check cheaply.

Clients (the SDK's among them) validate every structured answer against the tool's advertised
outputSchema with a generic JSON Schema validator. pydantic's schemas use `$ref`s into `$defs` and
`anyOf [X, {"type": "null"}]` for optional fields; each `$ref` and `anyOf` branch costs a validator a
descent per value. `flat_schema` inlines the references and writes nullable fields as a type list:
the same set of valid instances, several times cheaper to validate on every call.

Clients validate even an isError answer's structured content (the TypeScript SDK does, and fails the
call with -32602 when it does not match), so `or_error` is the one rule for every advertised schema of a
tool whose refusals carry `{"error": {...}}` (`wrap.error_result`): the answer's shape or the error's.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def or_error(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema accepting `schema`'s instances or a refusal's `{"error": {...}}` (top level still
    `type: object`, as MCP requires; `$defs` stay at the top level, where the `$ref`s point)."""
    body = {key: value for key, value in schema.items() if key not in ("$defs", "title")}
    either: dict[str, Any] = {"type": "object", "anyOf": [body, ERROR_SCHEMA]}
    if "title" in schema:
        either["title"] = schema["title"]
    if "$defs" in schema:
        either["$defs"] = schema["$defs"]
    return either


def untitled(schema: dict[str, Any], *, top: bool = False) -> dict[str, Any]:
    """`schema` without the titles pydantic makes up from names (a property `jobId` titled "Jobid"), and without
    its own title when `top` (an input schema's is the arguments model's, named after a Python function:
    "__call__Arguments"). A title is an annotation: the schema admits the same instances, in fewer words that an
    agent reads on every tools/list. A title given on purpose (any other text) stays."""
    out: dict[str, Any] = _untitled(schema)
    if top:
        out.pop("title", None)
    return out


def _untitled(node: Any) -> Any:
    if isinstance(node, list):
        return [_untitled(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _untitled(value) for key, value in node.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        out["properties"] = {key: _without_made_up_title(key, sub) for key, sub in props.items()}
    return out


def _without_made_up_title(name: str, prop: Any) -> Any:
    if isinstance(prop, dict) and prop.get("title") == name.title().replace("_", " "):  # pydantic's, from the name
        return {key: value for key, value in prop.items() if key != "title"}
    return prop


def flat_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$ref`s inlined and nullable `anyOf`s folded (`$defs` dropped when unused)."""
    defs = schema.get("$defs", {})
    body = {key: value for key, value in schema.items() if key != "$defs"}
    try:
        flat: dict[str, Any] = _flatten(body, defs, ())
        return flat
    except _Recursive:
        return schema  # a recursive model cannot be inlined: keep it as it is


class _Recursive(Exception):
    pass


def _flatten(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_flatten(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else ""
        if name in seen or name not in defs or not _ANNOTATIONS.issuperset(set(node) - {"$ref"}):
            raise _Recursive(name)  # recursive, not local, or with sibling constraints: keep the schema as is
        target = _flatten(defs[name], defs, (*seen, name))
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out = {key: _flatten(value, defs, seen) for key, value in node.items()}
    return _fold_nullable(out)


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], ...}` -> X with "null" added to its type (and enum)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or _NULL not in branches:
        return node
    other = branches[0] if branches[1] == _NULL else branches[1]
    kind = other.get("type")
    if (
        not isinstance(kind, str)
        or not _FOLDABLE.issuperset(other)
        or not _ANNOTATIONS.issuperset(set(node) - {"anyOf"})
    ):
        return node  # only a single-typed branch of type-specific keywords folds exactly
    folded = {**other, **{k: v for k, v in node.items() if k != "anyOf"}, "type": [kind, "null"]}
    if "enum" in other and None not in other["enum"]:
        folded["enum"] = [*other["enum"], None]
    return folded


# keywords that say nothing about validity
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"})
# a branch made only of these (each applies to its own type, or is an annotation) may take "null" in its type
_FOLDABLE = _ANNOTATIONS | {
    "type", "enum", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "format", "minProperties", "maxProperties", "propertyNames", "patternProperties",
}  # fmt: skip
