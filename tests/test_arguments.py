"""A job tool's arguments model: typed values from stored JSON, JSON from a caller's arguments, and errors
that name each unknown, missing or mistyped argument (and, for unknown ones, the accepted ones)."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from tests.arg_types import RAW, TYPED, Color, Shape, arrived, typed
from vibe_jobs.arguments import MAX_NAME_CHARS, MAX_UNKNOWN_SHOWN, ToolArguments
from vibe_jobs.context import JobContext
from vibe_jobs.errors import BadJobTool, InvalidArguments, InvalidParams

ARGS = ToolArguments("typed", typed)


def refusal(arguments: Any, args: ToolArguments = ARGS) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as info:
        args.check(arguments)
    return info.value


def test_stored_json_becomes_the_types_the_function_declares() -> None:
    kwargs = ARGS.typed(RAW)
    assert arrived(**kwargs) == TYPED
    assert kwargs == {"count": 3, "where": Path(RAW["where"]), "color": Color.BLUE, "shape": Shape(sides=4)}


def test_a_callers_arguments_are_stored_as_json_with_the_defaults() -> None:
    stored = ARGS.check(RAW)
    assert stored == {**RAW, "count": 3, "shape": {"sides": 4, "label": "polygon"}}
    assert ARGS.typed(stored) == ARGS.typed(RAW), "what is stored validates to the same values"


def test_unknown_arguments_are_refused_naming_each_and_the_accepted_ones() -> None:
    exc = refusal({**RAW, "second": 5, "colour": "red"})
    assert exc.unknown == ["second", "colour"]
    assert exc.accepted == ["count", "where", "color", "shape"]
    assert str(exc) == (
        "Invalid arguments for 'typed': unknown arguments 'second', 'colour' (did you mean 'color'?). "
        "Accepted arguments: count, where, color, shape"
    )
    assert isinstance(exc, InvalidParams) and exc.code == "invalid_params"
    assert exc.retryable is False


def test_a_huge_unknown_argument_is_refused_in_a_short_message() -> None:
    name = "n" * 1_000_000
    exc = refusal({**RAW, "padding": "p" * 2_000_000, name: 1, **{f"extra{i}": i for i in range(50)}})
    assert "'padding'" in str(exc) and len(str(exc)) < 2_000
    assert len(exc.unknown) == MAX_UNKNOWN_SHOWN and "and 42 more" in str(exc)
    assert exc.unknown[1] == "n" * MAX_NAME_CHARS + "..."


def test_missing_and_mistyped_arguments_name_the_field() -> None:
    missing = refusal({"where": "/tmp", "color": "red", "shape": {"sides": 3}})
    assert str(missing) == "Invalid arguments for 'typed': count: Field required"
    assert missing.unknown == []
    mistyped = refusal({**RAW, "count": "three", "shape": {"sides": "x"}})
    assert "count: Input should be a valid integer" in str(mistyped)
    assert "shape.sides: Input should be a valid integer" in str(mistyped)
    wrong_enum = refusal({**RAW, "color": "green"})
    assert "color: Input should be 'red' or 'blue'" in str(wrong_enum)


def test_arguments_that_are_not_an_object_are_refused() -> None:
    assert str(refusal(["count"])) == "Invalid arguments for 'typed': arguments must be an object, not list"


def test_a_structured_argument_sent_as_json_text_is_parsed_first() -> None:
    # as the MCP SDK does for a tool's arguments: some clients send objects and lists as JSON strings
    assert ARGS.typed({**RAW, "shape": '{"sides": 5}'})["shape"] == Shape(sides=5)
    assert "shape: Input should be a valid dictionary" in str(refusal({**RAW, "shape": "5"}))


def test_the_context_parameter_is_no_argument() -> None:
    async def with_context(path: str, job: JobContext, depth: int = 1) -> None: ...

    args = ToolArguments("ctx", with_context, skip="job")
    assert args.accepted == ["path", "depth"]
    assert "unknown argument 'job'" in str(refusal({"path": ".", "job": 1}, args))


def test_a_parameter_named_like_a_model_method_keeps_its_name() -> None:
    def shadowing(json: str, copy: int = 0) -> None: ...

    args = ToolArguments("shadowing", shadowing)
    assert args.accepted == ["json", "copy"]
    assert args.typed({"json": "{}", "copy": "2"}) == {"json": "{}", "copy": 2}
    assert args.check({"json": "x"}) == {"json": "x", "copy": 0}


def test_no_arguments_means_none_are_accepted() -> None:
    def noop() -> None: ...

    args = ToolArguments("noop", noop)
    assert args.typed({}) == {}
    assert (
        str(refusal({"x": 1}, args)) == "Invalid arguments for 'noop': unknown argument 'x'. 'noop' takes no arguments"
    )


def test_a_signature_that_cannot_take_its_arguments_by_keyword_is_refused_when_declared() -> None:
    def variadic(*items: int) -> None: ...

    def keywords(**options: int) -> None: ...

    def private(_secret: int) -> None: ...

    for fn in (variadic, keywords, private):
        with pytest.raises(TypeError, match=f"job tool {fn.__name__}: parameter"):
            ToolArguments(fn.__name__, fn)


class _Size(typing.TypedDict):  # typing's, which pydantic cannot validate before Python 3.12
    width: int


def test_a_parameter_type_pydantic_cannot_validate_is_refused_naming_the_tool_and_parameter() -> None:
    """A `typing.TypedDict` parameter on Python 3.11 raised pydantic's own PydanticUserError ("Please use
    `typing_extensions.TypedDict`...") out of the model's making, naming neither the tool nor the parameter.
    Whatever type pydantic refuses is a BadJobTool naming both and pydantic's reason."""

    def resize(path: str, size: _Size) -> None: ...

    if sys.version_info >= (3, 12):
        pytest.skip("typing.TypedDict is validated on Python 3.12+")
    with pytest.raises(BadJobTool, match=r"job tool resize: parameter size: .*typing_extensions.TypedDict"):
        ToolArguments("resize", resize)
