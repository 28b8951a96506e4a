"""The shape of a server's URL given to connect to (`call --url`, `proxy --upstream-url`, a proxy config's `url`):
checked where it is given, so that a mistake is named with its flag, not in the HTTP library's words when the
connection is tried (`OverflowError: connect(): port must be 0-65535.`, `UnsupportedProtocol`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from vibe_jobs.redact import redact_url


def check_server_url(url: str, given_as: str, example: str = "http(s)://HOST:PORT/PATH") -> None:
    """Raises ValueError unless `url` is http(s), with a host and, if any, a port from 1 to 65535. The message
    starts with `given_as` (the flag, or where in a file), shows the URL without its password and ends with
    `example`, the URL to give instead."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is no number, or out of range; a bad IPv6 host
        raise ValueError(f"{given_as} {redact_url(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(f"{given_as} {redact_url(url)!r} is not the URL of a server: give {example}")
