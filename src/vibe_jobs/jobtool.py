"""Job tools: a function plus how to run it as a job (operation type, time-out, retries, limits).

`@job_tool(...)` marks a module-level function; `JobServer` (and `--tools MODULE`) collect them.
The function's parameters minus the `JobContext` one become the tool's arguments model (`arguments.py`),
built when the tool is declared: the MCP input schema, and the validation of every call and every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, TypeVar, Unpack, get_args, get_type_hints, overload

import anyio
from pydantic import BaseModel, Field, ValidationError

from vibe_jobs.arguments import Arguments, ToolArguments
from vibe_jobs.context import JobContext
from vibe_jobs.errors import BadJobTool, InvalidArguments
from vibe_jobs.firing import check_cron
from vibe_jobs.models import OperationType, PositiveSeconds
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
    # the description is listed as given, without the note that the tool runs as a job (a proxied tool's)
    verbatim_description: bool = False

    def __post_init__(self) -> None:
        if self.argument_rule is None:  # a function declared here (a proxied tool keeps its upstream's name)
            check_tool_name(self.name, "job tool")
        self._check_options()
        if self.context_param is None:
            self.context_param = find_context_param(self.fn)
        if self.argument_rule is None:
            self._check_function()
        self.arguments = self.argument_rule or ToolArguments(self.name, self.fn, self.context_param)
        if self.schedule is not None:  # refused where it is written, not when a server starts
            self.schedule = self._checked_schedule(self.schedule)
        self._is_async = inspect.iscoroutinefunction(self.fn)  # asked once: it is asked on every run otherwise

    def _check_options(self) -> None:
        """BadJobTool naming an option no job could run under (`timeout=0`: every job timed out at once;
        `max_concurrent=0`: every job pending for ever)."""
        values = {option: getattr(self, option) for option in _OptionRules.model_fields}
        try:
            _OptionRules.model_validate(values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            option = str(error["loc"][0])
            raise BadJobTool(f"job tool {self.name}: {option}={values[option]!r}: {error['msg']}") from None

    def _check_function(self) -> None:
        """BadJobTool for a function no job can run as: a generator (its job's result was the generator object,
        never run), or a parameter other than the context that mentions JobContext (`JobContext | None`)."""
        if inspect.isgeneratorfunction(self.fn) or inspect.isasyncgenfunction(self.fn):
            raise BadJobTool(
                f"job tool {self.name}: it is a generator function, and a job's result is what its function "
                "returns: return its result (report progress with job.progress)"
            )
        for name, annotation in _annotations(self.fn).items():
            if name != self.context_param and _mentions_context(annotation):
                raise BadJobTool(
                    f"job tool {self.name}: parameter {name}: every run of a job tool is given one JobContext, "
                    "never None: annotate it JobContext"
                )

    def _checked_schedule(self, cron: str) -> str:
        """The declared schedule, normalised; BadJobTool when its cron is bad or the tool cannot run with no
        arguments (as each of its firings does)."""
        try:
            normal = check_cron(cron)
            self.arguments.check({})
        except InvalidArguments as exc:
            raise BadJobTool(f"job tool {self.name}: schedule: it runs the tool with no arguments: {exc}") from None
        except ValueError as exc:
            raise BadJobTool(f"job tool {self.name}: schedule: {exc}") from None
        return normal

    @property
    def runs_in_thread(self) -> bool:
        """A plain (sync) function: it runs in a worker thread."""
        return not self._is_async

    async def invoke(
        self,
        params: dict[str, Any],
        ctx: JobContext,
        before_call: Callable[[], None] | None = None,
        thread: ThreadCall | None = None,
    ) -> dict[str, Any]:
        """Call the function with `params` (the job's stored JSON, validated here into the values its
        parameters declare) and the context; return its CallToolResult dict. Raises InvalidArguments.
        `before_call()` runs last before the function (nothing awaited between): it may raise to stop it.
        A plain (sync) function runs in a worker thread of `ctx.threads` (the jobs' own, not the server's),
        as `thread` (a cancelled run stops waiting for it, but the thread goes on: see `ThreadCall`)."""
        kwargs = self.arguments.typed(params)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if before_call is not None:
            before_call()
        if self._is_async:
            value = await self.fn(**kwargs)
        else:
            value = await (thread or ThreadCall()).run(lambda: self.fn(**kwargs), ctx.threads)
        return to_call_result(value)


class ThreadCall:
    """A sync job tool's call in a worker thread. A thread cannot be stopped: a cancelled run stops waiting
    for it at once (`run`), then asks `going_on()`; when the call had started, it goes on, and `returned` is
    set when it ends (the executor keeps the job's slot until then). A call not started by then never starts."""

    def __init__(self) -> None:
        self.returned = anyio.Event()
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "running" -> "returned", or -> "given up" (it never starts)
        self._loop = asyncio.get_running_loop()

    async def run(self, fn: Callable[[], Any], limiter: anyio.CapacityLimiter | None) -> Any:
        try:
            return await anyio.to_thread.run_sync(self._call, fn, abandon_on_cancel=True, limiter=limiter)
        except _Raised as exc:
            raise exc.raised from None  # out of anyio's frames: raised on as itself

    def going_on(self) -> bool:
        """True while the call runs in its thread (a call that has not started is given up: it never will)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "given up"
            return self._state == "running"

    def _call(self, fn: Callable[[], Any]) -> Any:  # in the worker thread
        with self._lock:
            if self._state == "given up":
                return None  # nobody waits for it: its run ended before it started
            self._state = "running"
        try:
            return fn()
        except Exception:
            raise
        except BaseException as exc:  # SystemExit, GeneratorExit...: not through anyio's thread machinery
            raise _Raised(exc) from None  # (a GeneratorExit raised through its coroutines ends the event loop)
        finally:
            with self._lock:
                self._state = "returned"
            with contextlib.suppress(RuntimeError):  # the event loop closed meanwhile: nobody waits
                self._loop.call_soon_threadsafe(self.returned.set)


class _OptionRules(BaseModel):
    """A job tool's options that a job runs under, as `JobToolSpec._check_options` holds them to."""

    timeout: PositiveSeconds | None
    max_retries: Annotated[int, Field(ge=0)] | None
    max_concurrent: Annotated[int, Field(ge=1)] | None
    operation_type: OperationType | None


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """Each parameter's annotation, resolved where it can be."""
    try:
        hints = get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    return {name: hints.get(name, param.annotation) for name, param in inspect.signature(fn).parameters.items()}


def _is_context(annotation: Any) -> bool:
    return annotation is JobContext or annotation == "JobContext"


def _mentions_context(annotation: Any) -> bool:
    return _is_context(annotation) or any(_mentions_context(arg) for arg in get_args(annotation))


def find_context_param(fn: Callable[..., Any]) -> str | None:
    """The name of the parameter annotated `JobContext`, if any."""
    return next((name for name, a in _annotations(fn).items() if _is_context(a)), None)


def make_spec(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None, **options: Any
) -> JobToolSpec:
    doc = inspect.getdoc(fn) or ""
    return JobToolSpec(
        name=name or fn.__name__, fn=fn, description=description or doc or f"Run {fn.__name__} as a job", **options
    )


class JobToolOptions(TypedDict, total=False):
    """A job tool's options, as `job_tool`, `JobServer.job_tool` and `make_spec` take them."""

    name: str | None
    description: str | None
    operation_type: OperationType | None
    timeout: float | None
    retry_safe: bool
    max_retries: int | None
    retry: RetryPolicy | None
    max_concurrent: int | None
    schedule: str | None


@overload
def job_tool(fn: F, /) -> F: ...


@overload
def job_tool(**options: Unpack[JobToolOptions]) -> Callable[[F], F]: ...


def job_tool(fn: F | None = None, /, **options: Unpack[JobToolOptions]) -> Any:
    """Mark a function as a job tool (usable bare, `@job_tool`, or with options). `schedule` (a cron
    expression, read in UTC) also runs it on that schedule, with no arguments: the schedule is created
    or updated when a server or worker starts (`vibe_jobs.engine.schedules.Schedules.declare`)."""

    def mark(f: F) -> F:
        spec = make_spec(f, **options)
        _check_unclaimed(spec.name, f)
        REGISTRY[spec.name] = spec
        return f

    return mark(fn) if fn is not None else mark


def marked_spec(fn: Callable[..., Any]) -> JobToolSpec | None:
    """The spec `@job_tool(...)` made of `fn`, with the options written there; None when `fn` is not marked."""
    return next((spec for spec in REGISTRY.values() if spec.fn is fn), None)


PLAIN_REGISTRY: dict[str, tuple[Callable[..., Any], str | None]] = {}


@overload
def plain_tool(fn: F, /) -> F: ...


@overload
def plain_tool(name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def plain_tool(name: Any = None, description: str | None = None) -> Any:
    """Mark a function as an ordinary MCP tool (answers within the request) for `--tools` modules (usable bare,
    `@plain_tool`, or with a name and description)."""

    def mark(f: F) -> F:
        check_plain(f, name)
        _check_unclaimed(name or f.__name__, f)
        PLAIN_REGISTRY[name or f.__name__] = (f, description)
        return f

    if callable(name):  # bare: the function itself (it went in as the name, and nothing was registered)
        fn, name = name, None
        return mark(fn)
    return mark


def _check_unclaimed(name: str, fn: Callable[..., Any]) -> None:
    """BadJobTool when another function (of another module, or another name in one) declared a tool of `name`
    (the later one took the name silently); the same function declared again (a module run twice) replaces it."""
    found = REGISTRY[name].fn if name in REGISTRY else PLAIN_REGISTRY.get(name, (None, None))[0]
    if found is not None and _where(found) != _where(fn):
        raise BadJobTool(f"tool {name}: declared twice, by {_where(found)} and by {_where(fn)}; one name, one tool")


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


TOOL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")  # the MCP's tool names (SEP-986)


def check_tool_name(name: str, kind: str) -> None:
    """BadJobTool for a name that is no MCP tool name: a client that holds to them refuses the tool (or the list)."""
    if not TOOL_NAME.fullmatch(name):
        raise BadJobTool(
            f"{kind} {name[:64]!r}: its name must be 1 to 128 of the letters A-Z and a-z, digits, '_', '-' and '.' "
            "(MCP tool names, SEP-986): a client may refuse any other"
        )


def check_plain(fn: Callable[..., Any], name: str | None = None) -> None:
    """BadJobTool for an ordinary tool that takes a `JobContext` (it was meant as a job tool) or whose name is no MCP
    tool name."""
    check_tool_name(name or fn.__name__, "tool")
    if (param := find_context_param(fn)) is not None:
        raise BadJobTool(
            f"tool {name or fn.__name__}: it takes a JobContext ({param}), so it is a job tool: declare it with "
            "@job_tool (JobServer.job_tool); an ordinary tool (@plain_tool, JobServer.tool) answers within the request"
        )


class _Raised(Exception):
    """What a sync tool raised that is not an Exception, carried out of its thread (`ThreadCall`)."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(raised)
        self.raised = raised
