"""`vibe-jobs schedules list|pause|resume|delete`: the schedules of the store a server uses.

The store is opened directly, as `vibe-jobs jobs` does; a change is a compare-and-set on the schedule,
so it is safe next to running servers (they see it at their next tick).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from vibe_jobs.cli import flags
from vibe_jobs.cli.jobs import existing_store, failed, format_table, say
from vibe_jobs.clocks import StoreClock
from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.logs import default_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.schedules import Schedule
from vibe_jobs.settings import Settings

HEADERS = ("ID", "TOOL", "TIMING", "STATE", "LAST FIRED", "NEXT", "LAST OUTCOME")
Command = Callable[[Schedules, argparse.Namespace], Awaitable[int]]


def add_schedules_parser(sub: Any) -> None:
    schedules = sub.add_parser("schedules", help="list, pause, resume and delete schedules in a store")
    common = flags.add_store_options(schedules)
    cmds = schedules.add_subparsers(dest="schedules_command", required=True)
    cmds.add_parser("list", parents=[common], help="list schedules with their last and next firing")
    for name, text in (
        ("pause", "pause a schedule"),
        ("resume", "resume a paused schedule from now"),
        ("delete", "delete a schedule"),
    ):
        cmds.add_parser(name, parents=[common], help=text).add_argument(
            "schedule_id", metavar="ID", help="the schedule's id (scheduleId)"
        )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):  # past year 9999 (a far firing): shown as it is stored
        return f"{ms} ms"


def schedules_table(schedules: list[Schedule]) -> str:
    rows = [
        [
            s.schedule_id,
            s.tool,
            s.timing_text(),
            "paused" if s.paused else "active",
            _when(s.last_fired_at),
            _when(s.next_fire_at),
            s.last_outcome or "-",
        ]
        for s in schedules
    ]
    return format_table(HEADERS, rows) if rows else "no schedules"


async def cmd_list(s: Schedules, args: argparse.Namespace) -> int:
    found = await s.list()
    say(json.dumps([x.wire() for x in found], indent=2) if args.json else schedules_table(found))
    return 0


def _change(name: str) -> Command:
    async def run(s: Schedules, args: argparse.Namespace) -> int:
        if name == "delete":
            await s.delete(args.schedule_id)
            say(
                json.dumps({"scheduleId": args.schedule_id, "deleted": True})
                if args.json
                else f"schedule {args.schedule_id} deleted"
            )
            return 0
        rec = await (s.pause if name == "pause" else s.resume)(args.schedule_id)
        wire = Schedule.from_record(rec)
        say(
            json.dumps(wire.wire())
            if args.json
            else f"schedule {rec.schedule_id} {name}d; next {_when(wire.next_fire_at)}"
        )
        return 0

    return run


COMMANDS: dict[str, Command] = {
    "list": cmd_list,
    "pause": _change("pause"),
    "resume": _change("resume"),
    "delete": _change("delete"),
}


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = existing_store(args.store or settings.store_url)
    await store.open()
    try:
        # a store that processes of several machines share: its time, as its servers keep it (a resume from this
        # machine's clock, behind by an hour, fired at once the hour of ticks due while paused)
        clock = StoreClock()
        shared = await clock.measure(store)
        manager = JobManager(store, settings, clock=clock) if shared else JobManager(store, settings)
        return await COMMANDS[args.schedules_command](Schedules(manager, {}), args)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


def run_schedules(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `schedules` subcommand; errors are one line on stderr and exit code 1."""
    default_logging("warning", settings.log_format)
    try:
        return anyio.run(_run, args, settings)
    except Exception as exc:  # a command line never shows a traceback
        return failed(exc)
