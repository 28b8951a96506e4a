"""Job tools: a function plus how to run it as a job (operation type, time-out, retries, limits).

`@job_tool(...)` marks a module-level function; `JobServer` (and `--tools MODULE`) collect them.
The function's parameters minus the `JobContext` one become the tool's arguments model (`arguments.py`),
built when the tool is declared: the MCP input schema, and the validation of every call and every run.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints, overload

import anyio

from vibe_jobs.arguments import Arguments, ToolArguments
from vibe_jobs.context import JobContext
from vibe_jobs.errors import BadJobTool
from vibe_jobs.firing import check_cron
from vibe_jobs.models import OperationType
from vibe_jobs.results import to_call_result
from vibe_jobs.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

REGISTRY: dict[str, JobToolSpec] = {}


@dataclass(slots=True)
class JobToolSpec:
    name: str
    fn: Callable[..., Any]
    description: str
    operation_type: OperationType | None = None
    timeout: float | None = None
    retry_safe: bool = False
    retry: RetryPolicy | None = None
    max_retries: int | None = None
    max_concurrent: int | None = None
    context_param: str | None = None
    title: str | None = None
    refuse: Callable[[dict[str, Any]], str | None] | None = None
    # ends what a run interrupted by a crash left behind (its processes), from the job's detail metadata;
    # recovery calls it before the job is failed or requeued
    on_interrupted: Callable[[Mapping[str, Any] | None], Awaitable[object]] | None = None
    # a cron expression: the tool also runs on this schedule (no arguments), declared at start-up
    schedule: str | None = None
    arguments: Arguments = field(init=False, repr=False)
    _is_async: bool = field(init=False, repr=False, compare=False)
    # the arguments rule when it is not the function's signature (a proxied tool's JSON schema)
    argument_rule: Arguments | None = field(default=None, repr=False)
    annotations: dict[str, Any] | None = None  # MCP tool annotations (readOnlyHint, idempotentHint, ...)

    def __post_init__(self) -> None:
        if self.context_param is None:
            self.context_param = find_context_param(self.fn)
        self.arguments = self.argument_rule or ToolArguments(self.name, self.fn, self.context_param)
        if self.schedule is not None:  # refused where it is written, not when a server starts
            try:
                self.schedule = check_cron(self.schedule)
            except ValueError as exc:
                raise BadJobTool(f"job tool {self.name}: schedule: {exc}") from None
        self._is_async = inspect.iscoroutinefunction(self.fn)  # asked once: it is asked on every run otherwise

    async def invoke(
        self, params: dict[str, Any], ctx: JobContext, before_call: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Call the function with `params` (the job's stored JSON, validated here into the values its
        parameters declare) and the context; return its CallToolResult dict. Raises InvalidArguments.
        `before_call()` runs last before the function (nothing awaited between): it may raise to stop it."""
        kwargs = self.arguments.typed(params)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if before_call is not None:
            before_call()
        if self._is_async:
            value = await self.fn(**kwargs)
        else:
            value = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs), abandon_on_cancel=True)
        return to_call_result(value)


def find_context_param(fn: Callable[..., Any]) -> str | None:
    """The name of the parameter annotated `JobContext`, if any."""
    try:
        hints = get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    for name, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(name, param.annotation)
        if annotation is JobContext or annotation == "JobContext":
            return name
    return None


def make_spec(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None, **options: Any
) -> JobToolSpec:
    doc = inspect.getdoc(fn) or ""
    return JobToolSpec(
        name=name or fn.__name__, fn=fn, description=description or doc or f"Run {fn.__name__} as a job", **options
    )


@overload
def job_tool(fn: F, /) -> F: ...


@overload
def job_tool(
    *,
    name: str | None = None,
    description: str | None = None,
    operation_type: OperationType | None = None,
    timeout: float | None = None,
    retry_safe: bool = False,
    max_retries: int | None = None,
    retry: RetryPolicy | None = None,
    max_concurrent: int | None = None,
    schedule: str | None = None,
) -> Callable[[F], F]: ...


def job_tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    operation_type: OperationType | None = None,
    timeout: float | None = None,
    retry_safe: bool = False,
    max_retries: int | None = None,
    retry: RetryPolicy | None = None,
    max_concurrent: int | None = None,
    schedule: str | None = None,
) -> Any:
    """Mark a function as a job tool (usable bare, `@job_tool`, or with options). `schedule` (a cron
    expression, read in UTC) also runs it on that schedule, with no arguments: the schedule is created
    or updated when a server or worker starts (`vibe_jobs.engine.schedules.Schedules.declare`)."""

    def mark(f: F) -> F:
        spec = make_spec(
            f,
            name=name,
            description=description,
            operation_type=operation_type,
            timeout=timeout,
            retry_safe=retry_safe,
            max_retries=max_retries,
            retry=retry,
            max_concurrent=max_concurrent,
            schedule=schedule,
        )
        REGISTRY[spec.name] = spec
        return f

    return mark(fn) if fn is not None else mark


PLAIN_REGISTRY: dict[str, tuple[Callable[..., Any], str | None]] = {}


def plain_tool(name: str | None = None, description: str | None = None) -> Callable[[F], F]:
    """Mark a function as an ordinary MCP tool (answers within the request) for `--tools` modules."""

    def mark(f: F) -> F:
        PLAIN_REGISTRY[name or f.__name__] = (f, description)
        return f

    return mark
