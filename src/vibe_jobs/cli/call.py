"""`vibe-jobs call TOOL ...`: an MCP client for people.

It starts a server over stdio (or connects to `--url`), calls the tool and, when the answer is a
job, follows it with `vibe_jobs.client.call_and_wait` (long-polls of get-job-result), drawing
progress on stderr, then prints the result on stdout. Exit codes: 0 completed, 1 failed or
cancelled (or a tool error), 2 usage or connection error, 124 `--timeout` passed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import anyio

from vibe_jobs.cli import flags
from vibe_jobs.cli.ask import TerminalAsker
from vibe_jobs.cli.jobs import result_text, say
from vibe_jobs.errors import first_leaf
from vibe_jobs.logs import terminal
from vibe_jobs.redact import redact_url
from vibe_jobs.settings import Settings
from vibe_jobs.states import FINAL
from vibe_jobs.tools.printable import printable, printable_lines
from vibe_jobs.urls import check_server_url

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from mcp import Client
    from mcp_types import CallToolResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 124, 130
WAIT_SECONDS = 30
BAR_WIDTH = 24


class Interrupted(Exception):
    """The user pressed Ctrl-C twice: stop following."""


def add_call_parser(sub: Any) -> None:
    """Register `call` on the top-level subparsers."""
    call = sub.add_parser("call", help="call a tool and follow its job to the end")
    # required; `--json TOOL` may take it (split_json_flag)
    call.add_argument("tool", metavar="TOOL", nargs="?", help="the tool to call (a job tool, or any other)")
    call.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="JSON value or string; repeat")
    call.add_argument("--json-args", metavar="JSON", help="the arguments as one JSON object (--arg overrides keys)")
    target = call.add_mutually_exclusive_group()
    target.add_argument("--server-cmd", metavar="COMMAND", help="start this server over stdio (shell-quoted)")
    target.add_argument("--url", help="connect to a running server (streamable HTTP; a /sse path uses SSE)")
    call.add_argument(
        "--token",
        help="bearer token for --url (default: env VIBE_JOBS_TOKEN; the environment keeps it out of `ps`)",
    )
    call.add_argument("--no-wait", action="store_true", help="print the jobId and exit (with --url)")
    call.add_argument(
        "--json",
        action="append",
        nargs="?",
        const=True,
        default=[],
        metavar="OBJECT",
        help="with a JSON object: the tool's arguments; bare: print JSON (the final JobStatusMessage)",
    )
    call.add_argument("--output", choices=["text", "json"], default="text", help="how to print the result")
    call.add_argument("--timeout", type=flags.seconds, metavar="SECONDS", help="give up after this many seconds")
    call.add_argument("--legacy", action="store_true", help="use the 2025-11-25 protocol (initialize handshake)")


# -- arguments -----------------------------------------------------------------------------


def parse_value(text: str, accepted: frozenset[str] = frozenset()) -> Any:
    """JSON when it parses (numbers, true, lists, objects, quoted strings), else the text itself; the text too
    when the parameter takes text (`accepted`: its schema's JSON types) and not what the JSON is: `--arg
    path=2024` names a folder, not a number."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if "string" in accepted and not accepted & _json_types(value) else value


def _json_types(value: Any) -> set[str]:
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    names = {float: "number", str: "string", list: "array", dict: "object", type(None): "null"}
    return {names[type(value)]} if type(value) in names else set()


def accepted_types(schema: dict[str, Any] | None, key: str) -> frozenset[str]:
    """The JSON types the tool's input `schema` accepts for `key` (empty: unknown, or any). The schema is the
    server's: a part of a shape JSON Schema has not (`"type": 5`, properties as a list) is unknown."""
    properties = (schema or {}).get("properties")
    prop = properties.get(key) if isinstance(properties, dict) else None
    branches = (prop.get("anyOf") or prop.get("oneOf") or [prop]) if isinstance(prop, dict) else []
    types: set[str] = set()
    for branch in branches if isinstance(branches, list) else ():
        named = _defined(schema or {}, branch).get("type") if isinstance(branch, dict) else None
        names = [named] if isinstance(named, str) else named if isinstance(named, list) else None
        if names is None or not all(isinstance(name, str) for name in names):
            return frozenset()  # a branch of any type, or of no type we can name
        types.update(names)
    return frozenset(types)


def _defined(schema: dict[str, Any], branch: dict[str, Any]) -> dict[str, Any]:
    """`branch`, or the definition its local `$ref` names (pydantic gives an enum or a model as one)."""
    ref = branch.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return branch
    definitions = schema.get("$defs")
    definition = definitions.get(ref.removeprefix("#/$defs/")) if isinstance(definitions, dict) else None
    return definition if isinstance(definition, dict) else branch


def split_json_flag(args: argparse.Namespace) -> None:
    """`--json '{...}'` gives the arguments (the issue's form); a bare `--json` asks for JSON output. Both may
    be given (`--json '{...}' --json`). A bare `--json` just before the tool's name (`call --json TOOL ...`)
    takes that name as its value: the name is the tool and the `--json` a bare one. Raises ValueError."""
    values: list[str | bool] = list(args.json)
    if args.tool is None:
        names = [i for i, v in enumerate(values) if isinstance(v, str) and not v.lstrip().startswith("{")]
        if not names:
            raise ValueError("the following arguments are required: TOOL")
        args.tool, values[names[-1]] = values[names[-1]], True
    objects = [v for v in values if isinstance(v, str)]
    if len(objects) + bool(args.json_args) > 1:
        raise ValueError("give the arguments once: --json OBJECT or --json-args OBJECT")
    if objects:
        args.json_args = objects[0]
    args.json = True in values or args.output == "json"


def build_arguments(pairs: list[str], json_args: str | None, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """`--json-args` as the base, each `--arg key=value` on top, read as the tool's input `schema` says when known
    (`parse_value`). Raises ValueError on bad input."""
    arguments: dict[str, Any] = {}
    if json_args:
        try:
            loaded = json.loads(json_args)
        except ValueError as exc:  # it said only `Expecting property name ...`, naming neither flag
            raise ValueError(f"the arguments (--json OBJECT or --json-args) are not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError("--json-args must be a JSON object")
        arguments.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg expects KEY=VALUE, got {pair!r}")
        arguments[key] = parse_value(value, accepted_types(schema, key))
    return arguments


# -- connection ----------------------------------------------------------------------------


def bearer_token(given: str | None) -> str | None:
    """`--token`, else VIBE_JOBS_TOKEN, without the whitespace around it (as every setting), None when blank.
    Raises ValueError naming where it came from, never its value (a secret), when a header cannot carry it."""
    source, raw = ("--token", given) if given is not None else ("VIBE_JOBS_TOKEN", os.environ.get("VIBE_JOBS_TOKEN"))
    token = (raw or "").strip()
    if any(not "!" <= char <= "~" for char in token):
        raise ValueError(
            f"{source} holds a space, a control character or a character that is not ASCII: a bearer token is"
            " printable ASCII (the token is not shown)"
        )
    return token or None


def server_command(server_cmd: str | None) -> list[str]:
    if server_cmd:
        cmd = shlex.split(server_cmd)
        if not cmd:
            raise ValueError("--server-cmd is empty")
        return cmd
    return [sys.executable, "-m", "vibe_jobs", "serve"]


def server_url(url: str | None) -> None:
    """`--url` names an HTTP server (vibe_jobs.urls). Raises ValueError (the URL shown without its password):
    `ftp://...` ended as `UnsupportedProtocol`, a port of 99999 as `OverflowError`."""
    if url is not None:
        check_server_url(url, "--url", "http(s)://HOST:PORT/mcp (or its /sse path), as the server printed it")


def connect_target(args: argparse.Namespace, errlog: TextIO) -> Any:
    """What `Client(...)` connects to: a URL, an SSE transport, or a stdio server started here."""
    if args.url:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
        if urlsplit(args.url).path.rstrip("/").endswith("/sse"):
            from mcp.client.sse import sse_client

            return sse_client(args.url, headers=headers)
        return _streamable(args.url, headers)
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    cmd = server_command(args.server_cmd)
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    return stdio_client(params, errlog=errlog)


class Unauthorized(Exception):
    """The server refused our credentials (HTTP 401/403)."""


@asynccontextmanager
async def _streamable(url: str, headers: dict[str, str] | None) -> AsyncIterator[Any]:
    """A streamable HTTP transport sending `headers` (the bearer token) with every request; a 401 or 403
    stops the call with a message that says so (the SDK would report only "an error response")."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def refused(response: httpx2.Response) -> None:
        if response.status_code in (401, 403):
            what = "a valid bearer token" if headers else "a bearer token: set VIBE_JOBS_TOKEN (or --token)"
            raise Unauthorized(f"{redact_url(url)} answered HTTP {response.status_code}: the server wants {what}")

    timeout = httpx2.Timeout(30.0, read=300.0)  # the SDK's defaults: a response stream may stay open
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [refused]}) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


# -- progress display ----------------------------------------------------------------------


@dataclass
class ProgressView:
    """A live bar on a TTY (redrawn in place), else one line per change."""

    stream: TextIO
    tty: bool
    percent: float | None = None
    stage: str | None = None
    message: str | None = None
    paused: bool = False
    _last: str = field(default="", repr=False)
    _drawn: bool = field(default=False, repr=False)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.percent = 100 * progress / total if total else progress
        self.message = message or self.message
        self.show()

    def update_from(self, msg: dict[str, Any]) -> None:
        """Take what a get-job-result answer says of the job; a field of a shape no server of ours sends (a text
        as progress, a list as details) is no news."""
        details = msg.get("details")
        progress = msg.get("progress")
        if isinstance(progress, int | float) and not isinstance(progress, bool) and math.isfinite(progress):
            self.percent = progress
        if isinstance(details, dict):
            self.stage = details.get("currentStage") or self.stage
        self.message = msg.get("message") or self.message
        if msg.get("status") not in FINAL:
            self.show()

    def line(self) -> str:
        """One line for a person: the job's stage and message escaped (`printable`), so they never drive the
        terminal, and a bar cut to its width never cuts an escape sequence in half."""
        pct = f"{self.percent:3.0f}%" if self.percent is not None else "  ?%"
        stage = f"[{printable(str(self.stage))}] " if self.stage else ""
        return f"{pct} {stage}{printable(str(self.message or ''))}".rstrip()

    def bar(self) -> str:
        filled = round(BAR_WIDTH * min(max(self.percent or 0, 0), 100) / 100)
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.line()}"
        return fitted(text, shutil.get_terminal_size().columns - 1)  # escaped already: a cut leaves no half sequence

    def show(self) -> None:
        text = self.line()
        if self.paused or text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.bar()}")
            self._drawn = True
        else:
            self.stream.write(f"progress {text}\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def fitted(text: str, columns: int) -> str:
    """`text` cut to what `columns` terminal columns hold: a wide character (CJK, most emoji) takes two, a
    combining mark none. A bar wider than its line wraps, and each redraw (which clears one line) leaves a line."""
    used = 0
    for at, char in enumerate(text):
        used += 0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used > columns:
            return text[:at]
    return text


# -- following a job -----------------------------------------------------------------------


def ask_cancel(job_id: str) -> bool:
    """Ask on the terminal; without one (stdin not a TTY) the answer is yes."""
    if not sys.stdin.isatty():
        return True
    sys.stderr.write(f"\nCancel job {printable(job_id)}? [y/N] ")
    sys.stderr.flush()
    try:
        with open("/dev/tty", encoding="utf-8") as tty:
            answer = tty.readline()
    except OSError:
        answer = sys.stdin.readline()
    return answer.strip().lower() in {"y", "yes"}


@dataclass
class Follower:
    """Calls the tool through `call_and_wait`, drawing the job's progress; once a job started, Ctrl-C offers
    to cancel it, and a second Ctrl-C stops following."""

    client: Client
    view: ProgressView
    job_id: str | None = None
    last: dict[str, Any] | None = None  # the last status message get-job-result gave
    cancel_sent: bool = False
    _tasks: TaskGroup = field(init=False, repr=False)  # the guard's, set by run

    async def run(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        from vibe_jobs.client import call_and_wait

        async with anyio.create_task_group() as tg:
            self._tasks = tg
            result = await call_and_wait(
                self.client,
                tool,
                arguments,
                self._progress,
                wait_seconds=WAIT_SECONDS,
                on_started=self._started,
                on_status=self._status,
                include_details=True,
                on_elicit=self._elicit,
                on_sample=self._sample,
                on_refused=self._refused,
            )
            tg.cancel_scope.cancel()
        return result

    def final(self, result: CallToolResult) -> dict[str, Any]:
        """The job's final status message (raises when get-job-result stopped answering with one)."""
        if self.last is None or self.last.get("status") not in FINAL:
            raise RuntimeError(result_text(dump(result)) or "get-job-result gave no status")
        return self.last

    async def _started(self, started: dict[str, Any]) -> None:
        self.job_id = str(started["jobId"])
        self._tasks.start_soon(self._guard_interrupts, self.job_id)

    async def _status(self, msg: dict[str, Any]) -> None:
        self.last = msg
        self.view.update_from(msg)

    async def _progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.job_id is not None:  # a job's progress; a plain tool's answer is printed, not drawn
            await self.view.on_progress(progress, total, message)

    async def _elicit(self, message: str, schema: dict[str, Any]) -> dict[str, Any]:
        self.view.clear()
        self.view.paused = True
        try:
            return await TerminalAsker().on_elicit(message, schema)
        finally:
            self.view.paused = False

    async def _sample(self, params: dict[str, Any]) -> dict[str, Any] | str:
        self.view.clear()
        self.view.paused = True
        try:
            return await TerminalAsker().on_sample(params)
        finally:
            self.view.paused = False

    async def _refused(self, why: str) -> None:
        self.view.clear()
        TerminalAsker().say(f"\nYour answer was refused: {why}")

    async def _guard_interrupts(self, job_id: str) -> None:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                if self.cancel_sent:
                    self._tasks.cancel_scope.cancel()
                    raise Interrupted
                await self._offer_cancel(job_id)

    async def _offer_cancel(self, job_id: str) -> None:
        self.view.clear()
        self.view.paused = True
        try:
            if await anyio.to_thread.run_sync(ask_cancel, job_id, abandon_on_cancel=True):
                self.cancel_sent = True
                print(f"vibe-jobs: cancelling job {printable(job_id)} ...", file=sys.stderr, flush=True)
                reason = "interrupted from the command line"
                await self.client.call_tool("cancel-job", {"jobId": job_id, "reason": reason})
        finally:
            self.view.paused = False


# -- output --------------------------------------------------------------------------------


def show(text: str) -> None:
    """A result on stdout: escaped for a terminal (`printable_lines`: a tool's escape sequences must not drive the
    person's terminal), as it came for a pipe or a file (`call ... > out.txt` keeps the tool's exact text)."""
    say(printable_lines(text) if sys.stdout.isatty() else text)


def dump(result: CallToolResult) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def started_job(tool: str, result: CallToolResult) -> str | None:
    """The jobId when the tool answered by starting a job."""
    from vibe_jobs.client import job_started

    started = job_started(tool, result)
    return str(started["jobId"]) if started is not None else None


def print_plain(result: CallToolResult, as_json: bool) -> int:
    data = dump(result)
    if as_json:
        say(json.dumps(data, indent=2))
    elif result.is_error:
        print(printable_lines(f"vibe-jobs: {result_text(data) or 'the tool reported an error'}"), file=sys.stderr)
    else:
        show(result_text(data))
    return EXIT_FAILED if result.is_error else EXIT_OK


def print_started(result: CallToolResult, job_id: str, as_json: bool) -> int:
    if as_json:
        say(json.dumps(result.structured_content, indent=2))
        return EXIT_OK
    show(job_id)
    if text := result_text({"content": dump(result).get("content")}):
        print(printable_lines(text), file=sys.stderr)
    return EXIT_OK


def print_final(msg: dict[str, Any], as_json: bool) -> int:
    status = msg["status"]
    text = result_text(msg.get("result"))
    if as_json:
        say(json.dumps(msg, indent=2))
    elif status == "completed":
        show(text)
    else:
        print(verdict(msg, status, text or msg.get("message") or ""), file=sys.stderr)
    return EXIT_OK if status == "completed" else EXIT_FAILED


def verdict(msg: dict[str, Any], status: str, detail: str) -> str:
    """The line that says how a job ended, for a person: the server's names on it each one line, and the job's
    words after it indented, so that no line a job or server wrote passes for this one (as `jobs show`)."""
    head, *rest = str(detail).split("\n")
    said = f"vibe-jobs: job {printable(str(msg['jobId']))} ({printable(str(msg.get('toolName')))}) {status}: {head}"
    return printable_lines("\n  ".join([said, *rest]))


# -- the command ---------------------------------------------------------------------------


async def _session(args: argparse.Namespace, arguments: dict[str, Any], errlog: TextIO) -> int:
    from mcp import Client

    mode = "legacy" if args.legacy else "auto"
    async with Client(connect_target(args, errlog), mode=mode, read_timeout_seconds=WAIT_SECONDS + 30) as client:
        if args.arg:  # each --arg read as the tool's schema says (`--arg path=2024` is text for a text parameter)
            arguments = build_arguments(args.arg, args.json_args, await _input_schema(client, args.tool))
        if args.no_wait:
            result = await client.call_tool(args.tool, arguments)
            job_id = started_job(args.tool, result)
            return print_plain(result, args.json) if job_id is None else print_started(result, job_id, args.json)
        follower = Follower(client, ProgressView(sys.stderr, terminal(sys.stderr)))
        try:
            result = await follower.run(args.tool, arguments)
        finally:
            follower.view.clear()
        if follower.job_id is None:
            return print_plain(result, args.json)
        return print_final(follower.final(result), args.json)


MAX_TOOL_PAGES = 1_000  # pages of tools/list read for one tool's schema (a server that pages for ever is given up)


async def _input_schema(client: Client, tool: str) -> dict[str, Any] | None:
    """The tool's listed input schema; None when the server lists no such tool, or no tools (the call says why)."""
    from mcp.shared.exceptions import MCPError

    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):  # every page (a proxy of many upstream tools pages its list)
        try:
            page = await client.list_tools(cursor=cursor)
        except MCPError:
            return None
        found = next((item for item in page.tools if item.name == tool), None)
        if found is not None:
            return found.input_schema
        if not (cursor := page.next_cursor):
            return None
    return None


