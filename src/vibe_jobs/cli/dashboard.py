"""`vibe-jobs dashboard --store URL [--port]` (the dashboard alone, against any store) and
`vibe-jobs health --store URL` (exit 0 when the store answers, 1 with the reason otherwise: container probes)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import anyio

from vibe_jobs.cli import flags
from vibe_jobs.cli.identity import add_identity_options, with_identity_options
from vibe_jobs.cli.jobs import existing_store, say
from vibe_jobs.errors import ConfigError, refusal_in
from vibe_jobs.logs import configure_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.redact import redact_url
from vibe_jobs.settings import Settings
from vibe_jobs.store import JobStore

HEALTH_TIMEOUT_SECONDS = 5.0


def add_dashboard_parsers(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="serve the dashboard, /metrics and the health probes for a store")
    dash.add_argument("--store", metavar="URL", help="store URL (default: VIBE_JOBS_STORE or the user data dir)")
    dash.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=flags.port, default=8080, help="default 8080")
    add_identity_options(dash)  # an admin token for everything but the probes, when tokens are configured
    health = sub.add_parser("health", help="exit 0 when the store answers in time, 1 (with the reason) otherwise")
    health.add_argument("--store", metavar="URL", help="store URL (default: VIBE_JOBS_STORE or the user data dir)")
    health.add_argument("--timeout", type=flags.seconds, default=HEALTH_TIMEOUT_SECONDS, help="seconds (default 5)")


def _settings(args: argparse.Namespace, settings: Settings) -> Settings:
    return replace(settings, store_url=args.store) if args.store else settings


def run_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from vibe_jobs.server.auth import auth_setup, check_bind, transport_security
    from vibe_jobs.server.http.dashboard import Dashboard, dashboard_app
    from vibe_jobs.server.http.guard import Guard
    from vibe_jobs.server.http.hosts import HostCheck
    from vibe_jobs.server.http.prom import instrument_store
    from vibe_jobs.server.listen import bind

    settings = with_identity_options(args, _settings(args, settings))
    configure_logging(settings.log_level, settings.log_format)
    auth = auth_setup(settings, f"http://127.0.0.1:{args.port}")  # tokens or JWT, as `serve`: admin only
    check_bind(args.host, auth.enabled, args.allow_unauthenticated)
    store = existing_store(settings.store_url)  # a mistyped file is refused, not made and shown empty
    sock = bind(args.host, args.port)
    manager = JobManager(store, settings)
    instrument_store(manager.store, manager.stats.counters)
    app = HostCheck(
        dashboard_app(Dashboard(manager, Guard(bearer=auth.admin_check()))),
        transport_security(args.host, settings.allowed_hosts),
    )
    where = f"http://{args.host}:{sock.getsockname()[1]}/"  # port 0: the one given
    announce = f"vibe-jobs: dashboard of {redact_url(settings.store_url)} at {where}"
    anyio.run(serve_dashboard, app, manager, sock, announce)
    return 0


async def serve_dashboard(app: Any, manager: JobManager, sock: Any, announce: str) -> None:
    """Serve the dashboard while its manager runs: the store is open before the dashboard says where it is."""
    from vibe_jobs.server.listen import serve_http

    timeout = manager.settings.http_header_timeout_ms / 1000
    try:
        async with manager:
            await serve_http(app, sock, log_level=manager.settings.log_level, header_timeout=timeout, announce=announce)
    except BaseExceptionGroup as group:  # from the manager's task group: a port taken meanwhile is one line
        if (refused := refusal_in(group)) is None:
            raise
        raise refused from None


def run_health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the store answers in time; 1 with the reason otherwise (a store URL that names no
    store, too: a probe answers only yes or no)."""
    try:
        store = existing_store(_settings(args, settings).store_url)
    except ConfigError as exc:
        print(f"vibe-jobs: not ready: {exc}", file=sys.stderr)
        return 1
    problem = anyio.run(probe, store, args.timeout)
    if problem is not None:
        print(f"vibe-jobs: not ready: {problem}", file=sys.stderr)
        return 1
    say("ready")
    return 0


async def probe(store: JobStore, seconds: float) -> str | None:
    """Why `store` is not ready (it does not open, or answer, within `seconds`), or None."""
    from vibe_jobs.server.http.health import store_problem

    try:
        with anyio.fail_after(seconds):
            await store.open()
    except TimeoutError:
        return f"the store did not open within {seconds:g} s"
    except Exception as exc:  # any driver's connection error: the probe reports it, it does not crash
        return f"the store did not open: {exc}"
    try:
        return await store_problem(store, seconds)
    finally:
        with anyio.move_on_after(seconds, shield=True):
            await store.close()
