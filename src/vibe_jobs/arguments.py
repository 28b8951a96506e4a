"""A job tool's arguments: one pydantic model, built from the function's signature when the tool is declared.

It is the one rule for arguments on every path. Creating a job over MCP (a job tool, submit-job, the tasks
extension) checks the caller's arguments with it and stores them as JSON; running a job (the local
scheduler, a PostgreSQL worker, a job recovered after a restart, a JobServer used as a library) validates
the stored JSON with it into the values the function declares (an `int`, a `Path`, an enum, a model).

The model is built as the MCP SDK's `func_metadata` builds a tool's (the same fields, defaults,
`Annotated`/`Field` metadata and title), so the advertised input schema is the one the SDK would give,
plus `additionalProperties: false`: an unknown argument is refused, never dropped.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from vibe_jobs.errors import BadJobTool, InvalidArguments

MAX_UNKNOWN_SHOWN = 10  # unknown names an error lists (a caller may send thousands)
MAX_NAME_CHARS = 64  # of each unknown name (a caller may send a name of megabytes)
MAX_ERRORS_SHOWN = 5  # other validation errors an error describes
UNSUPPORTED_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class Arguments(Protocol):
    """What a job tool's arguments rule offers: `ToolArguments` (from a function's signature) is one; a rule
    from a JSON schema (the proxy's upstream tools) is another."""

    accepted: list[str]

    def schema(self) -> dict[str, Any]: ...

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]: ...

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]: ...


class ArgumentsModel(BaseModel):
    """The base of every job tool's arguments model: unknown arguments are an error, and so is a float no JSON
    carries (NaN, or 1e400 read as infinity), refused naming its argument (a job keeps its params as JSON)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", allow_inf_nan=False)


class ToolArguments:
    """The arguments of one job tool: its model, and the checks every path makes with it."""

    def __init__(self, tool: str, fn: Callable[..., Any], skip: str | None = None) -> None:
        self.tool = tool
        self.model = arguments_model(fn, skip)
        self.schema()  # a type no JSON schema describes is refused as the tool is declared, not as a server builds
        fields = self.model.model_fields
        self.accepted = [info.alias or name for name, info in fields.items()]
        self._kwargs = [(name, info.alias or name) for name, info in fields.items()]
        self._json_keys = frozenset(  # non-string parameters, whose value may come as JSON text
            key for name, info in fields.items() if info.annotation is not str for key in (name, info.alias) if key
        )

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (the MCP tool's input schema)."""
        try:
            return self.model.model_json_schema(by_alias=True)
        except PydanticUserError as exc:
            raise BadJobTool(
                f"job tool {self.tool}: an argument's type has no JSON schema, so no caller could give it "
                f"({str(exc).splitlines()[0]})"
            ) from None

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """A caller's arguments, validated, as JSON with the defaults filled in: what a job stores.
        Raises InvalidArguments naming each unknown, missing or mistyped argument."""
        return self.validate(arguments).model_dump(mode="json", by_alias=True)

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A job's stored params validated into the function's keyword arguments (typed, one level deep)."""
        values = self.validate(params)
        return {kwarg: getattr(values, name) for name, kwarg in self._kwargs}

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        if type(arguments) is not dict and not isinstance(arguments, Mapping):  # the ABC check is the slow one
            raise not_an_object(self.tool, arguments)
        try:
            return self.model.model_validate(self._pre_parse(arguments))
        except ValidationError as exc:
            raise self._invalid(exc) from None

    def _pre_parse(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """A string holding a JSON list or object (or null) for a non-string parameter is parsed first, as the
        MCP SDK does: some clients send structured values as JSON text. The caller's mapping is not changed."""
        parsed: dict[str, Any] = {}
        for key in self._json_keys.intersection(arguments):
            if isinstance(value := arguments[key], str):
                try:
                    loaded = json.loads(value)
                except (ValueError, RecursionError):
                    continue  # not JSON: validation accepts or refuses the string itself
                if not isinstance(loaded, str | int | float):
                    parsed[key] = loaded
        return {**arguments, **parsed} if parsed else arguments

    def _invalid(self, exc: ValidationError) -> InvalidArguments:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        unknown = [shown(e["loc"][0]) for e in errors if _is_unknown(e)]
        problems = [f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in errors if not _is_unknown(e)]
        return refusal(self.tool, self.accepted, unknown, problems)


def not_an_object(tool: str, arguments: Any) -> InvalidArguments:
    """The refusal of arguments that are not a JSON object."""
    problem = f"arguments must be an object, not {type(arguments).__name__}"
    return InvalidArguments(f"Invalid arguments for '{tool}': {problem}", unknown=[], accepted=[])


