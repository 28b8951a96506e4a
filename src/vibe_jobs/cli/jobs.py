"""`vibe-jobs jobs list|show|cancel|stats|purge`: read and manage the store a server uses.

The store is opened directly (no background maintenance, no lease): the CLI is a short-lived
reader and writer next to running servers. Cancelling a job another live server runs only
records the request (`cancel_requested`); that server notices and stops the work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import anyio

from vibe_jobs.cli import flags
from vibe_jobs.errors import JobError
from vibe_jobs.logs import default_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.models import Job
from vibe_jobs.settings import MAX_SECONDS, Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import JobStore, open_store
from vibe_jobs.tools.printable import printable, printable_lines

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)
HEADERS = ("ID", "TOOL", "STATUS", "PROGRESS", "AGE", "MESSAGE")
MESSAGE_WIDTH = 60

Command = Callable[[JobManager, argparse.Namespace], Awaitable[int]]


EXIT_OUTPUT_CLOSED = 141  # a shell's status for a command a SIGPIPE ended (128 + 13)


class OutputClosed(BaseException):
    """stdout's reader went away (`vibe-jobs jobs show ID | head`): the command ends without a word, as Unix tools
    do, with EXIT_OUTPUT_CLOSED (`cli.main`). Not an Exception: a command's `except Exception` (which reports an
    error in one line) let a BrokenPipeError through as `vibe-jobs: BrokenPipeError: [Errno 32] Broken pipe`,
    and `health` as a traceback."""


def say(text: object) -> None:
    """Command output for people and scripts: stdout (this is the CLI, not the stdio server), written now, so that
    a reader that went away is seen here (OutputClosed) and not by the interpreter's flush at exit."""
    try:
        _write_all(f"{text}\n")
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        raise OutputClosed from None


def _write_all(text: str) -> None:
    """`text` on stdout, as bytes until all are taken: a write under way when the reader leaves (`| head -1` of a
    long text) comes back short, and the text layer dropped what its buffer did not take, without an error."""
    out = sys.stdout
    if not hasattr(out, "buffer"):  # a program's StringIO
        out.write(text)
        return
    data = memoryview(text.encode(out.encoding, out.errors or "strict"))
    out.flush()
    while data:
        data = data[out.buffer.write(data) :]
    out.buffer.flush()


# -- parsing -------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """'30s', '10m', '2h', '7d', '1w', '250ms' or a bare number of seconds -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 10m, 2h, 7d)")
    seconds = float(match.group(1)) * UNITS[(match.group(2) or "s").lower()]
    if match.group(1).startswith("-"):  # named as what it is (it was "not a duration"); -0 too, which purged all
        raise ValueError(f"not a duration: {text!r} is negative (give an age of 0 or more: 7d; 0s, every finished job)")
    if seconds > MAX_SECONDS:  # the stores' integers overflowed: "Python int too large to convert"
        raise ValueError(f"{text!r} is more than ten years ({MAX_SECONDS:,} s)")
    return seconds


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 500:
        raise ValueError("must be between 1 and 500")
    return value


_limit_arg = flags.typed(_limit, "limit")  # `--limit abc` named an internal function ("invalid _limit_arg value")


def add_jobs_parser(sub: Any) -> None:
    """Register `jobs` and its subcommands on the top-level subparsers."""
    jobs = sub.add_parser("jobs", help="list, inspect, cancel and purge jobs in a store")
    common = flags.add_store_options(jobs)
    cmds = jobs.add_subparsers(dest="jobs_command", required=True)
    ls = cmds.add_parser("list", parents=[common], help="list jobs, newest first")
    ls.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this status")
    ls.add_argument("--tool", metavar="NAME", help="only jobs of this tool")
    ls.add_argument("--limit", type=_limit_arg, default=50, metavar="N", help="at most N jobs (1-500, default 50)")
    show = cmds.add_parser("show", parents=[common], help="show one job")
    show.add_argument("job_id", metavar="ID", help="the job's id (jobId)")
    cancel = cmds.add_parser("cancel", parents=[common], help="cancel a pending or running job")
    cancel.add_argument("job_id", metavar="ID", help="the job's id (jobId)")
    cancel.add_argument(
        "--reason", default="cancelled from the command line", help="why, shown on the job (default: %(default)s)"
    )
    cmds.add_parser("stats", parents=[common], help="job counts by status")
    purge = cmds.add_parser("purge", parents=[common], help="delete finished jobs older than a duration")
    purge.add_argument("--older-than", type=_duration_arg, required=True, metavar="DURATION", help="e.g. 30s, 2h, 7d")


# -- formatting ----------------------------------------------------------------------------


