"""CallToolResult-shaped values as plain dicts (the core does not import the MCP SDK)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any


def as_result_dict(value: Any) -> dict[str, Any]:
    """Normalise a CallToolResult (pydantic model) or dict into the wire dict form."""
    if type(value) is not dict:  # a dict: no failed attribute lookup, nothing more to ask
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not isinstance(value, dict):
            raise TypeError(f"a result must be a CallToolResult or a dict, not {type(value).__name__}")
    content = value.get("content", _NO_CONTENT)
    if content is not _NO_CONTENT and not isinstance(content, list):
        raise TypeError("a result's 'content' must be a list")
    return value


_NO_CONTENT: Any = object()


def text_result(text: str, *, is_error: bool = False, structured: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def first_text(result: dict[str, Any] | None) -> str | None:
    """The first text block of a result, if any."""
    for block in (result or {}).get("content", ()):
        if isinstance(block, dict) and block.get("type") == "text":
            return str(block.get("text", ""))
    return None


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_encoder(sort_keys: bool) -> Callable[[Any, int], Any]:
    """json's own C encoder, built once (json.dumps builds one per call, which costs more than encoding a
    small object). Without a markers table a cycle surfaces as RecursionError, turned into ValueError."""
    make = c_make_encoder or _make_iterencode_fallback
    return make(None, _refuse, encode_basestring, None, ":", ",", sort_keys, False, False)


def _make_iterencode_fallback(*args: Any) -> Callable[[Any, int], Any]:  # pragma: no cover - CPython has the C one
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=args[6])
    return lambda value, _level: encoder.iterencode(value)


_ENCODE = _make_encoder(False)
_ENCODE_SORTED = _make_encoder(True)


def canonical_json(value: Any, *, sort_keys: bool = False) -> str:
    """Strict compact JSON (no NaN); raises TypeError/ValueError for what JSON cannot carry (cycles too)."""
    if type(value) is str:
        return encode_basestring(value)  # the C encoder handles containers and scalars, not a bare str
    try:
        return "".join((_ENCODE_SORTED if sort_keys else _ENCODE)(value, 0))
    except RecursionError:
        raise ValueError("Circular reference detected (or nesting too deep)") from None


_FLAT_MAX = 8  # past this many keys the encoder is the quicker


def where_not_json(value: Any, depth: int = 0) -> str | None:
    """Where in `value` (a dotted path, `[i]` for a list's item) the first thing JSON cannot carry is: a NaN or an
    infinity, a string with a lone surrogate, a key of no JSON kind, an object of no JSON type. None: nowhere
    found (within 100 levels). Read only once a value was refused, to name the place."""
    if depth > 100:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _at(f".{key}", item, depth) if _fits(key) and not isinstance(key, float) else f".{key!r}"
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := _at(f"[{i}]", item, depth)) is not None:
                return found
        return None
    return None if _fits(value) else ""


def _at(step: str, item: Any, depth: int) -> str | None:
    inner = where_not_json(item, depth + 1)
    return None if inner is None else step + inner


def _fits(leaf: Any) -> bool:
    """A leaf JSON carries: None, a bool, an int, a finite float, a string without a lone surrogate."""
    if isinstance(leaf, float):
        return math.isfinite(leaf)
    if isinstance(leaf, str):
        try:
            leaf.encode()
        except UnicodeEncodeError:
            return False
        return True
    return leaf is None or isinstance(leaf, bool | int)


def json_size(value: Any) -> int:
    """The UTF-8 size of `canonical_json(value)`, raising as it does (and UnicodeEncodeError for a lone surrogate).

    A small flat object of ASCII strings, ints, bools and None (what tool arguments mostly are) is
    measured without being encoded: running json's encoder costs more than the arguments are worth
    (bench/MEASUREMENTS.md).
    """
    size = _flat_size(value) if type(value) is dict and len(value) <= _FLAT_MAX else None
    if size is None:
        text = canonical_json(value)
        size = len(text) if text.isascii() else len(text.encode())
    return size


def _flat_size(obj: dict[Any, Any]) -> int | None:
    """`json_size` of a flat object of ASCII strings, ints, bools and None; None for anything else."""
    size = 1 + 2 * len(obj) if obj else 2  # braces, a colon per member and a comma between members
    for key in obj:
        if type(key) is not str or not key.isascii():
            return None
        value = obj[key]
        kind = type(value)
        if kind is str and value.isascii():
            size += len(encode_basestring(value))
        elif kind is int:
            size += len(str(value))  # what the encoder writes (it raises likewise past the digit limit)
        elif value is None or value is True:
            size += 4
        elif value is False:
            size += 5
        else:
            return None
        size += len(encode_basestring(key))
    return size


def to_call_result(value: Any) -> dict[str, Any]:
    """A job function's return value as a CallToolResult dict.

    A CallToolResult passes through; a pydantic model or dict becomes structured content plus JSON
    text; a str becomes text; other values become `{"result": value}`. A value's result is made what a stored
    result may be here, and measured (`_value_result`): storing it (`bounded_result`) does not walk or encode
    it again.
    """
    if _is_call_tool_result(value):
        return as_result_dict(value)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, str):
        return text_result(value)
    if value is None:
        return {"content": [], "isError": False}
    return _value_result(value)


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


# -- what a stored result may be: JSON-safe and bounded (one rule, applied where a result is stored) --------

# Deeper than this is not a result anyone reads, and its readers fail on it well before the JSON encoders
# give up (near 1,000): the MCP Python client could not parse an answer holding a result 250 levels deep.
_MAX_DEPTH = 100
# At most this many values in a result, counted as its encoder walks it: a value referred to from n places
# counts n times. A few lists holding each other twice, 40 deep, are 2^40 values to every reader; a cycle is
# endless. A million values are at least 2 MB of JSON.
_MAX_VALUES = 1_000_000
CYCLE = "<cycle>"
TOO_DEEP = "<nested too deep>"
TOO_MANY = "<too many values>"


def encodable(text: str) -> bool:
    """Is `text` valid Unicode (no lone surrogate), so that it can be written as UTF-8?"""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def safe_text(text: str) -> str:
    """`text` as valid Unicode: a lone surrogate (from a file name or bytes that were not UTF-8) becomes its
    escape, `\\udcff`, instead of making the whole answer unencodable."""
    return text if encodable(text) else text.encode("utf-8", "backslashreplace").decode()


def described(obj: object, how: Callable[[object], str] = repr) -> str:
    """`how(obj)` (`repr` or `str`), or `<Type: how() failed>` when the object's own method raises (anything: a
    tool's object raising SystemExit there must not end the server when its job's outcome is written)."""
    try:
        return how(obj)
    except BaseException:
        return f"<{type(obj).__name__}: {getattr(how, '__name__', 'text')}() failed>"


def json_safe(value: Any) -> Any:
    """`value` with everything JSON (as UTF-8) cannot carry replaced: lone surrogates escaped, NaN and
    infinities as null, keys as text, other objects by their repr; a container met again inside itself
    becomes `<cycle>`, nesting past `_MAX_DEPTH` `<nested too deep>`, and after `_MAX_VALUES` values the rest
    of each open container one `<too many values>`."""
    return _SafeCopy().copy(value, 0)


class _SafeCopy:
    """One `json_safe` walk: the containers on the way down (a cycle), the values still allowed and the limits
    that cut the value (`cuts`: "maxValues", "maxDepth")."""

    __slots__ = ("cuts", "left", "path")

    def __init__(self) -> None:
        self.path: set[int] = set()
        self.left = _MAX_VALUES - _MAX_DEPTH  # room for one TOO_MANY in each container open when it runs out
        self.cuts: set[str] = set()

    def copy(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return safe_text(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if value.bit_length() < 4000 else "<integer too large>"
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if not isinstance(value, dict | list | tuple):
            return safe_text(described(value)[:1000])
        if depth >= _MAX_DEPTH:
            self.cuts.add("maxDepth")
            return TOO_DEEP
        if id(value) in self.path:
            return CYCLE
        self.path.add(id(value))
        try:
            return self._dict(value, depth + 1) if isinstance(value, dict) else self._list(value, depth + 1)
        finally:
            self.path.discard(id(value))

    def _dict(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if self.left <= 0:
                out[TOO_MANY] = None
                self.cuts.add("maxValues")
                break
            self.left -= 1
            out[safe_text(described(key, str))] = self.copy(item, depth)
        return out

    def _list(self, value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
        out: list[Any] = []
        for item in value:
            if self.left <= 0:
                out.append(TOO_MANY)
                self.cuts.add("maxValues")
                break
            self.left -= 1
            out.append(self.copy(item, depth))
        return out


def _json_sized(value: Any) -> tuple[str, int]:
    """`canonical_json(value)` and its UTF-8 size (raising UnicodeEncodeError for a lone surrogate)."""
    text = canonical_json(value)
    return text, len(text) if text.isascii() else len(text.encode())


def _encoded_size(value: Any) -> int:
    return _json_sized(value)[1]


_PLAIN_KEYS = frozenset({"content", "isError"})
_PLAIN_BLOCKS = 8
_BLOCK_OVERHEAD = 32  # {"type":"text","text":""} and a comma


def _plain_text_within(result: dict[str, Any], max_bytes: int) -> bool:
    """True when `result` is surely JSON-safe and within `max_bytes` without encoding it: a few text blocks
    of ASCII (each character is at most 6 bytes of JSON, as \\u001f) and a bool. What most job tools return;
    anything else is measured by encoding it."""
    if not _PLAIN_KEYS.issuperset(result) or type(result.get("isError", False)) is not bool:
        return False
    content = result.get("content", ())
    if type(content) is not list or len(content) > _PLAIN_BLOCKS:
        return False
    size = 64  # braces, keys, the bool
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text":
            return False
        text = block.get("text")
        if type(text) is not str or not text.isascii():
            return False
        size += _BLOCK_OVERHEAD + 6 * len(text)
    return size <= max_bytes


def bounded_result(result: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The result as a job stores it: JSON-safe (`json_safe`), marked when a limit of that walk cut it
    (`_made_safe`), and at most `max_bytes` of JSON. A larger one is replaced by the start of its text and a
    truncation marker, in the text and in `structuredContent` (`truncated`, `originalBytes`, `maxResultBytes`,
    and the walk's limits that cut it). A result `to_call_result` made of a plain value is made so already, and
    measured: it is not walked or encoded again; any other dict is."""
    if type(result) is _Stored:
        safe, size, cuts = dict(result), result.size, result.cuts
    elif _plain_text_within(result, max_bytes):
        return result
    else:
        safe, size, cuts = _made_safe(result)
    return safe if size <= max_bytes else _cut_to_size(safe, size, max_bytes, cuts)


