"""Logging: structlog to stderr (JSON when stderr is not a terminal), one event name per happening."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import ValidationError

from vibe_jobs.redact import MASK, is_secret, may_hold_url_secret, redact_bearer, redact_params, redact_urls_in

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_level = logging.INFO
_renderer: Any = structlog.processors.JSONRenderer()


def debug_enabled() -> bool:
    """Whether debug events are written (hot paths check this before building one)."""
    return _level <= logging.DEBUG


class _Stderr:
    """Whatever `sys.stderr` is when a line is written, not the stream it was when logging was set up: an
    application's redirect, or a test's capture that was closed since (a line then raised "I/O operation on
    closed file" in whatever code logged it). A line that cannot be written (a log file at the file-size limit,
    RLIMIT_FSIZE: EFBIG; a full disk; a closed pipe) is dropped: it raised in the code that logged it, and a
    job whose failure was being logged stayed running for ever."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except OSError:
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            sys.stderr.flush()


STDERR = _Stderr()


def terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal that takes control sequences (a redrawn line, colours): a TTY whose TERM is
    not `dumb`."""
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"


def colours(stream: Any) -> bool:
    """Whether what is written to `stream` may be coloured: a `terminal`, and NO_COLOR unset or empty
    (no-color.org)."""
    return terminal(stream) and not os.environ.get("NO_COLOR")


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Send structlog output to stderr; never to stdout (stdout carries the MCP protocol on stdio). The console
    format is coloured only where `colours` allows (it was always: escape codes in a log file, under NO_COLOR,
    on TERM=dumb)."""
    global _level
    _level = _LEVELS.get(level, logging.INFO)
    global _renderer
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=colours(sys.stderr))
    )
    _renderer = renderer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            redact_event,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            without_validation_input,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=structlog.PrintLoggerFactory(file=STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def default_logging(level: str = "info", fmt: str = "auto") -> None:
    """`configure_logging`, unless the program set structlog up itself: structlog's own default writes to stdout,
    which a stdio server's protocol holds (a library user's program that awaits `JobServer.serve`, or runs a
    `JobManager` beside an MCP server of its own, wrote log lines into the protocol's stream)."""
    if not structlog.is_configured():
        configure_logging(level, fmt)


def uvicorn_log_config(connections: int | None = None) -> dict[str, Any]:
    """uvicorn's logging (its start-up lines, errors, the access log) as structlog writes: to stderr, JSON when
    ours is, redacted. uvicorn's own configuration sends the access log to stdout as plain text. `connections`:
    its limit of connections, named by `ConnectionsRefused`."""
    formatter = {"()": structlog.stdlib.ProcessorFormatter, **_formatter_args()}
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "structlog",
        "filters": ["refused"],
    }
    level = logging.getLevelName(_level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": formatter},
        "filters": {"refused": {"()": ConnectionsRefused, "limit": connections}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class ConnectionsRefused(logging.Filter):
    """A logging filter: uvicorn answers 503 to each request past its limit of connections (`limit_concurrency`)
    and logged "Exceeded concurrency limit." for each, a line per request under the load that causes them. Said
    once a minute instead, naming the limit."""

    EVERY = 60.0  # seconds

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit
        self._said = -self.EVERY  # when it was last said (monotonic)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Exceeded concurrency limit.":
            return True
        now = time.monotonic()
        if now - self._said < self.EVERY:
            return False
        self._said = now
        record.msg = (
            f"http.connections_limit: requests past the limit of {self.limit} connections are answered 503 "
            "(the open-files limit, RLIMIT_NOFILE, less what jobs keep); said once a minute"
        )
        return True


# Libraries that log whole request or response bodies at debug level (sse_starlette: every event it sends, job
# results and questions with whatever secrets a tool returned; the SDK's SSE transport: every request body and
# every answer): never below info.
BODY_LOGGERS = ("sse_starlette", "mcp.server.sse")


def own_stdlib_logging() -> None:
    """Python's logging (the MCP SDK's and its libraries') written as ours: to stderr, redacted, at our level,
    unless someone (an application using us as a library, a test) set up the root logger already. Before the
    MCPServer is built: it sets up the root logger itself when nobody has, printing everything unredacted."""
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, _level))
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(STDERR)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(**_formatter_args()))
    handler.addFilter(validation_args_without_input)
    handler.addFilter(client_gone_without_traceback)
    root.addHandler(handler)
    root.setLevel(_level)