def format_age(ms: int) -> str:
    """A compact age: 12s, 5m, 3h, 2d."""
    seconds = max(0, ms) // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded. Every cell is `printable`: a
    tool's name (an upstream's, through the proxy), a schedule's, a message never drives the terminal or breaks
    its row."""
    cells = [[printable(str(c)) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _shorten(text: str, width: int = MESSAGE_WIDTH) -> str:
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def _progress(job: Job) -> str:
    return f"{job.progress_percentage:.0f}%" if job.progress_percentage is not None else "-"


def job_row(job: Job, now_ms: int) -> list[str]:
    message = job.progress_message or ""
    return [job.id, job.tool_name, job.status.value, _progress(job), format_age(now_ms - job.created_at), message]


def jobs_table(jobs: Sequence[Job], now_ms: int) -> str:
    rows = [[*row[:-1], _shorten(row[-1])] for row in (job_row(j, now_ms) for j in jobs)]
    return format_table(HEADERS, rows)


def _when(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    return f"{stamp} ({format_age(now_ms - ms)} ago)"


def result_text(result: dict[str, Any] | None) -> str:
    """The text blocks of a CallToolResult dict (or its structured content as JSON)."""
    if not result:
        return ""
    texts = [b.get("text", "") for b in result.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    structured = result.get("structuredContent")
    return json.dumps(structured, indent=2) if structured is not None else ""


def job_details(job: Job, now_ms: int) -> str:
    d = job.details
    pairs = [
        ("id", job.id),
        ("tool", job.tool_name),
        ("status", job.status.value),
        ("progress", _progress(job)),
        ("message", job.progress_message or "-"),
        ("stage", (d.current_stage if d else None) or "-"),
        ("priority", job.priority.value),
        ("attempt", str(job.attempt)),
        ("created", _when(job.created_at, now_ms)),
        ("started", _when(job.started_at, now_ms)),
        ("finished", _when(job.finished_at, now_ms)),
        ("params", json.dumps(job.shown()["params"])),
    ]
    # a field is one line (a newline in it shown as \\n); a diagnostic or the result indented: no line a job wrote
    # passes for one of ours (`status:    completed` in a failed job's error)
    lines = [f"{k + ':':<10} {printable(v)}" for k, v in pairs]
    if d and d.diagnostics:
        lines += ["diagnostics:", *(_indent(line) for line in d.diagnostics)]
    if job.result is not None:
        lines += ["result:" + (" (error)" if job.result.get("isError") else ""), _indent(result_text(job.result))]
    return printable_lines("\n".join(lines))


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _emit(data: Any) -> None:
    say(json.dumps(data, indent=2))


# -- commands ------------------------------------------------------------------------------


async def cmd_list(m: JobManager, args: argparse.Namespace) -> int:
    page = await m.list_jobs(args.status, args.tool, args.limit, with_result=args.json)  # the table shows none
    if args.json:
        _emit({"jobs": [j.shown() for j in page.jobs], "more": page.next_cursor is not None})
    elif page.jobs:
        say(jobs_table(page.jobs, m.now()))
    else:
        print("no jobs", file=sys.stderr)
    return 0


async def cmd_show(m: JobManager, args: argparse.Namespace) -> int:
    job = await m.get_job(args.job_id)
    if args.json:
        _emit(job.shown())
    else:
        say(job_details(job, m.now()))
    return 0


async def cmd_cancel(m: JobManager, args: argparse.Namespace) -> int:
    rec = await m.cancel_job(args.job_id, args.reason)
    state = rec.status.value
    text = f"job {rec.id} cancelled" if rec.finished else f"job {rec.id} is {state}; cancel requested from its server"
    if args.json:
        _emit({"jobId": rec.id, "status": state, "cancelRequested": rec.cancel_requested, "message": text})
    else:
        say(text)
    return 0


async def cmd_stats(m: JobManager, args: argparse.Namespace) -> int:
    await m.store.counts()  # a store that cannot count is an error here (statistics() reports it as health)
    stats = await m.statistics()
    if args.json:
        _emit({"counts": stats.counts, "total": stats.total, "running": stats.running, "queueDepth": stats.queue_depth})
    else:
        rows = [[status, str(count)] for status, count in stats.counts.items()]
        say(format_table(("STATUS", "JOBS"), [*rows, ["total", str(stats.total)]]))
    return 0


async def cmd_purge(m: JobManager, args: argparse.Namespace) -> int:
    purger = JobManager(m.store, replace(m.settings, max_retention_ms=int(args.older_than * 1000)), clock=m.clock)
    removed = await purger.cleanup()
    if args.json:
        _emit({"deleted": removed})
    else:
        say(f"deleted {removed} finished job{'' if removed == 1 else 's'}")
    return 0


COMMANDS: dict[str, Command] = {
    "list": cmd_list,
    "show": cmd_show,
    "cancel": cmd_cancel,
    "stats": cmd_stats,
    "purge": cmd_purge,
}


def existing_store(url: str) -> JobStore:
    """The store `url` names, opening only if a server made it (`open_store(existing=True)`)."""
    return open_store(url, existing=True)


async def _run(args: argparse.Namespace, settings: Settings, store: JobStore) -> int:
    await store.open()
    try:
        return await COMMANDS[args.jobs_command](JobManager(store, settings), args)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `jobs` subcommand; errors are one line on stderr and exit code 1 (never a traceback)."""
    default_logging("warning", settings.log_format)  # routine info logs are noise here
    try:
        return anyio.run(_run, args, settings, existing_store(args.store or settings.store_url))
    except Exception as exc:  # a command line never shows a traceback
        return failed(exc)


def failed(exc: Exception) -> int:
    """A `jobs` or `schedules` command's error, one line on stderr, exit code 1. Escaped (`printable`): it may
    quote what was given (`jobs show ID` of an id pasted with a terminal's escape sequences in it, which went to
    the terminal raw: `No job with id '<ESC>[2J'` cleared the screen)."""
    text = str(exc) if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
    print(f"vibe-jobs: {printable_lines(text)}", file=sys.stderr)
    return 1