def _cut_to_size(result: dict[str, Any], size: int, max_bytes: int, cuts: set[str]) -> dict[str, Any]:
    note = (
        f"[result truncated: {size:,} bytes of JSON, over the limit of {max_bytes:,} bytes "
        "(VIBE_JOBS_MAX_RESULT_BYTES); the text above is its start]"
    )
    marker = {"truncated": True, "originalBytes": size, "maxResultBytes": max_bytes, **_limits(cuts)}
    return truncated_result(result, max_bytes, note, marker)


class _Stored(dict[str, Any]):
    """A result made what a stored result may be (`_made_safe`) by this module's own code (`_value_result`), with
    its `size` in bytes of JSON and the `cuts` it says it had, so that `bounded_result` keeps it without walking
    or encoding it again. Only this module makes one (and nothing changes it: its size would be wrong); a dict
    from anywhere else is walked and measured."""

    __slots__ = ("cuts", "size")

    def __init__(self, result: dict[str, Any], size: int, cuts: set[str]) -> None:
        super().__init__(result)
        self.size, self.cuts = size, cuts


def _value_result(value: Any) -> dict[str, Any]:
    """A plain value's result (`to_call_result`): its JSON as text and, as structured content, itself (a dict)
    or `{"result": value}`, made what a stored result may be and measured. When the whole result is within
    the limits (`_unwieldy`) and the encoder takes the value as it is (what a job's dict mostly is), that is
    one walk and one encoding of the value; else the value is made safe for its text (`safe_json`), then the
    result as any result is."""
    wrap = not isinstance(value, dict)
    if not _unwieldy(_shaped(value, "", wrap)):  # a text is one value, whatever it holds: "" stands for it
        try:
            text, size = _json_sized(value)
        except (TypeError, ValueError):
            pass
        else:  # the result's JSON is its shell's, the value's JSON in place of the empty dict standing for it
            size += _encoded_size(_shaped({}, text, wrap)) - len("{}")
            # its structured content read back from that JSON, not the tool's own objects: a tool that goes on
            # writing to what it returned (shared state, a task it left) would change what was measured
            return _Stored(_shaped(json.loads(text), text, wrap), size, set())
    value, text, _size, cuts = safe_json(value)
    return _Stored(*_made_safe(_shaped(value, text, wrap), cuts))


