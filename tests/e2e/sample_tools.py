"""Job tools for the end-to-end tests (loaded with `--tools tests.e2e.sample_tools`)."""

from __future__ import annotations

import datetime as dt
import itertools
from enum import Enum
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from tests.arg_types import typed
from vibe_jobs import JobContext, job_tool, plain_tool


class Slept(BaseModel):
    seconds: float
    steps: int


@job_tool(description="Sleep for a while, reporting progress in steps", operation_type="analysis")
async def sleepy(seconds: float, job: JobContext, steps: int = 5) -> Slept:
    for i in range(steps):
        await anyio.sleep(seconds / steps)
        await job.progress(100 * (i + 1) / steps, f"step {i + 1} of {steps}", stage="sleep", sub_progress=50)
    return Slept(seconds=seconds, steps=steps)


@job_tool(description="Fail with the given message")
async def explode(message: str, job: JobContext) -> str:
    job.diagnostic("about to explode")
    raise ValueError(message)


@job_tool(description="Wait until cancelled; records that it observed the cancellation")
async def wait_forever(job: JobContext) -> str:
    try:
        await anyio.sleep_forever()
    finally:
        job.diagnostic("observed cancellation")
    return "unreachable"


@job_tool(description="Return at once")
async def noop(job: JobContext) -> str:
    return "done"


STARTS = itertools.count(1)


@job_tool(description="Echo the text back; `seq` numbers the order in which echo jobs ran")
async def echo(text: str, count: int = 1) -> dict[str, object]:
    return {"text": text * count, "count": count, "seq": next(STARTS)}


@job_tool(description="Sign in: answers what it received (the tool sees secrets that listings redact)")
async def login(user: str, api_token: str, env: dict[str, str] | None = None) -> dict[str, object]:
    return {"user": user, "apiToken": api_token, "env": env or {}}


class Python(Enum):
    """Values that read as JSON numbers (`3.10` as JSON is 3.1)."""

    OLD = "3.10"
    NEW = "3.12"


@job_tool(name="pick-python", description="Answer the Python version picked (an enum: a $ref in the input schema)")
async def pick_python(version: Python, fallback: Python | None = None) -> str:
    return f"{version.value} {fallback.value if fallback else '-'}"


@plain_tool(name="plain-noop", description="An ordinary tool that answers at once")
async def plain_noop() -> str:
    return "ok"


job_tool(name="typed", description="Report the type each argument arrived as")(typed)


class Confirm(BaseModel):
    confirm: bool


@job_tool(description="Ask the user a yes/no question, then report what the answer was")
async def confirm(job: JobContext, question: str = "Delete 312 files?", wait: float | None = None) -> str:
    await job.progress(10, "about to ask")
    answer = await job.elicit(question, Confirm, timeout_seconds=wait)
    if answer.data is not None:
        return "deleted" if answer.data.confirm else "kept"
    return f"no answer: {answer.action}"


@job_tool(description="Ask a first question (answered within `wait` seconds or not at all), then a second one")
async def two_questions(job: JobContext, wait: float = 0.5) -> str:
    first = await job.elicit("Delete ALL production data?", Confirm, timeout_seconds=wait)
    second = await job.elicit("Keep a backup first?", Confirm)
    return f"first {first.action} {first.data}; second {second.action} {second.data}"


class Code(BaseModel):
    code: str = Field(pattern=r"^[0-9]{4}$", description="four digits")
    when: dt.date


@job_tool(description="Ask for a four-digit code and a date (a pattern and a format the flat check cannot test)")
async def ask_code(job: JobContext) -> str:
    answer = await job.elicit("Code and date?", Code)
    return f"{answer.data.code} {answer.data.when.isoformat()}" if answer.data is not None else answer.action


class Count(BaseModel):
    count: int = Field(ge=0, le=10)
    label: str = Field(default="", max_length=8)


@job_tool(description="Ask how many (0 to 10), then report the answer")
async def ask_count(job: JobContext) -> str:
    answer = await job.elicit("How many (0-10)?", Count)
    return f"{answer.data.count} {answer.data.label}".strip() if answer.data is not None else answer.action


@job_tool(description="Ask the client's model three questions and return the three replies")
async def ask_model(job: JobContext, topic: str = "jobs") -> list[str]:
    replies = []
    for i in range(3):
        reply = await job.sample(f"question {i + 1} about {topic}", max_tokens=50, system="be brief")
        replies.append(reply.text if reply.text is not None else f"<{reply.action}>")
    return replies


@job_tool(description="Sample once and report the reply's text and the keys of the result the client sent")
async def sample_keys(job: JobContext) -> str:
    reply = await job.sample("hello", max_tokens=10)
    return f"{reply.action} {reply.text} {sorted(reply.result or {})}"


class Note(BaseModel):
    note: str = ""


@job_tool(description="Ask for an optional note (a schema with no required field), then report the content given")
async def ask_note(job: JobContext) -> str:
    answer = await job.elicit("Any note?", Note)
    return f"{answer.action} {answer.content}"


class Colours(BaseModel):
    colours: list[Literal["red", "green", "blue"]]


@job_tool(description="Ask for any number of colours (a multi-select), then report them")
async def pick_colours(job: JobContext) -> str:
    answer = await job.elicit("Which colours?", Colours)
    return ",".join(answer.data.colours) if answer.data is not None else answer.action


@job_tool(description="Sample with a message whose content is a list of blocks, then report the reply")
async def sample_blocks(job: JobContext) -> str:
    blocks = [{"type": "text", "text": "first block"}, {"type": "text", "text": "second block"}]
    reply = await job.sample([{"role": "user", "content": blocks}], max_tokens=10)
    return f"{reply.action} {reply.text}"


@job_tool(description="Sample with a message whose content is a list of one block, then report the reply")
async def sample_one_block(job: JobContext) -> str:
    reply = await job.sample([{"role": "user", "content": [{"type": "text", "text": "one block"}]}], max_tokens=10)
    return f"{reply.action} {reply.text}"
