"""Job tools that ask questions the MCP cannot carry (loaded with --tools by test_talkback_hostile_e2e)."""

from __future__ import annotations

from typing import Any

from vibe_jobs import Elicitation, JobContext, Sample, job_tool


@job_tool(description="Sample with a text block whose text is a number")
async def sample_number_text(job: JobContext) -> str:
    reply = await job.sample([{"role": "user", "content": {"type": "text", "text": 5}}], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a block of a type no sampling message holds")
async def sample_video(job: JobContext) -> str:
    reply = await job.sample([{"role": "user", "content": [{"type": "video", "url": "x"}]}], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample at a temperature that is no number")
async def sample_hot(job: JobContext) -> str:
    reply = await job.sample("hi", max_tokens=10, temperature="hot")  # type: ignore[arg-type]
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a tool_use block that names no tool")
async def sample_nameless_tool_use(job: JobContext) -> str:
    content = {"type": "tool_use", "id": "call-1", "input": {}}
    reply = await job.sample([{"role": "assistant", "content": content}, "go on"], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a tool_result block that names no tool call")
async def sample_unbound_tool_result(job: JobContext) -> str:
    reply = await job.sample([{"role": "user", "content": {"type": "tool_result", "content": []}}], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a text block whose annotations are a number")
async def sample_numbered_annotations(job: JobContext) -> str:
    reply = await job.sample(
        [{"role": "user", "content": {"type": "text", "text": "hi", "annotations": 5}}], max_tokens=10
    )
    return f"{reply.action} {reply.text}"


@job_tool(description="Ask to pick from choices of mixed types (a string and a number)")
async def pick_mixed(job: JobContext) -> str:
    schema = {"type": "object", "properties": {"pick": {"type": "string", "enum": ["a", 1]}}, "required": ["pick"]}
    answer = await job.elicit("Pick one", schema)
    return f"{answer.action} {answer.content}"


@job_tool(description="Sample with a text block whose priority is past 1 and a temperature past any float")
async def sample_out_of_range(job: JobContext) -> str:
    content = {"type": "text", "text": "hi", "annotations": {"priority": 2}}
    reply = await job.sample([{"role": "user", "content": content}], max_tokens=10, temperature=10**400)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a tool result whose resource link has icons that are a number")
async def sample_iconic_link(job: JobContext) -> str:
    link = {"type": "resource_link", "uri": "file:///a", "name": "a", "icons": 5}
    content = {"type": "tool_result", "toolUseId": "call-1", "content": [link]}
    reply = await job.sample([{"role": "user", "content": content}], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample preferring a cost priority past 1")
async def sample_costly(job: JobContext) -> str:
    reply = await job.sample("hi", max_tokens=10, model_preferences={"costPriority": 5})
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a model hint whose name is null")
async def sample_null_hint(job: JobContext) -> str:
    reply = await job.sample("hi", max_tokens=10, model_preferences={"hints": [{"name": None}]})
    return f"{reply.action} {reply.text}"


@job_tool(description="Ask with a flat JSON schema whose `required` names a field it does not ask for")
async def ask_ghost_required(job: JobContext) -> str:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name", "nmae"]}
    answer = await job.elicit("Your name?", schema, timeout_seconds=30)
    return f"{answer.action} {answer.content}"


@job_tool(description="Ask with a flat JSON schema whose `required` is one string, not a list of names")
async def ask_required_word(job: JobContext) -> str:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": "name"}
    answer = await job.elicit("Your name?", schema, timeout_seconds=30)
    return f"{answer.action} {answer.content}"


@job_tool(description="Ask with a flat JSON schema whose field's type is a list of types")
async def ask_type_list(job: JobContext) -> str:
    schema = {"type": "object", "properties": {"name": {"type": ["string", "null"]}}}
    answer = await job.elicit("Your name?", schema, timeout_seconds=30)
    return f"{answer.action} {answer.content}"


@job_tool(description="A plain def tool asking a person, then the client's model, without await")
def ask_sync(job: JobContext) -> str:
    schema = {"type": "object", "properties": {"pick": {"type": "string", "enum": ["a", "b"]}}, "required": ["pick"]}
    answer = job.elicit("Pick one", schema, timeout_seconds=30)
    assert isinstance(answer, Elicitation)  # typed for `await`: the check narrows it for a type checker
    reply = job.sample(f"Why {answer.content}?", max_tokens=20, timeout_seconds=30)
    assert isinstance(reply, Sample)
    return f"{answer.action} {answer.content} {reply.text}"


@job_tool(description="Ask for one required field `pick` whose schema is `field`")
async def ask_field(job: JobContext, field: dict[str, Any]) -> str:
    schema = {"type": "object", "properties": {"pick": field}, "required": ["pick"]}
    answer = await job.elicit("Pick one", schema, timeout_seconds=30)
    return f"{answer.action} {answer.content}"


@job_tool(description="Ask `count` yes/no questions one after another (a wizard), then report how many were yes")
async def ask_in_turn(job: JobContext, count: int = 12) -> str:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answers = [await job.elicit(f"Step {i + 1} of {count}: go on?", schema, timeout_seconds=30) for i in range(count)]
    return f"{sum(bool(a.content and a.content['ok']) for a in answers)} of {count} yes"


@job_tool(description="Ask to pick any of 14,000 files (a multi-select with many choices), then report the picks")
async def pick_many_files(job: JobContext) -> str:
    choices = [f"file-{i:05d}.txt" for i in range(14_000)]
    schema = {
        "type": "object",
        "properties": {"files": {"type": "array", "items": {"type": "string", "enum": choices}}},
    }
    answer = await job.elicit("Which files?", schema, timeout_seconds=60)
    picks = (answer.content or {}).get("files") or []
    return f"{len(picks)} picks of {', '.join(sorted(set(picks)))}"
