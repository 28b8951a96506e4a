"""The identity options of the HTTP commands (`serve`, `proxy`, `dashboard`): tokens, JWT, host names."""

from __future__ import annotations

import argparse
from dataclasses import replace

from vibe_jobs.errors import ConfigError
from vibe_jobs.settings import Settings, host_names


def add_identity_options(parser: argparse.ArgumentParser) -> None:
    """Who may call over HTTP, and under which host names (`serve`, `proxy`, `dashboard`)."""
    auth = parser.add_argument_group("identity (HTTP)")
    auth.add_argument(
        "--auth-tokens",
        metavar="FILE",
        help="bearer tokens, `TOKEN PRINCIPAL [SCOPES]` a line; env VIBE_JOBS_AUTH_TOKENS",
    )
    auth.add_argument(
        "--auth-jwks", metavar="URL", help="verify JWT access tokens with this JWKS; env VIBE_JOBS_AUTH_JWKS"
    )
    auth.add_argument("--auth-issuer", metavar="ISS", help="the JWT issuer (iss) to accept; env VIBE_JOBS_AUTH_ISSUER")
    auth.add_argument(
        "--auth-audience",
        metavar="AUD",
        help="the JWT audience (aud) to accept: this server; env VIBE_JOBS_AUTH_AUDIENCE",
    )
    auth.add_argument(
        "--allowed-hosts", metavar="NAMES", help="Host names clients use, comma-separated; env VIBE_JOBS_ALLOWED_HOSTS"
    )
    auth.add_argument(
        "--allow-unauthenticated", action="store_true", help="serve beyond loopback without authentication"
    )


def with_identity_options(args: argparse.Namespace, settings: Settings) -> Settings:
    """The serve flags of identity over their environment variables."""
    changes = {
        name: getattr(args, name)
        for name in ("auth_tokens", "auth_jwks", "auth_issuer", "auth_audience")
        if getattr(args, name)
    }
    if args.allowed_hosts:
        try:
            changes["allowed_hosts"] = host_names(args.allowed_hosts)
        except ValueError as exc:
            raise ConfigError(f"--allowed-hosts {args.allowed_hosts!r} is invalid: {exc}") from None
    return replace(settings, **changes)