async def _call(args: argparse.Namespace, arguments: dict[str, Any], errlog: TextIO) -> int:
    with anyio.move_on_after(args.timeout) as scope:
        return await _session(args, arguments, errlog)
    if scope.cancelled_caught:
        print(f"vibe-jobs: gave up after {args.timeout:g} s", file=sys.stderr)
    return EXIT_TIMEOUT


def describe(exc: BaseException) -> str:
    """One line for an error, looking inside exception groups (task groups wrap errors)."""
    exc = first_leaf(exc)
    error = getattr(exc, "error", None)
    text = getattr(error, "message", None) or str(exc) or type(exc).__name__
    return printable(f"{type(exc).__name__}: {text}")  # a server's words (an MCPError's message) escaped


def _server_log_tail(errlog: IO[str], lines: int = 15) -> str:
    errlog.seek(0)
    tail = errlog.read().strip().splitlines()[-lines:]
    return "".join(f"\n  server: {printable(line)}" for line in tail)


def run_call(args: argparse.Namespace, settings: Settings) -> int:
    """Run `vibe-jobs call`; errors are short messages on stderr, never tracebacks."""
    try:
        split_json_flag(args)
        arguments = build_arguments(args.arg, args.json_args)
        server_command(args.server_cmd)
        server_url(args.url)
        args.token = bearer_token(args.token)
        if args.no_wait and not args.url:
            raise ValueError(
                "--no-wait needs --url (a running server): the server `call` starts over stdio stops when "
                "`call` exits, and the job with it"
            )
    except ValueError as exc:
        print(f"vibe-jobs call: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        try:
            return anyio.run(_call, args, arguments, errlog)
        except (KeyboardInterrupt, Interrupted):
            return EXIT_INTERRUPTED
        except BaseExceptionGroup as group:
            if group.subgroup((KeyboardInterrupt, Interrupted)) is not None:
                return EXIT_INTERRUPTED
            if not isinstance(group, Exception):
                raise
            return _report(group, errlog, args.url)
        except Exception as exc:
            return _report(exc, errlog, args.url)


def _report(exc: BaseException, errlog: IO[str], url: str | None) -> int:
    print(f"vibe-jobs: {_unreached(exc, url)}{describe(exc)}{_server_log_tail(errlog)}", file=sys.stderr)
    return EXIT_USAGE


def _unreached(exc: BaseException, url: str | None) -> str:
    """The start of the line when `--url` could not be reached: which server, and the likely fix (it said only
    `ConnectError: All connection attempts failed`)."""
    import httpx2

    if url is None or not isinstance(first_leaf(exc), httpx2.ConnectError | httpx2.ConnectTimeout):
        return ""
    return f"no server answers at {redact_url(url)} (is it running, at the address it printed?): "