def _shaped(value: Any, text: str, wrap: bool) -> dict[str, Any]:
    return text_result(text, structured={"result": value} if wrap else value)


def _made_safe(result: dict[str, Any], cuts: set[str] | None = None) -> tuple[dict[str, Any], int, set[str]]:
    """`result` JSON-safe (`safe_json`) and saying so when a limit of that walk cut it (here, or its value before,
    for its text: `cuts`), its size in bytes of JSON, and the limits that cut it. A cycle made `<cycle>` is not a
    cut: every value is there, as NaN made null is."""
    safe, _text, size, more = safe_json(result)
    cuts = more | (cuts or set())
    if not cuts:
        return safe, size, cuts
    marked = _marked(safe, cuts)
    return marked, _encoded_size(marked), cuts


# what a cut result says in its structured content (`truncated` and each limit, as a cut to size names its own)
# and in its text
_LIMITS = {"maxValues": _MAX_VALUES, "maxDepth": _MAX_DEPTH}
_CUT_NOTES = {
    "maxValues": f"cut to {_MAX_VALUES:,} values (one referred to from n places counts n times): "
    f'each container still open there ends with "{TOO_MANY}"',
    "maxDepth": f'cut at {_MAX_DEPTH} levels of nesting: a container deeper is "{TOO_DEEP}"',
}


