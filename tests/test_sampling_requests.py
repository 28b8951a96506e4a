"""A job's sampling question is stored only if the MCP's CreateMessageRequest can carry it.

`questions.sample_request` checks what a job gives `JobContext.sample()` without the SDK (the core imports no
MCP). What it lets through is put to clients as `sampling/createMessage` (and shown in `waitingFor`): a value the
SDK's model refuses made every long-poll of the job fail for as long as it waited. Here the check is compared with
the SDK's own model on generated inputs, good and hostile: whatever it accepts, the SDK accepts, and whatever it
refuses, it refuses with InvalidParams (never a crash)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import CreateMessageRequestParams

from vibe_jobs.errors import InvalidParams
from vibe_jobs.questions import sample_request

ODD = st.sampled_from(
    [None, True, 0, 1, -1, 0.5, 2, 10**400, math.inf, math.nan, "", "x", "user", [], {}, [1], {"a": 1}, {1: "a"}]
)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a good value, now and then a hostile one: enough well-formed blocks reach the comparison."""
    return st.integers(0, 9).flatmap(lambda i: good if i else ODD)


S = mostly(st.text(max_size=3))
ANNOTATIONS = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "audience": mostly(st.lists(st.sampled_from(["user", "assistant"]), max_size=2)),
            "priority": mostly(st.floats(0, 1)),
            "lastModified": S,
        },
    )
)
COMMON = {"annotations": ANNOTATIONS, "_meta": mostly(st.just({"k": 1}))}
RESOURCE = mostly(
    st.one_of(
        st.fixed_dictionaries({"uri": S, "text": S}, optional={"mimeType": S}),
        st.fixed_dictionaries({"uri": S, "blob": S}, optional={"_meta": mostly(st.just({}))}),
    )
)


def typed(kind: Any, required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(required, optional={**COMMON, **(optional or {})})
    return st.builds(lambda t, rest: {"type": t, **rest}, mostly(st.just(kind)), fields)


ICONS = mostly(
    st.lists(
        mostly(
            st.fixed_dictionaries(
                {"src": S},
                optional={
                    "mimeType": S,
                    "sizes": mostly(st.lists(S, max_size=2)),
                    "theme": mostly(st.sampled_from(["light", "dark"])),
                },
            )
        ),
        max_size=2,
    )
)
INNER = st.one_of(
    typed("text", {"text": S}),
    typed("image", {"data": S, "mimeType": S}),
    typed(
        "resource_link",
        {"uri": S, "name": S},
        {"title": S, "description": S, "mimeType": S, "size": mostly(st.integers()), "icons": ICONS},
    ),
    typed("resource", {"resource": RESOURCE}),
    typed(st.sampled_from(["tool_use", "video"]), {}),
    ODD,
)
BLOCK = st.one_of(
    typed("text", {"text": S}),
    typed("audio", {"data": S, "mimeType": S}),
    typed("tool_use", {"id": S, "name": S, "input": mostly(st.just({"a": 1}))}),
    typed(
        "tool_result",
        {"toolUseId": S},
        {"content": mostly(st.lists(INNER, max_size=3)), "isError": mostly(st.booleans())},
    ),
    typed(st.sampled_from(["resource", "resource_link", "video"]), {"uri": S}),
    ODD,
)
NUMBER = mostly(st.one_of(st.floats(), st.integers(), st.just(10**400)))


MESSAGE = mostly(
    st.one_of(
        st.text(max_size=5),
        st.fixed_dictionaries(
            {"content": mostly(st.one_of(st.text(max_size=3), BLOCK, st.lists(BLOCK, max_size=3)))},
            optional={"role": mostly(st.sampled_from(["user", "assistant"]))},
        ),
    )
)
HINTS = mostly(st.lists(mostly(st.fixed_dictionaries({}, optional={"name": S})), max_size=2))
PRIORITIES = {name: NUMBER for name in ("costPriority", "speedPriority", "intelligencePriority")}
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "system": S,
        "temperature": NUMBER,
        "stop_sequences": mostly(st.lists(S, max_size=2)),
        "model_preferences": mostly(st.fixed_dictionaries({}, optional={"hints": HINTS, **PRIORITIES})),
    },
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.one_of(st.lists(MESSAGE, min_size=1, max_size=3), st.text(max_size=3)), options=OPTIONS)
def test_what_sample_accepts_the_mcp_request_carries_and_what_it_refuses_it_names(
    messages: Any, options: dict[str, Any]
) -> None:
    try:
        request = sample_request(messages, max_tokens=10, **options)
    except InvalidParams:
        return
    params = request["params"]
    json.dumps(params, allow_nan=False)  # stored and sent as JSON: no NaN or infinity
    CreateMessageRequestParams.model_validate(params)


