"""Questions a running job asks (elicitation and sampling): their shapes, their answers, and the checks.

A question is stored with its job (`JobRecord.waiting_for`) as `{id, method, params, askedAt}` plus, once
someone answered, `answer`. `method` and `params` are those of the MCP request that carries it
(`elicitation/create` with `message` and a flat `requestedSchema`, or `sampling/createMessage`), so every
way of delivering it (a tasks-extension `inputRequests` entry, a server-to-client request, the
`waitingFor` field an agent reads) sends the same thing. An answer is checked here, once, whoever gives it.
No MCP imports: these are plain dicts in the wire shapes.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from vibe_jobs.blocks import block_problem, carried_block_problem, finite_number, fraction
from vibe_jobs.errors import InvalidParams
from vibe_jobs.logs import without_input
from vibe_jobs.redact import MASK, is_secret
from vibe_jobs.states import RUNNING

if TYPE_CHECKING:
    from vibe_jobs.models import JobRecord

__all__ = [
    "ELICIT",
    "SAMPLE",
    "WITHDRAWN",
    "Action",
    "Elicitation",
    "Sample",
    "check_answer",
    "elicit_request",
    "elicitation_schema",
    "first_version",
    "open_question",
    "pending_question",
    "plain_answer",
    "question_view",
    "sample_request",
]

ELICIT = "elicitation/create"
SAMPLE = "sampling/createMessage"
KINDS = {ELICIT: "elicitation", SAMPLE: "sampling"}
PRIMITIVES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
}
ACTIONS = ("accept", "decline", "cancel")
Action = Literal["accept", "decline", "cancel", "timeout"]
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Elicitation(Generic[M]):
    """The answer to `JobContext.elicit`: `action` is accept, decline, cancel (the person said so) or
    timeout (nobody answered in time); `content` the accepted values, `data` them as the model given."""

    action: Action
    content: dict[str, Any] | None = None
    data: M | None = None

    @property
    def accepted(self) -> bool:
        return self.action == "accept"

    def __await__(self) -> Generator[None, None, Elicitation[M]]:
        """A sync job tool gets the answer itself from `job.elicit(...)`; awaited, it gives itself."""
        return self
        yield  # a generator that ends at once


@dataclass(frozen=True, slots=True)
class Sample:
    """The answer to `JobContext.sample`: `action` accept (with the model's `text`), decline (the client
    refused), cancel (asked after the job's cancel: nobody can answer) or timeout; `result` the client's
    CreateMessageResult as sent."""

    action: Action
    text: str | None = None
    model: str | None = None
    result: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.action == "accept"

    def __await__(self) -> Generator[None, None, Sample]:
        """A sync job tool gets the answer itself from `job.sample(...)`; awaited, it gives itself."""
        return self
        yield  # a generator that ends at once


# -- building questions ------------------------------------------------------------------------


def elicitation_schema(schema: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """A flat object schema of primitive properties (what elicitation allows), from a pydantic model or
    a JSON schema; anything else is refused with the property that is not flat."""
    raw = schema.model_json_schema() if isinstance(schema, type) else dict(schema)
    if raw.get("type") != "object" or not isinstance(raw.get("properties"), Mapping):
        raise InvalidParams("an elicitation schema must be an object schema with properties")
    defs = raw.get("$defs")
    defs = defs if isinstance(defs, Mapping) else {}
    props = {name: _primitive(name, prop, defs) for name, prop in raw["properties"].items()}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if raw.get("required"):
        out["required"] = _required(raw["required"], props)
    return out


def _required(required: Any, props: Mapping[str, Any]) -> list[str]:
    """The required field names, each one the schema asks for: a name it does not ask for (a typo), or one string
    read as its letters, made a question no answer could satisfy (missing, or else unknown), open until it timed out."""
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise InvalidParams(f"an elicitation schema's required must be a list of field names, not {required!r:.80}")
    if unknown := [name for name in required if name not in props]:
        raise InvalidParams(
            f"an elicitation schema's required names {unknown[0]!r:.80}, which it does not ask for "
            f"(its properties: {', '.join(props) or 'none'})"[:300]
        )
    return list(required)


# the string formats the MCP's StringSchema names: a client checks a form against that list (the TypeScript SDK's
# refuses the whole request for another), so another format (uuid, time, ...) is not sent; the job's model checks it
FORMATS = frozenset({"email", "uri", "date", "date-time"})


def _primitive(name: str, prop: Any, defs: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(prop, Mapping):
        raise InvalidParams(f"elicitation property {name!r} must be a schema object")
    prop = _resolved(prop, defs)
    options = [_resolved(p, defs) for p in prop.get("anyOf") or () if isinstance(p, Mapping)]
    options = [p for p in options if p.get("type") != "null"]
    merged = {**{k: v for k, v in prop.items() if k != "anyOf"}, **(options[0] if len(options) == 1 else {})}
    if isinstance(merged.get("items"), Mapping):  # a multi-select of an Enum class: its items are a `$ref`
        merged["items"] = _resolved(merged["items"], defs)
    kind = merged.get("type")  # one name: a list of them (["string", "null"]) failed the job with a TypeError
    if not (isinstance(kind, str) and kind in PRIMITIVES) and not (kind == "array" and _enum_items(merged)):
        raise InvalidParams(
            f"elicitation property {name!r} must be a string, number, integer, boolean or enum "
            f"(flat, no nesting), not {dict(prop)!r}"
        )
    if merged.get("default", 0) is None:  # an optional field (`X | None = None`): the spec's defaults are values
        del merged["default"]
    if merged.get("type") == "string" and merged.get("format") not in FORMATS:
        merged.pop("format", None)
    _check_choices(name, merged)
    return merged


def fitting_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` (one a job passes on: an upstream server's, through the proxy) without the defaults its own fields
    would refuse (`_check_value`): the person answers without the suggestion, where `_check_choices` would refuse
    the whole question, which the job's own code can mend and an upstream's caller cannot."""
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return dict(schema)
    kept: dict[str, Any] = {}
    for name, prop in props.items():
        if isinstance(prop, Mapping) and "default" in prop:
            try:
                _check_value(str(name), prop, prop["default"])
            except InvalidParams:
                prop = {key: value for key, value in prop.items() if key != "default"}
        kept[name] = prop
    return {**schema, "properties": kept}


def _check_choices(name: str, prop: Mapping[str, Any]) -> None:
    """Refuse choices no answer could be one of, and a default the field's own check would refuse (a person
    taking it was refused, though the form offered it): an empty `enum` allowed any value, one string allowed
    only that string, each asked and waited for as a question."""
    source = prop.get("items") if prop.get("type") == "array" else prop
    enum = source.get("enum", [None]) if isinstance(source, Mapping) else [None]  # [None]: no enum to look at
    if not (isinstance(enum, list | tuple) and enum):
        raise InvalidParams(
            f"elicitation property {name!r}: enum must be a non-empty list of choices, not {enum!r:.80}"
        )
    if "default" in prop:
        try:
            _check_value(name, prop, prop["default"])
        except InvalidParams as exc:
            raise InvalidParams(f"elicitation property {name!r}: its default does not fit it ({exc})") from None


def _resolved(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """A property whose schema is a `$ref` into the model's `$defs` (an Enum class) as that definition, with the
    property's own keys (its default, description) over it; another `$ref` is left for the flatness check."""
    ref = prop.get("$ref")
    target = defs.get(ref.removeprefix("#/$defs/")) if isinstance(ref, str) and ref.startswith("#/$defs/") else None
    if not isinstance(target, Mapping):
        return dict(prop)
    return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}


def _enum_items(prop: Mapping[str, Any]) -> bool:
    items = prop.get("items")
    return isinstance(items, Mapping) and bool(items.get("enum") or items.get("anyOf"))


def elicit_request(message: str, schema: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(message, str) or not message:
        raise InvalidParams("an elicitation needs a message (a non-empty string)")
    return {"method": ELICIT, "params": {"message": message, "requestedSchema": elicitation_schema(schema)}}


def sample_request(
    messages: str | Sequence[str | Mapping[str, Any]],
    *,
    max_tokens: int,
    system: str | None = None,
    temperature: float | None = None,
    stop_sequences: Sequence[str] | None = None,
    model_preferences: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidParams(f"max_tokens must be a positive whole number, got {max_tokens!r}")
    if isinstance(messages, Mapping) or not isinstance(messages, str | Iterable):  # a lone message: its keys
        raise InvalidParams(f"sampling's messages are a string or a list of messages, not {messages!r:.80}")
    items = [messages] if isinstance(messages, str) else list(messages)
    if not items:
        raise InvalidParams("sampling needs at least one message")
    params: dict[str, Any] = {"messages": [_message(m) for m in items], "maxTokens": max_tokens}
    if stop_sequences is not None and (isinstance(stop_sequences, str) or not isinstance(stop_sequences, Sequence)):
        raise InvalidParams(f"sampling's stop_sequences must be a list of strings, not {stop_sequences!r:.80}")
    if model_preferences is not None and not isinstance(model_preferences, Mapping):
        raise InvalidParams(f"sampling's model_preferences must be an object, not {model_preferences!r:.80}")
    optional = {
        "systemPrompt": system,
        "temperature": temperature,
        "stopSequences": list(stop_sequences) if stop_sequences is not None else None,
        "modelPreferences": dict(model_preferences) if model_preferences is not None else None,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if (problem := _sampling_options_problem(params)) is not None:  # as a content block's: no request is made of it
        raise InvalidParams(f"sampling's {problem}")
    return {"method": SAMPLE, "params": params}


_PRIORITIES = ("costPriority", "speedPriority", "intelligencePriority")


def _model_hint(hint: Any) -> bool:  # the name, when given, a string: a client refuses a null one (-32602)
    return isinstance(hint, Mapping) and ("name" not in hint or isinstance(hint["name"], str))


def _sampling_options_problem(params: Mapping[str, Any]) -> str | None:
    """Why the options of a sampling request are not those an MCP request carries, else None."""
    if not isinstance(params.get("systemPrompt", ""), str):
        return f"system must be a string, not {params['systemPrompt']!r:.80}"
    if not finite_number(params.get("temperature", 0)):
        return f"temperature must be a finite number, not {params['temperature']!r:.80}"
    if not all(isinstance(s, str) for s in params.get("stopSequences", ())):
        return f"stop_sequences must be strings, not {params['stopSequences']!r:.80}"
    prefs = params.get("modelPreferences", {})
    hints = prefs.get("hints")
    if hints is not None and not (isinstance(hints, list) and all(map(_model_hint, hints))):
        return f"model_preferences hints must be a list of {{name}} objects, not {hints!r:.80}"
    if not all(k not in prefs or fraction(prefs[k]) for k in _PRIORITIES):  # as the spec's ModelPreferences
        return f"model_preferences priorities ({', '.join(_PRIORITIES)}) must be numbers from 0 to 1"
    return None


def _message(item: str | Mapping[str, Any]) -> dict[str, Any]:
    """A SamplingMessage: a plain string is the user's text; a string content becomes a text block, a list of one
    block that block."""
    if isinstance(item, str):
        return {"role": "user", "content": {"type": "text", "text": item}}
    if not isinstance(item, Mapping):
        raise InvalidParams(f"a sampling message is a string or an object {{role, content}}, not {item!r:.80}")
    role, content = item.get("role", "user"), item.get("content")
    if role not in ("user", "assistant"):
        raise InvalidParams(f"a sampling message's role must be user or assistant, not {role!r}")
    if isinstance(content, str):
        content = {"type": "text", "text": content}
    if isinstance(content, list) and len(content) == 1 and isinstance(content[0], Mapping):
        content = content[0]  # that block: a list came with 2025-11-25, an older client is not asked (`first_version`)
    if not isinstance(content, Mapping | list):
        raise InvalidParams("a sampling message needs content (a string or content blocks)")
    blocks = content if isinstance(content, list) else [content]
    problem = next(filter(None, map(carried_block_problem, blocks)), None)
    if problem is not None:  # the MCP request could not be made of it: every long-poll of the job failed
        raise InvalidParams(f"a sampling message's content must be a block or a list of blocks: {problem}")
    return {"role": role, "content": content}


# -- reading questions -------------------------------------------------------------------------


def pending_question(waiting_for: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The stored question when nobody has answered it yet."""
    return waiting_for if waiting_for is not None and waiting_for.get("answer") is None else None


NEWER = "2025-11-25"  # multi-selects and titled choices, sampling messages of several blocks or of tool use


def first_version(question: Mapping[str, Any]) -> str:
    """The first MCP protocol version whose request carries `question` as it is: a client of an older one
    refuses the request (its schema has no such shape), so it must be asked another way (answer-job)."""
    params = question["params"]
    if question["method"] == ELICIT:
        props = (params.get("requestedSchema") or {}).get("properties") or {}
        newer = any(isinstance(p, Mapping) and (p.get("type") == "array" or "oneOf" in p) for p in props.values())
        return NEWER if newer else "2025-06-18"
    contents = [m.get("content") for m in params.get("messages") or () if isinstance(m, Mapping)]
    newer = any(
        isinstance(c, list) or (isinstance(c, Mapping) and c.get("type") in ("tool_use", "tool_result"))
        for c in contents
    )
    return NEWER if newer else "2024-11-05"


def open_question(rec: JobRecord) -> Mapping[str, Any] | None:
    """The question `rec`'s run waits on and that may still be answered: the job runs, nobody answered it, and no
    cancel was asked for it (the cancel wins: the run is stopping). The one rule for whoever shows, puts or answers
    a job's question."""
    if rec.status is not RUNNING or rec.cancel_requested is not None:
        return None
    return pending_question(rec.waiting_for)


# What a job's question gets when it is asked after the job's cancel: nobody can answer it (`open_question`).
WITHDRAWN: Mapping[str, Any] = {"action": "cancel"}


def response_to_pending(rec: JobRecord, responses: Mapping[str, R]) -> tuple[str, R] | None:
    """The one response (key, value) among `responses` that answers the question the job waits on now; the other
    keys answer nothing and cost nothing (a request may name any number of them)."""
    question = open_question(rec)
    if question is None or question["id"] not in responses:
        return None
    return question["id"], responses[question["id"]]


def question_view(rec: JobRecord) -> dict[str, Any] | None:
    """`waitingFor` as clients see it (the job's open question): the request id, its kind, and the request's
    params."""
    question = open_question(rec)
    if question is None:
        return None
    return {"requestId": question["id"], "kind": KINDS[question["method"]], **question["params"]}


# -- answers -----------------------------------------------------------------------------------


def check_answer(question: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    """The answer to store: an ElicitResult (`{action, content}`) or a CreateMessageResult, or a
    `{action: decline|cancel}` for either. Refused (InvalidParams, naming the problem) when it does not fit."""
    if isinstance(answer, Mapping) and answer.get("action") in ("decline", "cancel"):
        return {"action": answer["action"]}
    if question["method"] == ELICIT:
        return _elicit_answer(question["params"]["requestedSchema"], answer)
    return _sample_answer(answer)


def plain_answer(question: Mapping[str, Any], answer: Any, action: str) -> Any:
    """An agent's answer (the content alone, and an action) in the shape `check_answer` takes."""
    if action != "accept":
        if action not in ACTIONS:
            raise InvalidParams(f"action must be one of {', '.join(ACTIONS)}, not {action!r:.80}")
        return {"action": action}
    if question["method"] == ELICIT:
        return {"action": "accept", "content": answer}
    return answer


def _elicit_answer(schema: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    if not isinstance(answer, Mapping):
        raise InvalidParams("an elicitation answer must be an object: {action, content}")
    action = answer.get("action", "accept")
    if action not in ACTIONS:
        raise InvalidParams(f"action must be one of {', '.join(ACTIONS)}, not {action!r:.80}")
    content = answer.get("content")
    if content is None:  # an accept with no content: the schema's required fields say whether that fits
        content = {}
    if not isinstance(content, Mapping):  # [], 0, false, "" were taken as {}
        raise InvalidParams(f"content must be an object of the requested fields, not {content!r:.80}")
    return {"action": "accept", "content": check_content(schema, content)}


def check_content(schema: Mapping[str, Any], content: Mapping[str, Any]) -> dict[str, Any]:
    """Accepted values checked against the flat schema: required fields present, types and enums kept."""
    props: Mapping[str, Any] = schema.get("properties") or {}
    unknown = sorted(set(content) - set(props))
    if unknown:
        raise InvalidParams(f"unknown field {unknown[0]!r:.80}; the schema asks for {', '.join(props) or 'nothing'}")
    missing = [name for name in schema.get("required") or () if name not in content]
    if missing:
        raise InvalidParams(f"required field {missing[0]!r} is missing")
    for name, value in content.items():
        _check_value(name, props[name], value)
    return dict(content)


def _check_value(name: str, prop: Mapping[str, Any], value: Any) -> None:
    kind = prop.get("type")
    expected = PRIMITIVES.get(kind) if isinstance(kind, str) else None
    if kind == "array":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = expected is None or (isinstance(value, expected) and not (kind != "boolean" and isinstance(value, bool)))
    # a refusal is logged (job.answer_refused) and repeated when the question is asked again: never a secret
    got = MASK if is_secret(name) else f"{value!r:.80}"
    if not ok:
        wanted = "a list of strings" if kind == "array" else kind
        raise InvalidParams(f"field {name!r} must be {wanted}, got {got}")
    allowed = _allowed(prop)
    if allowed is not None and not _all_allowed(value if isinstance(value, list) else [value], allowed):
        raise InvalidParams(f"field {name!r} must be one of {allowed!r:.200}, got {got}")
    if (problem := _out_of_bounds(prop, value)) is not None:
        raise InvalidParams(f"field {name!r} must be {problem}, got {got}")


# the bounds a field's schema may set, what a value is measured by for each, and whether the bound is met
_BOUNDS: tuple[tuple[str, str, Any], ...] = (
    ("minimum", "at least", lambda v, b: v >= b),
    ("maximum", "at most", lambda v, b: v <= b),
    ("exclusiveMinimum", "more than", lambda v, b: v > b),
    ("exclusiveMaximum", "less than", lambda v, b: v < b),
    ("minLength", "at least {} characters long", lambda v, b: len(v) >= b),
    ("maxLength", "at most {} characters long", lambda v, b: len(v) <= b),
    ("minItems", "at least {} items", lambda v, b: len(v) >= b),
    ("maxItems", "at most {} items", lambda v, b: len(v) <= b),
)


def _out_of_bounds(prop: Mapping[str, Any], value: Any) -> str | None:
    """What a value outside its schema's bounds must be (the first bound it misses), else None: the answer
    is refused while the question is open, not by the job's model after it was delivered."""
    sized = isinstance(value, str | list)
    for key, words, holds in _BOUNDS:
        bound = prop.get(key)
        if not isinstance(bound, int | float) or isinstance(bound, bool):
            continue
        if key.endswith(("Length", "Items")) != sized:
            continue
        if not holds(value, bound):
            return words.format(bound) if "{}" in words else f"{words} {bound}"
    return None  # (`pattern` is not looked at: the MCP's elicitation schemas have none, and a proxied
    # upstream's pattern would run on an answerer's text)


def _allowed(prop: Mapping[str, Any]) -> list[Any] | None:
    """The values a field's schema allows (its enum, or its options' consts), in the schema's order; a list, not a
    set: a schema's values need not be hashable, nor of one type (["a", 1]: sorting them failed the answer-job
    call with no reason given)."""
    source = prop.get("items") if prop.get("type") == "array" else prop
    if not isinstance(source, Mapping):
        return None
    if enum := source.get("enum"):
        return list(enum) if isinstance(enum, list | tuple) else [enum]
    consts = [o.get("const") for o in source.get("oneOf") or source.get("anyOf") or () if isinstance(o, Mapping)]
    return consts or None


def _all_allowed(values: list[Any], allowed: list[Any]) -> bool:
    """Whether each of `values` is one of `allowed`: looked up in a set (a multi-select's answer of 55,000 picks
    checked against 14,000 choices, a list, held the event loop for 35 s), or the list when a choice is no
    hashable value."""
    try:
        choices: Collection[Any] = set(allowed)
    except TypeError:
        choices = allowed
    return all(v in choices for v in values)


def _sample_answer(answer: Any) -> dict[str, Any]:
    """A sampling answer as the job takes it: the reply's text, or a CreateMessageResult whose content the job
    can read (a job given a text block whose text was 5 failed with a TypeError); role is the assistant's."""
    if isinstance(answer, str):
        return {"role": "assistant", "content": {"type": "text", "text": answer}, "model": "unknown"}
    if not isinstance(answer, Mapping):
        raise InvalidParams("a sampling answer must be the text, or a CreateMessageResult {role, content, model}")
    content = answer.get("content")
    blocks = content if isinstance(content, list) else [content]
    problem = next(filter(None, map(block_problem, blocks)), None) if blocks else "the list is empty"
    if problem is not None:
        raise InvalidParams(
            "a sampling answer must be the text, or a CreateMessageResult {role, content, model} whose content is a "
            f"block or a non-empty list of blocks: {problem}"
        )
    if answer.get("role", "assistant") != "assistant":
        raise InvalidParams(f"a sampling answer's role must be 'assistant', not {answer.get('role')!r:.80}")
    for field in ("model", "stopReason"):
        if field in answer and not isinstance(answer[field], str):
            raise InvalidParams(f"a sampling answer's {field} must be a string, not {answer[field]!r:.80}")
    return {"model": "unknown", **answer, "role": "assistant"}


def elicitation(answer: Mapping[str, Any] | None, model: type[M] | None) -> Elicitation[M]:
    """The job's view of a stored elicitation answer (None: nobody answered in time)."""
    if answer is None:
        return Elicitation("timeout")
    if answer.get("action") != "accept":
        return Elicitation(answer.get("action", "cancel"))
    content = dict(answer.get("content") or {})
    try:
        data = model.model_validate(content) if model is not None else None
    except ValidationError as exc:  # without the values: the refusal is logged and put to the answerer again
        problems = without_input(exc, whole="content")
        raise InvalidParams(f"the accepted answer does not fit {model.__name__}: {problems}") from None  # type: ignore[union-attr]
    return Elicitation("accept", content, data)


def sample(answer: Mapping[str, Any] | None) -> Sample:
    """The job's view of a stored sampling answer (None: nobody answered in time)."""
    if answer is None:
        return Sample("timeout")
    if answer.get("action") in ("decline", "cancel"):
        return Sample(answer["action"])
    content = answer.get("content")
    blocks = content if isinstance(content, list) else [content]
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, Mapping) and b.get("type") == "text")
    return Sample("accept", text, answer.get("model"), dict(answer))