def _limits(cuts: set[str]) -> dict[str, int]:
    return {name: limit for name, limit in _LIMITS.items() if name in cuts}


def _marked(result: dict[str, Any], cuts: set[str]) -> dict[str, Any]:
    """`result` saying which limits cut it: `truncated` and each limit in its structured content (made for it
    when there is none), and a note in a text block of its own (a dict's JSON text stays JSON). Content that is
    not a list, or structured content that is not an object, is left as it is."""
    note = "[result truncated: " + "; ".join(_CUT_NOTES[name] for name in _LIMITS if name in cuts) + "]"
    marked = dict(result)
    content, structured = result.get("content", []), result.get("structuredContent")
    if isinstance(content, list):
        marked["content"] = [*content, {"type": "text", "text": note}]
    if structured is None or isinstance(structured, dict):
        marked["structuredContent"] = {**(structured or {}), "truncated": True, **_limits(cuts)}
    return marked


def safe_json(value: Any) -> tuple[Any, str, int, set[str]]:
    """`value` as JSON carries it, its JSON text, that text's UTF-8 size and the limits that cut it (`_SafeCopy`).
    Made safe (`json_safe`) first when it is unwieldy (`_unwieldy`: walking it would never end, or no reader could
    parse it), else when the encoder refuses it: NaN, a lone surrogate (UnicodeEncodeError), a foreign object."""
    if not _unwieldy(value):
        try:
            return value, *_json_sized(value), set()
        except (TypeError, ValueError):
            pass
    walk = _SafeCopy()
    value = walk.copy(value, 0)
    return value, *_json_sized(value), walk.cuts


