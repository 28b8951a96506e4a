"""The shape of a server's URL given to connect to (`call --url`, `proxy --upstream-url`, a proxy config's `url`):
checked where it is given, so that a mistake is named with its flag, not in the HTTP library's words when the
connection is tried (`OverflowError: connect(): port must be 0-65535.`, `UnsupportedProtocol`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from vibe_jobs.redact import PASSWORD_UNESCAPED, password_misread, redact_url


def check_server_url(url: str, given_as: str, example: str = "http(s)://HOST:PORT/PATH") -> None:
    """Raises ValueError unless `url` is http(s), with a host and, if any, a port from 1 to 65535. The message
    starts with `given_as` (the flag, or where in a file), shows the URL without its password and ends with
    `example`, the URL to give instead."""
    # urlsplit's own words are not shown: they quote what it read as the port, which may be a password's start
    # (`https://app:ab/cd@host`, a password holding a '/')
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # a bad IPv6 host
        raise ValueError(f"{given_as} {shown!r} is not a URL: its host is not read (an IPv6 one goes in [])") from None
    try:
        port = parts.port
    except ValueError:  # no number, or out of range; or the start of a password holding a '/'
        why = PASSWORD_UNESCAPED if password_misread(url) else "its port is not a number from 1 to 65535"
        raise ValueError(f"{given_as} {shown!r} is not a URL: {why}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(f"{given_as} {shown!r} is not the URL of a server: give {example}")
