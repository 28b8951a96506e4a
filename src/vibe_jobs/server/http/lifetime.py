"""A request lives no longer than the bearer token that authorised it.

A token is checked when a request begins. A streamable-HTTP `GET` stream (a session's notifications), a legacy
SSE session (`GET /sse`: every answer of the session rides on it), a long-poll, a listen stream and the
dashboard's `/events` (every principal's job changes) then went on delivering after the token's `exp`, for as
long as the client held the connection, and so they did after the issuer withdrew the token's key from its
JWKS. Here such a request ends at `exp`, or at the first recheck (`Lease.every`) that finds its token no longer
valid: an answer not yet begun is 401 `invalid_token`, and a stream that has begun ends, so its client
reconnects with a fresh token (the old one is 401). A token file's tokens have no expiry and are not rechecked
(the file is read at start-up only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vibe_jobs.errors import first_leaf
from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.auth")
EXPIRED = b'Bearer error="invalid_token", error_description="the access token expired or was revoked"'
Recheck = Callable[[], Awaitable[bool]]  # is the token that opened the request still valid?


@dataclass(frozen=True)
class Lease:
    """How long a request may last: until `expires_at` (epoch seconds; None: no expiry), and while `recheck`,
    asked every `every` seconds, says its token is still valid (a JWT whose key the issuer withdrew is not)."""

    expires_at: float | None = None
    recheck: Recheck | None = None
    every: float = 30.0


async def serve_until(lease: Lease | None, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app` on the request until it ends or its `lease` does; then answer 401, or end the answer begun."""
    if lease is None or (lease.expires_at is None and lease.recheck is None):
        await app(scope, receive, send)
        return
    begun = ended = False

    async def sending(message: Message) -> None:
        nonlocal begun, ended
        begun = True
        ended = message["type"] == "http.response.body" and not message.get("more_body", False)
        await send(message)

    deadline = math.inf if lease.expires_at is None else anyio.current_time() + lease.expires_at - time.time()
    with anyio.CancelScope(deadline=deadline) as limit:
        try:
            async with anyio.create_task_group() as tg:
                if lease.recheck is not None:
                    tg.start_soon(_watch, lease.recheck, lease.every, limit)
                await app(scope, receive, sending)
                tg.cancel_scope.cancel()
        except ExceptionGroup as group:  # the app's own error, as the server's error handling expects it
            raise first_leaf(group) from None
    if limit.cancelled_caught and not ended:
        log.info("auth.token_ended_request", path=scope.get("path"), streaming=begun)
        await (_end(send) if begun else _refuse(send))


async def _watch(recheck: Recheck, every: float, limit: anyio.CancelScope) -> None:
    while await _after(every) and await recheck():
        pass
    limit.cancel()


async def _after(seconds: float) -> bool:
    await anyio.sleep(seconds)
    return True


async def _end(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _refuse(send: Send) -> None:
    body = b'{"error": "invalid_token", "error_description": "the access token expired or was revoked"}'
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", EXPIRED)]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TokenLifetime:
    """Every request the SDK's authentication accepted lasts as long as its token's lease (`lease_of`)."""

    def __init__(self, app: ASGIApp, lease_of: Callable[[AccessToken], Lease]) -> None:
        self.app, self.lease_of = app, lease_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        lease = self.lease_of(user.access_token) if isinstance(user, AuthenticatedUser) else None
        await serve_until(lease, self.app, scope, receive, send)


def end_with_token(app: Starlette, lease_of: Callable[[AccessToken], Lease]) -> None:
    """End each request to `app` when its token's lease ends (`TokenLifetime`), after the SDK's authentication,
    which tells whose token it is. Before its first request only: Starlette builds its middleware stack then."""
    app.user_middleware.append(Middleware(TokenLifetime, lease_of=lease_of))