def readable(value: Any, text: str) -> Any:
    """`value`, decoded from `text`, cut past `_MAX_DEPTH` levels (`json_safe`) when it nests that deep: what a
    store reads back (a result stored before the cut, or written by hand) is what its readers can parse."""
    if text.count("{") + text.count("[") > _MAX_DEPTH and _unwieldy(value):
        return json_safe(value)
    return value


_CONTAINERS = (dict, list, tuple)


def _unwieldy(value: Any) -> bool:
    """Whether containers nest in `value` more than `_MAX_DEPTH` levels deep or it holds more than `_MAX_VALUES`
    values as an encoder walks it (a cycle does both): what `json_safe` cuts. Iterative (no recursion limit),
    and it stops at either limit, so a value with shared references costs at most the budget. Level by level:
    half the cost of a stack of (container, depth) pairs (bench/stored_result.py)."""
    left = _MAX_VALUES
    level = [value] if isinstance(value, _CONTAINERS) else []
    for _depth in range(_MAX_DEPTH):
        below: list[Any] = []
        for item in level:
            inner = item.values() if isinstance(item, dict) else item
            left -= len(inner)
            if left < 0:
                return True
            below += [x for x in inner if isinstance(x, _CONTAINERS)]
        if not below:
            return False
        level = below
    return True


# An answer that shows a result holds it up to three times: its text blocks, and in the structured status message
# the result's content and its structuredContent (which a dict result's text repeats).
ANSWER_COPIES = 3
ANSWER_SLACK = 16 * 1024  # the rest of an answer: the status text, the message's other fields, the JSON-RPC frame


def within_answer(result: dict[str, Any], max_bytes: int, whole_from: str, taken: int = 0) -> dict[str, Any]:
    """A stored result as an answer of at most `max_bytes` shows it, `taken` of them by the rest of the answer:
    whole when its copies fit, else its start with a note saying how large it is and where it is read whole
    (`whole_from`)."""
    budget = max(4096, (max_bytes - taken) // ANSWER_COPIES - ANSWER_SLACK)
    if _plain_text_within(result, budget) or (size := _encoded_size(result)) <= budget:
        return result
    note = (
        f"[shown in part: the result is {size:,} bytes of JSON, more than one answer here carries "
        f"({max_bytes:,} bytes, VIBE_JOBS_MAX_ANSWER_BYTES); the text above is its start. Whole: {whole_from}]"
    )
    structured = {"truncated": True, "originalBytes": size, "maxAnswerBytes": max_bytes}
    return truncated_result(result, budget, note, structured)


def truncated_result(result: dict[str, Any], max_bytes: int, note: str, structured: dict[str, Any]) -> dict[str, Any]:
    """The start of `result`'s text and `note`, with `structured` as its structured content, within `max_bytes`
    of JSON."""
    texts = [b.get("text", "") for b in result.get("content", ()) if isinstance(b, dict) and b.get("type") == "text"]
    whole = "\n".join(str(t) for t in texts).encode()
    budget = max(0, max_bytes - len(note) - 200)
    while True:  # JSON escapes may make the text longer than its bytes: halve until it fits
        preview = whole[:budget].decode(errors="ignore")
        block = {"type": "text", "text": f"{preview}\n{note}" if preview else note}
        cut = {"content": [block], "structuredContent": structured, "isError": bool(result.get("isError"))}
        if budget == 0 or _encoded_size(cut) <= max_bytes:
            return cut
        budget //= 2
