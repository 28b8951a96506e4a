"""The per-principal session limit's own bookkeeping (`server/http/sessions.py`): it forgets the principals that
hold nothing. The limit itself is tested against the real server in tests/e2e/test_sessions_e2e.py."""

from __future__ import annotations

import os

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import Message, Receive, Scope, Send

from vibe_jobs.server.http.sessions import SessionQuota

OPEN: set[str] = set()  # the sessions "the SDK" keeps open


async def opens_a_session(scope: Scope, receive: Receive, send: Send) -> None:
    """What the SDK's app does for an initialize POST: open a session, named in the answer's header."""
    session = os.urandom(8).hex()
    OPEN.add(session)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"mcp-session-id", session.encode())]})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


def initialize_post(principal: str) -> Scope:
    token = AccessToken(token="t", client_id="c", scopes=[], subject=principal)
    return {"type": "http", "method": "POST", "path": "/mcp", "headers": [], "user": AuthenticatedUser(token)}


async def test_principals_that_hold_no_session_are_forgotten() -> None:
    """Each principal ever seen kept its entry, and its ended sessions' ids, for ever: a JWT issuer's every new
    `sub` grew the table (review helper-66 F1: 900 principals, 900 entries, one session open)."""
    quota = SessionQuota(opens_a_session, limit=3, open_sessions=lambda: OPEN)
    OPEN.clear()
    for n in range(1_000):
        await quota(initialize_post(f"user-{n}"), receive, send)
        OPEN.clear()  # its session ended (DELETE, or it idled out)
    assert len(quota._held) <= 128  # swept when it doubles: bounded, whatever the principals seen
    for _ in range(3):
        await quota(initialize_post("alice"), receive, send)
    before = len(OPEN)
    await quota(initialize_post("alice"), receive, send)  # the limit still holds for one with open sessions
    assert len(OPEN) == before == 3
