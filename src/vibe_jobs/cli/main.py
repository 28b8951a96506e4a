"""The command line: `vibe-jobs serve | jobs ... | call ...`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from vibe_jobs import __version__
from vibe_jobs.cli import flags
from vibe_jobs.cli.call import add_call_parser, run_call
from vibe_jobs.cli.dashboard import add_dashboard_parsers, run_dashboard, run_health
from vibe_jobs.cli.identity import add_identity_options, with_identity_options
from vibe_jobs.cli.jobs import EXIT_OUTPUT_CLOSED, OutputClosed, add_jobs_parser, run_jobs
from vibe_jobs.cli.proxy import add_proxy_parser, run_proxy
from vibe_jobs.cli.schedules import add_schedules_parser, run_schedules
from vibe_jobs.errors import BadJobTool, ConfigError, JobError
from vibe_jobs.logs import configure_logging, get_logger, own_stdlib_logging

if TYPE_CHECKING:
    from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.settings import Settings, split_names

BUILTIN_HELP = f"""\
built-in tools (none with --no-builtin):
  map-codebase  always registered: maps a directory inside the allowed roots (each file's
                language, line count and top-level symbols)
  run-command   registered only when VIBE_JOBS_ALLOWED_COMMANDS names programs: runs one of
                them directly (no shell) in a directory inside the allowed roots

environment variables of the built-in tools:
  VIBE_JOBS_ROOTS             the directories they may touch, separated by {os.pathsep!r}
                              (default: the directory the server starts in)
  VIBE_JOBS_ALLOWED_COMMANDS  the programs run-command may run, comma separated: a name
                              on PATH (git) or a path under the first root
                              (./scripts/build.sh); default: none, and no run-command
  VIBE_JOBS_COMMAND_ENV       the names of the environment variables a caller may give
                              the program, comma separated (default: none)
"""
NO_BUILTIN_HELP = "do not register the built-in tools (map-codebase, run-command: see below)"
RAW = argparse.RawDescriptionHelpFormatter  # the epilog keeps its layout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vibe-jobs", description="Turn any tool into a background job (MCP).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the MCP server", epilog=BUILTIN_HELP, formatter_class=RAW)
    add_serve_options(serve)
    serve.add_argument("--no-builtin", action="store_true", help=NO_BUILTIN_HELP)
    worker = sub.add_parser(
        "worker", help="run jobs from a shared store without serving MCP", epilog=BUILTIN_HELP, formatter_class=RAW
    )
    worker.add_argument("--store", help="postgresql://... (env VIBE_JOBS_STORE)")
    worker.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="import job tools from these modules (repeatable, or comma-separated); env VIBE_JOBS_TOOLS",
    )
    worker.add_argument(
        "--concurrency", type=flags.count, help="jobs this worker runs at once (default JOB_MANAGER_MAX_CONCURRENT)"
    )
    worker.add_argument("--no-builtin", action="store_true", help=NO_BUILTIN_HELP)
    worker.add_argument(
        "--drain-seconds",
        type=flags.seconds_or_zero,
        default=30.0,
        help="on SIGTERM, wait this long for running jobs (default 30)",
    )
    add_jobs_parser(sub)
    add_schedules_parser(sub)
    add_call_parser(sub)
    add_dashboard_parsers(sub)
    add_proxy_parser(sub)
    return parser


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The options of a serving command (`serve`, `proxy`): transport, address, store, tool modules."""
    serve.add_argument(
        "--transport", choices=["stdio", "sse", "streamable-http"], default="stdio", help="default stdio"
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP: the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=flags.port, default=8000, help="HTTP: the port (default 8000)")
    serve.add_argument("--store", help="store URL (memory://, sqlite:///path, postgresql://...); env VIBE_JOBS_STORE")
    serve.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="import job tools from these modules (repeatable, or comma-separated); env VIBE_JOBS_TOOLS",
    )
    serve.add_argument("--no-worker", action="store_true", help="serve MCP only; workers run the jobs (PostgreSQL)")
    add_identity_options(serve)


def load_tool_modules(names: Sequence[str], source: str = "--tools") -> None:
    """Import user tool modules (each name may list several, comma-separated, as VIBE_JOBS_TOOLS does);
    their @job_tool and @plain_tool functions register themselves. A module that cannot be loaded stops start-up
    as an invalid setting does: a ConfigError naming `source` (the variable or the flag) and the module."""
    modules = [part for entry in names for part in split_names(entry)]
    if modules:
        _look_in_the_working_directory()
    for name in modules:
        if not all(part.isidentifier() for part in name.split(".")):  # a path ('../tools') raised a TypeError
            raise ConfigError(
                f"{source}: tools module '{name}' is not a module name: a dotted Python name such as mypkg.tools"
                " (found on PYTHONPATH or in the working directory), not a path"
            )
        fresh, before = name not in sys.modules, _registered()
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"{source}: cannot import tools module '{name}': {exc}") from None
        except BadJobTool as exc:
            raise ConfigError(f"{source}: tools module '{name}': {exc}") from None
        if fresh and _registered() == before:  # `--tools sched` imported the standard library's sched, silently
            get_logger().warning(
                "tools.module_registered_nothing",
                module=name,
                file=getattr(module, "__file__", None),
                setting=source,
                why="no @job_tool or @plain_tool in it; a file of the working directory does not shadow an installed"
                " or standard module of the same name",
            )


