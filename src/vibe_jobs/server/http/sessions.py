"""Open sessions per principal: one principal cannot take every session the server keeps.

The SDK keeps at most `max_sessions` stateful streamable-HTTP sessions (VIBE_JOBS_MAX_SESSIONS, 10,000), for every
caller together: once that many are open it answers 503 to whoever opens the next. A session lasts until its
client ends it (DELETE) or it idles out (30 minutes), and opening one is a single small POST, so one principal's
client, misbehaving or hostile, could hold them all and lock every other principal out for half an hour. With
authentication on, this middleware caps each principal's open sessions (VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL,
1,000): a request that would open one more is answered 429 with a JSON-RPC error naming the limit, and the
principal's own open sessions, and everyone else's, go on as before.

Counted: on streamable HTTP, the sessions the SDK opened for the principal (an answer to a request without a
session id that carries a new `Mcp-Session-Id`) that are still open (the SDK's table, `sdk.open_sessions`), plus
its requests opening one right now; over SSE, its open `GET /sse` streams (each is a session; `HEAD` too).
Without authentication every caller is the local principal: there is no one to protect from anyone, and the
SDK's own limit applies alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vibe_jobs.identity import LOCAL_PRINCIPAL
from vibe_jobs.server.auth import principal_of
from vibe_jobs.server.http.requestids import send_refusal

SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
LIMIT_SETTING = "VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL"
SWEEP_AT_LEAST = 64


class SessionQuota:
    """At most `limit` open sessions per principal. `open_sessions()`: the ids of the sessions the SDK keeps open
    (streamable HTTP); None: the transport is SSE, whose sessions are its open `GET /sse` streams."""

    def __init__(self, app: ASGIApp, limit: int, open_sessions: Callable[[], Container[str]] | None) -> None:
        self.app, self.limit, self.open_sessions = app, limit, open_sessions
        self._held: dict[str, set[str]] = {}  # streamable HTTP: the session ids each principal opened
        self._opening: Counter[str] = Counter()  # requests that may open a session, or open SSE streams
        self._sweep_at = SWEEP_AT_LEAST  # principals in `_held` that start a sweep (`_sweep`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._opens_session(scope):
            await self.app(scope, receive, send)
            return
        principal = _principal(scope)
        held = self._held_by(principal)
        if len(held) + self._opening[principal] >= self.limit:
            await _refuse(send, principal, self.limit)
            return
        self._opening[principal] += 1
        opening = True

        def opened(session: str | None) -> None:
            """The request opened `session` (None: it ended, having opened none that counts apart from it)."""
            nonlocal opening
            if session is not None:
                held.add(session)
            if opening:  # counted once: as opening until its session is held, and no longer
                opening = False
                self._opening[principal] -= 1
                if not self._opening[principal]:
                    del self._opening[principal]

        try:
            await self.app(scope, receive, send if self.open_sessions is None else _noting(send, opened))
        finally:
            opened(None)

    def _opens_session(self, scope: Scope) -> bool:
        """A request that opens a session: `GET` (or `HEAD`) `/sse`; on streamable HTTP, a POST without a session
        id in the legacy era (no protocol version header, or a handshake one: the SDK's own routing, `sdk.py`).
        A repeated header is read as the SDK reads it: its first copy."""
        method: str = scope["method"]
        if self.open_sessions is None:
            path: str = scope["path"]
            return method in ("GET", "HEAD") and path.rstrip("/").endswith("/sse")
        if method != "POST" or _first(scope, SESSION_HEADER) is not None:
            return False
        version = _first(scope, VERSION_HEADER)
        return version is None or version.decode("latin-1") in _HANDSHAKES

    def _held_by(self, principal: str) -> set[str]:
        """The principal's sessions that are still open (those that ended, by DELETE or idling out, are dropped)."""
        if len(self._held) >= self._sweep_at:
            self._sweep()
        held = self._held.setdefault(principal, set())
        if self.open_sessions is not None and held:
            still_open = self.open_sessions()
            held.difference_update([sid for sid in held if sid not in still_open])
        return held

    def _sweep(self) -> None:
        """Forget the principals that hold no open session and open none now: each principal ever seen kept its
        entry, and its ended sessions' ids, for ever (a JWT issuer's every new `sub`: review helper-66 F1). Run
        when the table has doubled since the last sweep, so its cost per session opened stays constant."""
        still_open = self.open_sessions() if self.open_sessions is not None else None
        for principal, held in list(self._held.items()):
            if still_open is not None:
                held.difference_update([sid for sid in held if sid not in still_open])
            if not held and not self._opening[principal]:
                del self._held[principal]
        self._sweep_at = max(SWEEP_AT_LEAST, 2 * len(self._held))


_HANDSHAKES = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)


def limit_sessions(app: Starlette, limit: int, open_sessions: Callable[[], Container[str]] | None) -> None:
    """Cap each principal's open sessions on `app` (`SessionQuota`), after the SDK's authentication, which tells
    whose the request is. Before its first request only: Starlette builds its middleware stack then."""
    app.user_middleware.append(Middleware(SessionQuota, limit=limit, open_sessions=open_sessions))


def _principal(scope: Scope) -> str:
    user = scope.get("user")
    return principal_of(user.access_token) if isinstance(user, AuthenticatedUser) else LOCAL_PRINCIPAL


def _first(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def _noting(send: Send, opened: Callable[[str], None]) -> Send:
    """`send`, telling `opened` the id of a session the answer opened."""

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] < 400:
            for name, value in message.get("headers", ()):
                if name.lower() == SESSION_HEADER:
                    opened(value.decode("latin-1"))
        await send(message)

    return noting


async def _refuse(send: Send, principal: str, limit: int) -> None:
    message = (
        f"too many open sessions: principal {principal!r} has {limit} open, the most one principal may hold "
        f"({LIMIT_SETTING}); end one (HTTP DELETE with its Mcp-Session-Id) or let one idle out, then open another"
    )
    await send_refusal(send, 429, message, (b"retry-after", b"60"))