TOOL_USE = {"type": "tool_use", "id": "call-1", "name": "lookup", "input": {}}
LINK = {"type": "resource_link", "uri": "file:///a", "name": "a"}


def tool_result(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_result", "toolUseId": "call-1", "content": list(blocks)}


@pytest.mark.parametrize(
    ("messages", "options", "says"),
    [
        ("hi", {"temperature": 10**400}, "temperature must be a finite number"),
        ("hi", {"temperature": math.nan}, "temperature must be a finite number"),
        ([5], {}, "a sampling message is a string or an object {role, content}"),
        ("hi", {"stop_sequences": "END"}, "stop_sequences must be a list of strings"),  # not E, N and D
        ([{"content": {"type": "text", "text": "x", "annotations": {"priority": 2}}}], {}, "priority"),
        ([{"content": {"type": "text", "text": "x", "annotations": {"audience": "user"}}}], {}, "audience"),
        ([{"content": {"type": "text", "text": "x", "_meta": {1: "a"}}}], {}, "_meta must be an object"),
        ([{"role": "assistant", "content": TOOL_USE | {"input": {1: 2}}}], {}, "input must be an object"),
        ([{"content": tool_result(LINK | {"icons": 5})}], {}, "a resource_link block's icons must be a list"),
        ([{"content": tool_result(LINK | {"icons": [{"sizes": ["1x1"]}]})}], {}, "icons must be a list"),
        ([{"content": tool_result(LINK | {"icons": [{"src": "s", "theme": "blue"}]})}], {}, "icons must be a list"),
        (None, {}, "messages are a string or a list of messages"),
        (5, {}, "messages are a string or a list of messages"),
        ({"role": "user", "content": "hi"}, {}, "messages are a string or a list of messages"),  # not its keys
        ("hi", {"max_tokens": True}, "max_tokens must be a positive whole number"),
    ],
)
def test_a_sampling_question_the_mcp_cannot_carry_is_refused_naming_the_problem(
    messages: Any, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidParams, match=re.escape(says) if "{" in says else says):
        sample_request(messages, **{"max_tokens": 10, **options})


def test_a_resource_link_with_icons_is_carried() -> None:
    icons = [{"src": "https://x/i.png", "mimeType": "image/png", "sizes": ["48x48"], "theme": "dark"}]
    params = sample_request([{"content": tool_result(LINK | {"icons": icons})}], max_tokens=10)["params"]
    CreateMessageRequestParams.model_validate(params)


def test_a_sampling_question_the_mcp_carries_is_not_refused() -> None:
    """What the SDK's model takes as it is (a size of 5.0, an audience as a tuple) is kept (a job asking it failed)."""
    link = {"type": "resource_link", "uri": "file:///a", "name": "a", "size": 5.0}
    link["annotations"] = {"audience": ("user",), "priority": 1}
    block = {"type": "tool_result", "toolUseId": "t1", "content": [link]}
    request = sample_request([{"role": "user", "content": block}], max_tokens=10)
    CreateMessageRequestParams.model_validate(request["params"])
