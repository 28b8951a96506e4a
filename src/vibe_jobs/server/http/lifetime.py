"""A request lives no longer than the bearer token that authorised it.

A token is checked when a request begins. A streamable-HTTP `GET` stream (a session's notifications), a legacy
SSE session (`GET /sse`: every answer of the session rides on it), a long-poll, a listen stream and the
dashboard's `/events` (every principal's job changes) then went on delivering after the token's `exp`, for as
long as the client held the connection. Here such a request ends at `exp`: an answer not yet begun is 401
`invalid_token` ("the access token expired"), and a stream that has begun ends, so its client reconnects with
a fresh token (an expired one is 401). A token without an expiry (a token file's) is not limited.
"""

from __future__ import annotations

import time

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.auth")
EXPIRED = b'Bearer error="invalid_token", error_description="the access token expired"'


async def serve_until(expires_at: float | None, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app` on the request until it ends or the wall clock reaches `expires_at` (epoch seconds; None: no
    limit); then answer 401, or end the answer begun."""
    if expires_at is None:
        await app(scope, receive, send)
        return
    begun = ended = False

    async def sending(message: Message) -> None:
        nonlocal begun, ended
        begun = True
        ended = message["type"] == "http.response.body" and not message.get("more_body", False)
        await send(message)

    with anyio.move_on_after(expires_at - time.time()) as expiry:
        await app(scope, receive, sending)
    if not expiry.cancelled_caught or ended:
        return
    log.info("auth.token_expired", path=scope.get("path"), streaming=begun)
    if begun:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b'{"error": "invalid_token", "error_description": "the access token expired"}'
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", EXPIRED)]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TokenLifetime:
    """Every request the SDK's authentication accepted ends at its token's `exp` (`serve_until`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        expires_at = user.access_token.expires_at if isinstance(user, AuthenticatedUser) else None
        await serve_until(expires_at, self.app, scope, receive, send)


def end_at_expiry(app: Starlette) -> None:
    """End each request to `app` at its token's expiry (`TokenLifetime`), after the SDK's authentication, which
    tells whose token it is. Before its first request only: Starlette builds its middleware stack then."""
    app.user_middleware.append(Middleware(TokenLifetime))
