"""Job tools that ask with the field types a pydantic model gives most often besides plain ones: optional fields
(`X | None = None`), an Enum class (a `$ref` into `$defs`), and string formats the MCP's elicitation schema does not
name (uuid, time). Loaded with `--tools tests.e2e.form_tools`."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel

from vibe_jobs import JobContext, job_tool


class Optionals(BaseModel):
    count: int | None = None
    name: str | None = None
    ok: bool | None = None


class Colour(StrEnum):
    """A colour."""

    RED = "red"
    BLUE = "blue"


class Paint(BaseModel):
    colour: Colour = Colour.RED
    second: Colour | None = None
    extra: list[Colour] = []


class Formats(BaseModel):
    ref: uuid.UUID
    at: dt.time
    day: dt.date


@job_tool(description="Ask for optional fields, then report the values the job's model holds")
async def ask_optional(job: JobContext) -> str:
    answer = await job.elicit("Anything?", Optionals)
    return f"{answer.action} {answer.data!r}"


@job_tool(description="Ask for a colour (an Enum), then report the values the job's model holds")
async def ask_paint(job: JobContext) -> str:
    answer = await job.elicit("Which colour?", Paint)
    return f"{answer.action} {answer.data!r}"


@job_tool(description="Ask for a uuid, a time and a date, then report the values the job's model holds")
async def ask_formats(job: JobContext) -> str:
    answer = await job.elicit("Which?", Formats)
    return f"{answer.action} {answer.data!r}"
