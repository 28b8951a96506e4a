"""A proxied tool's arguments rule: the upstream's JSON input schema, enforced before a job exists.

The same shape of refusal as our own tools' (`InvalidArguments` naming each unknown, missing or mistyped
argument, and the accepted ones). An upstream schema rarely says `additionalProperties: false`; an
argument the schema does not name is refused all the same (a misspelt name must not be dropped, nor reach a
job), unless the schema opens the object on purpose (`additionalProperties` given, true or a schema, or
`patternProperties`).

The upstream's schema is hostile input, and so are the arguments checked against it:
- no regular expression runs here. Python's `re` backtracks: a pattern such as `^(a+)+$` (which a careless
  upstream writes too) held the event loop for seconds on a 28-character argument, and every client with it. So
  `pattern` is left to the upstream, which checks its own arguments; so are `patternProperties` and the keywords
  that consult it (`additionalProperties`, `unevaluatedProperties` beside it): such an object is open here;
- a schema the validator cannot take (not valid, nested too deep for it) leaves the shape check (an object) and
  `schema_problem`; an evaluation that fails on some arguments (a `$ref` it cannot resolve: nothing is fetched)
  refuses them, naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry

from vibe_jobs.arguments import not_an_object, refusal, shown

UNCHECKABLE = "arguments: cannot be checked against the upstream's schema"
CONTEXT_KWARG = "arguments"  # the job function's one parameter: the arguments as they were checked
# what one check may cost, in keywords evaluated: a fixed part, and a part per JSON value checked (its size is the
# caller's or the result's; the schema, the upstream's, cannot multiply it beyond this)
STEPS = 5_000
STEPS_PER_VALUE = 100


class TooCostly(Exception):
    """Checking this value against the upstream's schema costs more than the check may."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"checking it takes more than {steps:,} steps")


class SchemaArguments:
    """The `vibe_jobs.arguments.Arguments` rule of one upstream tool, from its JSON input schema."""

    def __init__(self, tool: str, schema: Mapping[str, Any]) -> None:
        self.tool = tool
        self._schema = dict(schema) if schema else {"type": "object"}
        properties = self._schema.get("properties")
        self.accepted: list[str] = list(properties) if isinstance(properties, Mapping) else []
        opened = ("additionalProperties", "patternProperties")
        self._closed = isinstance(properties, Mapping) and not any(k in self._schema for k in opened)
        self.schema_problem: str | None = None
        try:
            self._validator: Any = _without_regexes(self._schema)
        except SchemaError as exc:  # the upstream's schema is broken: check the object's shape only
            self._shape_only(exc.message)
        except RecursionError:
            self._shape_only("the schema nests deeper than the validator can follow")
        except Exception as exc:  # what else the validator's machinery raises on a schema it cannot take
            self._shape_only(f"{type(exc).__name__}: {exc}")

    def _shape_only(self, problem: str) -> None:
        self._validator = Draft202012Validator({"type": "object"})
        self.schema_problem = shown(problem) if len(problem) > 200 else problem

    def schema(self) -> dict[str, Any]:
        """The upstream's input schema, unchanged: what the proxy's tool lists."""
        return self._schema

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, as the job stores and sends them; raises InvalidArguments."""
        if not isinstance(arguments, Mapping):
            raise not_an_object(self.tool, arguments)
        values = dict(arguments)
        unknown = [shown(k) for k in values if k not in self.accepted] if self._closed else []
        try:
            problems = [_problem(e) for e in within_cost(self._validator, values)]
        except TooCostly as exc:
            problems = [f"{UNCHECKABLE} ({exc})"]
        except RecursionError:
            problems = [f"{UNCHECKABLE} (it recurses, or they nest, too deep)"]
        except Exception as exc:  # a $ref the validator cannot resolve, and the like: the schema's fault
            problems = [f"{UNCHECKABLE} ({type(exc).__name__})"]
        if unknown or problems:
            raise refusal(self.tool, self.accepted, unknown, problems)
        return values

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The job function's keyword arguments: the stored params, checked again."""
        return {CONTEXT_KWARG: self.check(params)}


def output_validator(schema: dict[str, Any]) -> Any:
    """The validator of an upstream tool's output schema (the SDK's client checks each result's structured content
    with it, through `iter_errors`): as for its input schema, no regular expression runs, nothing is fetched, and
    a check is held to its cost (a RuntimeError past it, as the SDK reports a result it cannot use). Raises
    SchemaError."""
    try:
        return _CostedOutput(_without_regexes(schema))
    except RecursionError:
        raise SchemaError("the schema nests deeper than the validator can follow") from None


class _CostedOutput:
    def __init__(self, validator: Any) -> None:
        self._validator = validator

    def iter_errors(self, instance: Any) -> Iterator[Any]:
        try:
            return iter(within_cost(self._validator, instance))
        except TooCostly as exc:
            raise RuntimeError(f"the structured content cannot be checked against the output schema: {exc}") from None


_LEFT: ContextVar[list[int] | None] = ContextVar("schema_steps_left", default=None)


def within_cost(validator: Any, instance: Any) -> list[Any]:
    """`validator`'s errors on `instance`, all of them, or TooCostly once the check has evaluated more keywords
    than `STEPS` and `STEPS_PER_VALUE` for each value of `instance` allow."""
    steps = STEPS + STEPS_PER_VALUE * _values(instance)
    token = _LEFT.set([steps])
    try:
        return list(validator.iter_errors(instance))
    except TooCostly:
        raise TooCostly(steps) from None
    finally:
        _LEFT.reset(token)


