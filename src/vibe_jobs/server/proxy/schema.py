"""A proxied tool's arguments rule: the upstream's JSON input schema, enforced before a job exists.

The same shape of refusal as our own tools' (`InvalidArguments` naming each unknown, missing or mistyped
argument, and the accepted ones). An upstream schema rarely says `additionalProperties: false`; an
argument the schema does not name is refused all the same (a misspelt name must not be dropped, nor reach a
job), unless the schema opens the object on purpose (`additionalProperties` given, true or a schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError

from vibe_jobs.arguments import not_an_object, refusal, shown

CONTEXT_KWARG = "arguments"  # the job function's one parameter: the arguments as they were checked


class SchemaArguments:
    """The `vibe_jobs.arguments.Arguments` rule of one upstream tool, from its JSON input schema."""

    def __init__(self, tool: str, schema: Mapping[str, Any]) -> None:
        self.tool = tool
        self._schema = dict(schema) if schema else {"type": "object"}
        properties = self._schema.get("properties")
        self.accepted: list[str] = list(properties) if isinstance(properties, Mapping) else []
        self._closed = isinstance(properties, Mapping) and "additionalProperties" not in self._schema
        cls = validators.validator_for(self._schema, default=Draft202012Validator)
        try:
            cls.check_schema(self._schema)
            self._validator: Any = cls(self._schema)
        except SchemaError as exc:  # the upstream's schema is broken: check the object's shape only
            self._validator = Draft202012Validator({"type": "object"})
            self.schema_problem: str | None = exc.message
        else:
            self.schema_problem = None

    def schema(self) -> dict[str, Any]:
        """The upstream's input schema, unchanged: what the proxy's tool lists."""
        return self._schema

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, as the job stores and sends them; raises InvalidArguments."""
        if not isinstance(arguments, Mapping):
            raise not_an_object(self.tool, arguments)
        values = dict(arguments)
        unknown = [shown(k) for k in values if k not in self.accepted] if self._closed else []
        problems = [_problem(e) for e in self._validator.iter_errors(values)]
        if unknown or problems:
            raise refusal(self.tool, self.accepted, unknown, problems)
        return values

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The job function's keyword arguments: the stored params, checked again."""
        return {CONTEXT_KWARG: self.check(params)}


def _problem(error: Any) -> str:
    """`path: message`, as our own tools' refusals read (`arguments` for the object itself)."""
    where = ".".join(map(str, error.absolute_path)) or "arguments"
    return f"{where}: {shown(error.message) if len(error.message) > 200 else error.message}"
