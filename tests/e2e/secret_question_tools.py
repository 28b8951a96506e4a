"""A job tool that asks its user for a secret (loaded with `--tools tests.e2e.secret_question_tools`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vibe_jobs import JobContext, job_tool


class ApiKey(BaseModel):
    api_key: str = Field(min_length=20, pattern=r"^sk-[A-Za-z0-9-]+$", description="the service's API key")


@job_tool(description="Ask for an API key (20 characters at least), then report how long the accepted one was")
async def ask_api_key(job: JobContext) -> str:
    answer = await job.elicit("Your API key?", ApiKey, timeout_seconds=30)
    return f"a key of {len(answer.data.api_key)} characters" if answer.data is not None else answer.action