def _values(instance: Any) -> int:
    """How many JSON values `instance` holds (itself included)."""
    count, stack = 0, [instance]
    while stack:
        value = stack.pop()
        count += 1
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def _costed(keyword: Any) -> Any:
    """`keyword`, each evaluation of it counted against the running check's steps (`within_cost`)."""

    def check(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        left = _LEFT.get()
        if left is not None:
            left[0] -= 1
            if left[0] < 0:
                raise TooCostly(0)
        return keyword(validator, value, instance, schema)

    return check


def _problem(error: Any) -> str:
    """`path: message`, as our own tools' refusals read (`arguments` for the object itself)."""
    where = ".".join(map(str, error.absolute_path)) or "arguments"
    return f"{where}: {shown(error.message) if len(error.message) > 200 else error.message}"


def _without_regexes(schema: dict[str, Any]) -> Any:
    """A validator of `schema` (its own draft's, checked first) that runs no regular expression (module doc), and
    fetches nothing: a `$ref` to a URL is unresolvable (jsonschema's default registry fetched it, blocking and
    with no time-out, on every call: any address the upstream names, the proxy's network included)."""
    cls = validators.validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    patterned = "patternProperties" in json.dumps(schema)  # a property of that name too: then more is open
    return _regex_free(cls, patterned)(_one_dialect(schema), registry=_NOTHING_FETCHED)


_NOTHING_FETCHED: Any = Registry()  # the drafts' own metaschemas still resolve: jsonschema adds them


def _one_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose subschemas name no dialect of their own (a string `$schema` below the root): the
    validator checks a subschema that names one with that dialect's stock class, which runs `pattern` again
    (review helper-57). A property named `$schema` (its value an object) stays."""
    copy: dict[str, Any] = dict(schema)
    stack: list[Any] = [copy]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, dict):
                value = node[key] = {k: v for k, v in value.items() if not (k == "$schema" and isinstance(v, str))}
                stack.append(value)
            elif key == "enum" and isinstance(node, dict) and isinstance(value, list):
                node[key] = _Choices(value)  # its values, not schemas: kept as they are
            elif isinstance(value, list):
                value = node[key] = list(value)
                stack.append(value)
    return copy


class _Choices(list[Any]):
    """An `enum`'s values, and the set of their `_same` forms: a value is looked up in it, not compared with each
    (jsonschema's `enum` compared an argument with every value in Python: 0.2 s a value for an enum of a million,
    an argument of a hundred values held the event loop 20 s)."""

    def __init__(self, values: list[Any]) -> None:
        super().__init__(values)
        self.same = frozenset(map(_same, values))


def _same(value: Any) -> Any:
    """A hashable form of a JSON value, equal for values jsonschema holds equal (`jsonschema._utils.equal`): a bool
    is no number, 1 is 1.0, an object's keys in any order."""
    kind = type(value)
    if kind is str or kind is int or kind is float:  # most values: first, and no further look
        return value
    if kind is bool or value is None:
        return ("const", value)
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _same(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(map(_same, value)))
    return ("other", repr(value))


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not isinstance(enums, _Choices):  # an enum the copy did not reach (a schema met through a metaschema)
        yield from _STOCK_ENUM(validator, enums, instance, schema)
    elif _same(instance) not in enums.same:
        listed = repr(enums) if len(enums) <= MAX_LISTED else f"the {len(enums):,} values the schema lists"
        yield ValidationError(f"{instance!r} is not one of {listed}")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's `uniqueItems` compared each item with every other (20,000 objects: an hour): a set of their
    `_same` forms instead."""
    if unique and validator.is_type(instance, "array") and len(set(map(_same, instance))) < len(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


MAX_LISTED = 100  # an enum longer than this is not written out in full in a refusal
_STOCK_ENUM: Any = Draft202012Validator.VALIDATORS["enum"]
_REGEX_FREE: dict[tuple[Any, bool], Any] = {}
_extend: Any = validators.extend


def _regex_free(cls: Any, patterned: bool) -> Any:
    """`cls` with the keywords that run regular expressions left to the upstream (a class per draft): `pattern`,
    `patternProperties`, `additionalProperties` beside it, and (`patterned`: the schema has some) every
    `unevaluatedProperties`, which looks for them in the subschemas it applies; every keyword counted
    (`_costed`)."""
    found = _REGEX_FREE.get((cls, patterned))
    if found is None:
        changed = {"pattern": _unchecked, "patternProperties": _unchecked, "enum": _enum, "uniqueItems": _unique_items}
        if "additionalProperties" in cls.VALIDATORS:
            changed["additionalProperties"] = _open_beside_patterns(cls.VALIDATORS["additionalProperties"])
        if patterned and "unevaluatedProperties" in cls.VALIDATORS:
            changed["unevaluatedProperties"] = _unchecked
        costed = {name: _costed(keyword) for name, keyword in (cls.VALIDATORS | changed).items()}
        found = _REGEX_FREE[(cls, patterned)] = _extend(cls, costed)
    return found


def _unchecked(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    return iter(())


def _open_beside_patterns(keyword: Any) -> Any:
    """`keyword`, checked only in a schema without `patternProperties` (which it would match names against)."""

    def check(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(schema, Mapping) and "patternProperties" in schema:
            return iter(())
        return iter(keyword(validator, value, instance, schema) or ())

    return check
