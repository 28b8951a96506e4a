"""Mistakes an agent makes when it writes a call from memory, against the real server over every transport and
era: each refusal is isError, names the problem and says what is accepted instead."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_jobs_e2e import texts

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("called", "meant"),
    [
        ("get_job_result", "get-job-result"),  # the snake_case of a kebab-case name
        ("getJobResult", "get-job-result"),  # its camelCase
        ("cancel_job", "cancel-job"),
        ("list-job", "list-jobs"),
        ("pick_python", "pick-python"),
    ],
)
async def test_a_misspelt_tool_name_is_refused_naming_the_tool_meant(
    connect: ClientFactory, called: str, meant: str
) -> None:
    """The SDK answered 'Unknown tool: get_job_result' and nothing else: an agent that wrote the name from memory
    was not told which name this server has."""
    async with connect() as client:
        result = await client.call_tool(called, {"jobId": "x"})
    said = texts(result)
    assert result.is_error, said
    assert f"Unknown tool: {called}" in said and f"did you mean '{meant}'?" in said, said


async def test_an_unknown_tool_is_refused_listing_the_tools(connect: ClientFactory) -> None:
    async with connect() as client:
        result = await client.call_tool("frobnicate", {})
    said = texts(result)
    assert result.is_error and "Unknown tool: frobnicate" in said, said
    assert "did you mean" not in said and all(name in said for name in ("get-job-result", "sleepy", "list-jobs"))


@pytest.mark.parametrize("tool", ["get-job-result", "cancel-job", "answer-job"])
async def test_a_job_id_of_another_shape_is_refused_saying_which_ids_are_known(
    connect: ClientFactory, tool: str
) -> None:
    """An id copied wrong (upper case, or written as a UUID) got only "No job with id '...'":
    nothing said where the ids this caller can use are found."""
    async with connect() as client:
        job_id = str(((await client.call_tool("noop", {})).structured_content or {})["jobId"])
        for wrong in (job_id.upper(), f"{job_id[:8]}-{job_id[8:12]}-{job_id[12:16]}-{job_id[16:20]}-{job_id[20:]}"):
            result = await client.call_tool(tool, {"jobId": wrong})
            said = texts(result)
            assert result.is_error and f"No job with id '{wrong}'" in said, said
            assert "list-jobs" in said and "jobId" in said, said
            assert (result.structured_content or {})["error"]["code"] == "job_not_found"


async def test_a_made_up_cursor_is_refused_saying_which_cursor_is_accepted(connect: ClientFactory) -> None:
    """An agent that guessed a cursor ("2", a job id) was told it was not one, not what to pass instead."""
    async with connect() as client:
        result = await client.call_tool("list-jobs", {"cursor": "2"})
    said = texts(result)
    assert result.is_error and "is not a cursor this server gave out" in said, said
    assert "nextCursor" in said and "first page" in said, said
