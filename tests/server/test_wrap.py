"""A job tool as MCP sees it: its input schema is its own arguments model (the one the MCP SDK would build from
the signature, plus `additionalProperties: false`), and a JobServer used as a library, without an MCP server
built, runs jobs with the same typed arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from pydantic import Field

from tests.arg_types import RAW, TYPED, typed
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.jobtool import JobToolSpec, make_spec
from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.server.schemas import untitled
from vibe_jobs.server.wrap import job_mcp_tool
from vibe_jobs.store import MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore
from vibe_jobs.tools.allowlist import Allowlist
from vibe_jobs.tools.builtin import MapCodebase, RunCommand


async def annotated(
    query: Annotated[str, Field(min_length=1, description="What to look for.")],
    job: JobContext,
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
    mode: Literal["fast", "deep"] = "fast",
    tags: list[str] | None = None,
) -> str:
    return query


def untyped(name, count=3):  # type: ignore[no-untyped-def]  # an unannotated parameter is a string in the schema
    return name


def shadowing(json: str, schema: dict[str, Any] | None = None) -> str:
    return json


LS_ONLY = Allowlist.build("ls", None, root=Path("."), environ={"PATH": "/usr/bin:/bin"})
FUNCTIONS = [
    typed, annotated, untyped, shadowing,
    MapCodebase([Path(".")]).__call__, RunCommand([Path(".")], LS_ONLY).__call__,
]  # fmt: skip


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__qualname__)
def test_the_input_schema_is_the_sdks_plus_no_unknown_arguments(fn: Any) -> None:
    spec = make_spec(fn)
    skip = [spec.context_param] if spec.context_param else []
    sdk = func_metadata(fn, skip_names=skip, structured_output=False).arg_model.model_json_schema(by_alias=True)
    assert spec.arguments.schema() == {**sdk, "additionalProperties": False}


def test_the_mcp_tool_advertises_the_job_tools_own_schema() -> None:
    spec = make_spec(typed, name="typed")
    tool = job_mcp_tool(JobManager(MemoryStore(), Settings()), spec)
    assert tool.parameters == untitled(spec.arguments.schema(), top=True)  # its words, without made-up titles
    assert tool.parameters["additionalProperties"] is False
    started, refused = (tool.output_schema or {})["anyOf"]  # the started answer, or a refusal's error
    assert "jobId" in started["properties"] and refused["required"] == ["error"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_jobserver_used_as_a_library_runs_jobs_with_typed_arguments(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    server = JobServer(store=store)
    server.job_tool(typed, name="typed")  # no build(): no MCP server exists
    assert isinstance(server.specs["typed"], JobToolSpec)
    async with server.manager:
        rec = await server.manager.wait(await server.manager.create_job("typed", RAW), 10)
    assert rec.status is JobStatus.COMPLETED, rec.progress_message
    assert rec.result is not None and rec.result["structuredContent"] == TYPED
