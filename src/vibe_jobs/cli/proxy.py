"""`vibe-jobs proxy [serve options] [--store URL] -- COMMAND [ARGS...]`: any MCP server's tools as background jobs.

The upstream runs over stdio (`-- COMMAND ...`), or is reached over streamable HTTP (`--upstream-url URL`,
`--upstream-header 'Name: value'`); several upstreams come from `--upstream NAME=COMMAND...` (tools prefixed
`NAME.`) or a config file in the Claude Desktop `mcpServers` shape (`--config FILE`, JSON or TOML).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibe_jobs.settings import Settings

if TYPE_CHECKING:
    from vibe_jobs.server.proxy.config import UpstreamSpec


def add_proxy_parser(sub: Any) -> None:
    from vibe_jobs.cli.main import add_serve_options

    proxy = sub.add_parser(
        "proxy",
        help="make any MCP server's tools background jobs",
        usage="vibe-jobs proxy [serve options] [--store URL] [--jobs NAME,... | --direct NAME,...]\n"
        + " " * 23
        + "(-- COMMAND [ARGS...] | --upstream-url URL | --upstream NAME=COMMAND ... | --config FILE)",
    )
    add_serve_options(proxy)
    proxy.add_argument("--upstream-url", metavar="URL", help="a streamable-HTTP upstream instead of a command")
    proxy.add_argument(
        "--upstream-header", action="append", default=[], metavar="'Name: value'", help="HTTP header (repeatable)"
    )
    proxy.add_argument(
        "--upstream", action="append", default=[], metavar="NAME=COMMAND...", help="a named upstream (repeatable)"
    )
    proxy.add_argument("--config", type=Path, metavar="FILE", help="upstreams from a Claude Desktop mcpServers file")
    proxy.add_argument("--jobs", metavar="NAME,...", help="only these tools become jobs; the others answer at once")
    proxy.add_argument("--direct", metavar="NAME,...", help="these tools answer at once; the others become jobs")
    proxy.add_argument("upstream_command", nargs="*", metavar="COMMAND [ARGS...]", help="the upstream server, after --")


PROGRAM = "vibe-jobs-proxy"


def program_of_upstreams(upstreams: Sequence[UpstreamSpec]) -> str:
    """The program a proxy is: `vibe-jobs-proxy-` and a digest of what it fronts (names, commands, arguments, URLs;
    not their environments or headers). Two proxies of other upstreams on one SQLite file are two programs: one
    leaves the other's stopped jobs for it, and the same proxy back without a tool fails its jobs (README)."""
    fronted = [(u.name, u.command, list(u.args), u.url) for u in upstreams]
    digest = hashlib.sha256(json.dumps(fronted).encode()).hexdigest()[:12]
    return f"{PROGRAM}-{digest}"


def run_proxy(args: argparse.Namespace, settings: Settings) -> int:
    from vibe_jobs.cli.identity import with_identity_options
    from vibe_jobs.cli.main import build_server
    from vibe_jobs.errors import JobError, first_leaf
    from vibe_jobs.server.proxy import ConfigError, ProxyServer, UpstreamUnavailable
    from vibe_jobs.server.stdio import stdout_to_stderr

    try:
        upstreams = _upstreams(args)
        settings = with_identity_options(args, settings)
        if settings.program is None:  # a program of its own: its jobs' tools are its upstreams' (vibe_jobs.owners)
            settings = replace(settings, program=program_of_upstreams(upstreams))
        with stdout_to_stderr() if args.transport == "stdio" else contextlib.nullcontext():
            server = build_server(args, settings, run_jobs=not args.no_worker)  # tool modules may print
        proxy = ProxyServer(server, upstreams, jobs=_names(args.jobs), direct=_names(args.direct) or ())
        proxy.run(args.transport, args.host, args.port, allow_unauthenticated=args.allow_unauthenticated)
    except (ConfigError, UpstreamUnavailable) as exc:
        return _cannot_start(exc)
    except BaseExceptionGroup as group:
        first = first_leaf(group)
        if isinstance(first, ConfigError | UpstreamUnavailable):
            return _cannot_start(first)
        if isinstance(first, JobError):  # a setting the server refused (a port in use): one line, exit 2
            raise first from None
        raise
    return 0


def _cannot_start(exc: BaseException) -> int:
    """A proxy that cannot start (a bad setting, an upstream that does not start): one line, exit code 2, as
    every command's start-up refusal (it was 1 here)."""
    print(f"vibe-jobs proxy: {exc}", file=sys.stderr)
    return 2


def _upstreams(args: argparse.Namespace) -> list[Any]:
    from vibe_jobs.server.proxy import load_config, parse_named, single

    found = [parse_named(text) for text in args.upstream]
    if args.config is not None:
        found += load_config(args.config)
    unnamed = single(args.upstream_command, args.upstream_url, args.upstream_header)
    return [unnamed, *found] if unnamed is not None else found


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text is not None else None