def refusal(tool: str, accepted: list[str], unknown: list[str], problems: list[str]) -> InvalidArguments:
    """The one refusal text of every arguments rule (a job tool's signature, a proxied tool's schema):
    each unknown argument (with a close match), the first problems, and the accepted names."""
    parts = [_unknown_text(unknown, accepted)] if unknown else []
    parts += problems[:MAX_ERRORS_SHOWN]
    if len(problems) > MAX_ERRORS_SHOWN:
        parts.append(f"{len(problems) - MAX_ERRORS_SHOWN} more problems")
    text = f"Invalid arguments for '{tool}': {'; '.join(parts)}"
    if unknown:
        text += f". Accepted arguments: {', '.join(accepted)}" if accepted else f". '{tool}' takes no arguments"
    return InvalidArguments(text, unknown=unknown[:MAX_UNKNOWN_SHOWN], accepted=accepted)


def _unknown_text(unknown: list[str], accepted: list[str]) -> str:
    names = ", ".join(_named(name, accepted) for name in unknown[:MAX_UNKNOWN_SHOWN])
    more = f" and {len(unknown) - MAX_UNKNOWN_SHOWN} more" if len(unknown) > MAX_UNKNOWN_SHOWN else ""
    return f"unknown argument{'s' if len(unknown) > 1 else ''} {names}{more}"


def _named(unknown: str, accepted: list[str]) -> str:
    meant = closest(unknown, accepted)
    return f"{unknown!r} (did you mean {meant!r}?)" if meant is not None else repr(unknown)


def closest(name: str, choices: Sequence[str]) -> str | None:
    """The choice `name` was most likely meant as: the one it equals but for case and separators (`job_id` or
    `JobId` for `jobId`, `get_job_result` or `getJobResult` for `get-job-result`), else the closest spelling;
    None when none is close."""
    loose = {_loose(choice): choice for choice in reversed(choices)}  # the first choice wins a tie
    key = _loose(name)
    if key in loose:
        return loose[key]
    close = difflib.get_close_matches(key, list(loose), n=1)
    return loose[close[0]] if close else None


def _loose(name: str) -> str:
    return name.translate(_SEPARATORS).lower()


_SEPARATORS = str.maketrans("", "", "-_ .")


def _is_unknown(error: Any) -> bool:
    return bool(error["type"] == "extra_forbidden" and len(error["loc"]) == 1)


def shown(name: Any) -> str:
    """A caller's name, cut short enough to repeat in an error."""
    text = str(name)
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "..."


def arguments_model(fn: Callable[..., Any], skip: str | None = None) -> type[BaseModel]:
    """The model of `fn`'s parameters but `skip` (its JobContext), field for field as the MCP SDK's
    `func_metadata` builds it: the same title, types, defaults and metadata."""
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except NameError as exc:
        raise BadJobTool(f"job tool {name}: cannot resolve its annotations ({exc})") from None
    fields = dict(_field(name, p) for p in signature.parameters.values() if p.name != skip)
    try:
        return create_model(f"{name}Arguments", __base__=ArgumentsModel, **fields)
    except PydanticUserError as exc:  # a type pydantic cannot validate (typing.TypedDict before Python 3.12)
        raise BadJobTool(f"job tool {name}: {_refused_field(name, fields)}{str(exc).splitlines()[0]}") from None


def _refused_field(fn_name: str, fields: dict[str, Any]) -> str:
    """`parameter NAME: ` of the first field pydantic cannot make a model of, or nothing when none alone is."""
    for field_name, spec in fields.items():
        try:
            create_model(f"{fn_name}Arguments", __base__=ArgumentsModel, **{field_name: spec})
        except PydanticUserError:
            return f"parameter {field_name}: "
    return ""


def _field(fn_name: str, param: inspect.Parameter) -> tuple[str, Any]:
    if param.name.startswith("_"):
        raise BadJobTool(f"job tool {fn_name}: parameter {param.name} cannot start with '_'")
    if param.kind in UNSUPPORTED_KINDS:
        raise BadJobTool(f"job tool {fn_name}: parameter {param.name} must be one that can be passed by keyword")
    empty = param.annotation is inspect.Parameter.empty
    annotation = Any if empty else param.annotation
    metadata = [WithJsonSchema({"title": param.name, "type": "string"})] if empty else []
    name, options = param.name, {}
    if hasattr(BaseModel, name) and callable(getattr(BaseModel, name)):
        name, options = f"field_{name}", {"alias": name}  # a field may not shadow a BaseModel method
    field_type = Annotated[(annotation, *metadata, Field(**options))]  # type: ignore[valid-type]
    has_default = param.default is not inspect.Parameter.empty
    return name, ((field_type, param.default) if has_default else field_type)
