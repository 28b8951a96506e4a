"""Who may change things from a browser: same origin, a CSRF token, and the bearer token when auth is on.

The CSRF token is double-submit, signed: a random cookie (`vibe_jobs_csrf`) and, in each form, an HMAC of it
under this process's secret. A cross-site form can send the cookie but cannot read or forge the field.
When a bearer check is configured, every dashboard request (pages too: they show every job) needs
`Authorization: Bearer ...` or the `vibe_jobs_token` cookie holding the same token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.requests import Request

from vibe_jobs.server.http.lifetime import Lease

CSRF_COOKIE = "vibe_jobs_csrf"
CSRF_FIELD = "csrf"
TOKEN_COOKIE = "vibe_jobs_token"


@dataclass(frozen=True)
class Bearer:
    """A valid bearer token: does it hold scope `admin`, and how long may what it opens last (None: as long as
    the client holds it)."""

    admin: bool
    lease: Lease | None = None


# the auth's check of a token (async, as the SDK's TokenVerifier): None when it is not a valid token; given the
# SDK's verified token, what it may do
BearerCheck = Callable[[str | AccessToken], Awaitable[Bearer | None]]


class Refused(Exception):
    """A request the guard refuses; `status` is the HTTP answer (401 or 403), the message says why."""

    def __init__(self, status: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.challenge = challenge  # the WWW-Authenticate of a 401 or a 403 for want of a scope (RFC 6750)

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge} if self.challenge else {}


@dataclass(frozen=True)
class Guard:
    bearer: BearerCheck | None = None  # None: no auth configured (loopback, single user)
    secret: bytes = field(default_factory=lambda: os.urandom(32))

    def csrf_cookie(self, request: Request) -> tuple[str, bool]:
        """(the browser's CSRF cookie, whether it is new and must be set)."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if cookie and len(cookie) == 32:
            return cookie, False
        return secrets.token_hex(16), True

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    async def check_read(self, request: Request) -> Lease | None:
        """Refuse a request without an admin's bearer token; return how long what it streams may last (None: as
        long as the client holds it; no authentication)."""
        if self.bearer is None:
            return None
        token = presented(request)
        found = await self.bearer(token) if token else None
        if found is None:
            raise Refused(401, "a bearer token is needed (Authorization: Bearer ...)", "Bearer")
        if not found.admin:
            message = "this token lacks scope `admin`: the dashboard shows every principal's jobs"
            raise Refused(403, message, 'Bearer error="insufficient_scope", scope="admin"')
        return found.lease

    async def check_change(self, request: Request, form_token: str | None) -> None:
        """Refuse a state change that is not same-origin, lacks the CSRF token, or lacks the bearer token."""
        await self.check_read(request)
        check_origin(request)
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        if not form_token or not cookie or not hmac.compare_digest(form_token, self.csrf_token(cookie)):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")


def check_origin(request: Request) -> None:
    """Refuse a request that is not same-origin (`same_origin`): before its body is read."""
    if not same_origin(request):
        raise Refused(403, "cross-origin request refused (Origin/Referer must match the host)")


def same_origin(request: Request) -> bool:
    """The request names this host as its origin (Origin, else Referer); a browser's fetch metadata agrees."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = request.headers.get("host", "")
    try:
        parts = urlsplit(source)
    except ValueError:  # no URL (`http://[::1`: an unclosed bracket raised, a 500 and a traceback each time)
        return False
    return parts.netloc == host and parts.scheme == request.url.scheme


def presented(request: Request) -> str | AccessToken | None:
    """The token a request presents: its `Authorization: Bearer` header's, as the SDK's authentication (on every
    route of the MCP server's app) verified it, else the `vibe_jobs_token` cookie's (which the SDK does not read).
    The dashboard checked the header's token again: each request verified its signature twice, and each refusal
    the operator must read was logged twice. Without the SDK's authentication (`vibe-jobs dashboard`), the header's
    token as sent."""
    header = _bearer(request)
    if header is None or "user" not in request.scope:
        return header or request.cookies.get(TOKEN_COOKIE)
    user = request.scope["user"]
    return user.access_token if isinstance(user, AuthenticatedUser) else None  # None: the SDK refused it


def _bearer(request: Request) -> str | None:
    """The token after `Bearer ` as the SDK reads it on /mcp (one space; what follows is the token as sent): the
    same header is one token everywhere."""
    header = request.headers.get("authorization", "")
    return (header[7:] or None) if header[:7].lower() == "bearer " else None