def _registered() -> int:
    """How many tools the tool modules imported so far registered."""
    from vibe_jobs.jobtool import PLAIN_REGISTRY, REGISTRY

    return len(REGISTRY) + len(PLAIN_REGISTRY)


def _look_in_the_working_directory() -> None:
    """Tools modules are found in the working directory, as `python -m vibe_jobs` finds them (the installed
    `vibe-jobs` script's path starts at its own directory instead); last on the path, so that a file there shadows
    no installed module."""
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from vibe_jobs.jobtool import PLAIN_REGISTRY
    from vibe_jobs.server.stdio import stdout_to_stderr

    settings = with_identity_options(args, settings)
    with stdout_to_stderr() if args.transport == "stdio" else contextlib.nullcontext():
        server = build_server(args, settings, run_jobs=not args.no_worker)  # tool modules may print
    for name, (fn, description) in PLAIN_REGISTRY.items():
        try:
            server.add_plain_tool(fn, name, description)
        except BadJobTool as exc:
            raise ConfigError(f"--tools: {exc}") from None
    server.run(args.transport, args.host, args.port, allow_unauthenticated=args.allow_unauthenticated)
    return 0


def build_server(args: argparse.Namespace, settings: Settings, *, run_jobs: bool = True) -> JobServer:
    """A JobServer with the built-in tools and the tools of `--tools` / VIBE_JOBS_TOOLS modules."""
    from vibe_jobs.jobtool import REGISTRY
    from vibe_jobs.server.jobserver import JobServer

    if args.store:
        settings = replace(settings, store_url=args.store)
    configure_logging(settings.log_level, settings.log_format)  # what the start-up logs, as the server will
    own_stdlib_logging()  # the libraries' logging too (a worker builds no MCPServer, whose app set it up)
    load_tool_modules(settings.tools, "VIBE_JOBS_TOOLS")
    load_tool_modules(args.tools)
    try:
        server = JobServer(settings=settings, run_jobs=run_jobs, concurrency=getattr(args, "concurrency", None))
    except ValueError as exc:  # a setting this server cannot run with (--no-worker on a store of its own)
        raise ConfigError(str(exc)) from None
    if not getattr(args, "no_builtin", True):
        from vibe_jobs.tools.builtin import register_builtins

        register_builtins(server, settings)
    built_in = set(server.specs)
    for spec in REGISTRY.values():
        try:
            server.add_spec(spec)
        except BadJobTool as exc:
            hint = " (a built-in tool's: --no-builtin leaves them out)" if spec.name in built_in else ""
            raise ConfigError(f"--tools: {exc}{hint}") from None
    return server


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from vibe_jobs.server.jobserver import run_worker

    server = build_server(args, settings)
    if not server.source.shared:
        raise ConfigError("`worker` needs a shared store: --store postgresql://... (or VIBE_JOBS_STORE)")
    run_worker(server, args.drain_seconds)
    return 0


def _unencodable_escaped() -> None:
    """stdout in a locale that cannot hold a job's text (LC_ALL=C with Python's UTF-8 mode off, a Latin-1 locale)
    writes what it cannot encode as `\\u` escapes, as stderr does: `call` ended in a UnicodeEncodeError (exit 2)
    after its job had completed, and `jobs show` printed nothing but that error. (`serve` writes its protocol as
    UTF-8 bytes, not through sys.stdout.)"""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _unencodable_escaped()
    args = build_parser().parse_args(flags.negative_values_joined(sys.argv[1:] if argv is None else argv))
    flags.merge_store_options(args)
    try:
        env = dict(os.environ)
        if getattr(args, "store", None):
            env.pop("VIBE_JOBS_STORE", None)  # the flag wins: a bad variable it replaces is not an error
        settings = Settings.from_env(env)
        commands = {
            "serve": cmd_serve, "worker": cmd_worker, "jobs": run_jobs, "schedules": run_schedules,
            "call": run_call, "dashboard": run_dashboard, "health": run_health, "proxy": run_proxy,
        }  # fmt: skip
        return commands[args.command](args, settings)
    except JobError as exc:
        print(f"vibe-jobs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OutputClosed:
        return EXIT_OUTPUT_CLOSED
    except BaseExceptionGroup as group:  # `call` prints inside its client's task groups
        closed, rest = group.split(OutputClosed)
        if closed is None or rest is not None:
            raise
        return EXIT_OUTPUT_CLOSED


if __name__ == "__main__":
    sys.exit(main())