def _formatter_args() -> dict[str, Any]:
    return {
        "foreign_pre_chain": [
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_event,
            without_validation_input,
            structlog.processors.format_exc_info,  # "Exception in ASGI application" keeps its traceback
            _renderer,
        ],
    }


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: secret-named fields, secrets inside params, URL passwords become `***`."""
    for key, value in event.items():
        if key != "event" and is_secret(key) and not (value is None or isinstance(value, bool)):
            event[key] = MASK  # a yes or no is no secret (`authenticated=True` was shown as ***)
        elif isinstance(value, dict):
            event[key] = redact_params(value)
        elif isinstance(value, str):
            value = redact_urls_in(value) if may_hold_url_secret(value) else value
            event[key] = redact_bearer(value)
    return event


def without_validation_input(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: a pydantic ValidationError logged with its traceback (the SDK's SSE transport logs
    one for each body it cannot parse) is written as its errors without the input, which its text quotes (the
    start and end of a request body: a secret argument). Where it was raised stays: its stack, without values."""
    exc = _logged_exception(event.get("exc_info"))
    if isinstance(exc, ValidationError):
        del event["exc_info"]
        event["error"] = without_input(exc)
        event["stack"] = "".join(traceback.format_tb(exc.__traceback__)) or None
    return event


def validation_args_without_input(record: logging.LogRecord) -> bool:
    """A logging filter: a ValidationError given as an argument of a record's message (the SDK's dispatcher logs
    `transport yielded exception: %r` at debug level for each body it cannot parse) is formatted as its errors
    without the input, as one logged with its traceback is (`without_validation_input`)."""
    if isinstance(record.args, tuple) and any(isinstance(arg, ValidationError) for arg in record.args):
        record.args = tuple(without_input(arg) if isinstance(arg, ValidationError) else arg for arg in record.args)
    return True


def client_gone_without_traceback(record: logging.LogRecord) -> bool:
    """A logging filter: a request whose client went away before its body was read (Starlette's ClientDisconnect,
    which the SDK's streamable HTTP transport logs as an error with a 30-line traceback) is one info line: a
    flaky network or a client killed mid-request is no error of the server's, and over weeks those tracebacks
    filled the log. Dropped below info, as any info line is."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None or type(exc).__name__ != "ClientDisconnect" or not type(exc).__module__.startswith("starlette"):
        return True
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    record.levelno, record.levelname = logging.INFO, "INFO"
    record.msg, record.args = "a client disconnected before its request was read", ()
    return logging.getLogger().getEffectiveLevel() <= logging.INFO


SHOWN_PROBLEMS = 5  # a ValidationError's problems named; past them, how many more


def without_input(exc: ValidationError, whole: str | None = None) -> str:
    """What a ValidationError says is wrong, without the input its text quotes (a request body's start and end):
    each problem's place (`whole`, default the model's title, for the input as a whole) and message, the first
    SHOWN_PROBLEMS of them and how many more."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    shown = [f"{'.'.join(map(str, e['loc'])) or whole or exc.title}: {e['msg']}" for e in errors[:SHOWN_PROBLEMS]]
    more = len(errors) - SHOWN_PROBLEMS
    return "; ".join([*shown, f"and {more} more"] if more > 0 else shown)


def _logged_exception(exc_info: Any) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) > 1 else None
    return exc_info if isinstance(exc_info, BaseException) else None


def get_logger(name: str = "vibe_jobs") -> Any:
    return structlog.get_logger(name)
