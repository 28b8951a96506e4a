"""Job tools that return what JSON cannot carry (loaded with `--tools tests.e2e.hostile_tools`)."""

from __future__ import annotations

from typing import Any

from tests.arg_types import typed
from vibe_jobs import JobContext, job_tool, plain_tool


@job_tool(description="Return text holding a lone surrogate")
async def surrogate(job: JobContext) -> dict[str, Any]:
    await job.progress(50, "half \udcff way", stage="st\udcffage", metadata={"k\udcff": "v\udcff"})
    job.diagnostic("a diagnostic \udcff line")
    return {"content": [{"type": "text", "text": "bad \udcff end"}], "isError": False}


@job_tool(description="Return structured content holding NaN")
async def not_a_number(job: JobContext) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": "nan"}], "structuredContent": {"x": float("nan")}, "isError": False}


@job_tool(description="Raise deep inside")
async def deep_raise(job: JobContext) -> str:
    def down(n: int) -> str:
        if n == 0:
            raise RuntimeError("boom at the bottom")
        return down(n - 1)

    return down(50)


@job_tool(description="Fail to log in, naming the token in the error (retried once)", retry_safe=True, max_retries=1)
async def leak_token(api_token: str, user: str, job: JobContext) -> str:
    try:
        raise ValueError(f"the server refused {api_token}")
    except ValueError as exc:
        raise RuntimeError(f"login of {user} failed with token {api_token}") from exc


@plain_tool(name="plain-surrogate", description="An ordinary tool whose answer holds a lone surrogate")
async def plain_surrogate() -> str:
    return "bad \udcff end"


job_tool(name="typed-fuzz", description="Report the type each argument arrived as (for the fuzzer)")(typed)


@job_tool(description="Return `kb` kilobytes of text")
async def big(kb: int, job: JobContext) -> str:
    return "z" * (kb * 1024)


@job_tool(description="Return a result nested `depth` levels deep")
async def nested(depth: int, job: JobContext) -> dict[str, Any]:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"down": value}
    return {"top": value}


@job_tool(description="Return `n` emoji (4 bytes of UTF-8 each)")
async def emoji(n: int, job: JobContext) -> str:
    return "\U0001f600" * n


@job_tool(description="Report `metadata_kb` of progress metadata and `diagnostics` long lines, return `kb` of text")
async def chatty(metadata_kb: int, kb: int, job: JobContext, diagnostics: int = 0) -> str:
    await job.progress(50, "half way", metadata={"blob": "m" * (metadata_kb * 1024)})
    for i in range(diagnostics):
        job.diagnostic(f"{i} " + "d" * 1990)
    return "r" * (kb * 1024)


def _shared(kind: str) -> Any:
    """A value holding shared references: a dict that refers to itself twice, or lists 40 levels deep each
    holding the one below twice (no cycle, 2^40 values to whatever walks it as a tree)."""
    if kind == "cycle":
        cycle: dict[str, Any] = {"n": 1}
        cycle["a"] = cycle
        cycle["b"] = cycle
        return cycle
    shared: list[Any] = []
    for _ in range(40):
        shared = [shared, shared]
    return shared


@job_tool(description="Return a CallToolResult whose structuredContent has shared references (kind: cycle, dag)")
async def shared_structured(kind: str, job: JobContext) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": kind}], "structuredContent": {"v": _shared(kind)}}


@job_tool(description="Return a plain value with shared references (kind: cycle, dag)")
async def shared_plain(kind: str, job: JobContext) -> Any:
    return _shared(kind)


@job_tool(description="Return a dict of 1,500,000 flags: 3 MB of JSON, more values than a stored result keeps")
async def many_flags(job: JobContext) -> dict[str, Any]:
    return {"flags": [0] * 1_500_000}


@job_tool(description="Report progress metadata with shared references (kind: cycle, dag), then return")
async def shared_metadata(kind: str, job: JobContext) -> str:
    await job.progress(10, "shared", metadata={"v": _shared(kind)})
    return "reported"


def _unencodable(kind: str) -> Any:
    values: dict[str, Any] = {
        "nan": {"x": float("nan"), "y": [float("inf")]},
        "bytes": {"b": b"\xff\x00"},
        "set": {"s": {1}},
        "bigint": {"n": 10**5000},
        "generator": (i for i in range(3)),
    }
    return values[kind]


@job_tool(description="Return a plain value JSON cannot carry (kind: nan, bytes, set, bigint, generator)")
async def unencodable(kind: str, job: JobContext) -> Any:
    return _unencodable(kind)


class UnprintableError(Exception):
    """An exception whose own text cannot be had: its __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class UndecidableError(Exception):
    """An exception whose `retryable` (read when its job's outcome is decided) raises."""

    @property
    def retryable(self) -> bool:
        raise RuntimeError("retryable exploded")


@job_tool(description="Raise an exception whose __str__ raises")
async def raise_unprintable(job: JobContext) -> str:
    raise UnprintableError


@job_tool(description="Raise an exception whose `retryable` raises")
async def raise_undecidable(job: JobContext) -> str:
    raise UndecidableError("cannot tell")


@job_tool(description="Raise an exception whose message is `mb` megabytes long")
async def raise_huge(mb: int, job: JobContext) -> str:
    raise ValueError("x" * (mb << 20))
