"""Requests whose id no request may have, refused over HTTP as over stdio.

A JSON-RPC request's id is a string or an integer. The SDK's message model leaves an id of another type
(null, a float, a bool, an object, an array) out and takes the request for a notification: the HTTP
transports answer 202 with no body, the method is never answered, and the client waits for ever. This
middleware answers such a POST with HTTP 400 and a JSON-RPC error -32600 (id null), as the stdio transport
does (`server.stdio`). A body is looked at up to the SDK's own limit (a chunked one, which declares no length,
too); the SDK refuses a longer one (413).

It runs after authentication (`look_after_authentication`), and looks at no body of a request whose token
was refused: read before the check, a client with no token held up to 4 MiB and a connection for as long
as it kept its body from ending (100 of them took a server from 75 to 552 MiB; 300 took its file
descriptors, and a job failed with "Too many open files").
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INVALID_REQUEST = -32600
MAX_LOOKED_AT = 4 * 1024 * 1024  # the SDK's request body limit: past it, the SDK answers 413


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _large(scope) or _refused(scope):
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        if body is not None and _id_of_a_wrong_type(body):
            await send_refusal(send, 400, "Invalid Request: the id must be a string or an integer")
            return
        await self.app(scope, _replay(messages, receive), send)


def look_after_authentication(app: Starlette) -> Starlette:
    """`app` with `RequestIds` inside its middleware, after the SDK's authentication (which runs before any
    route), so that it sees whether the request's token was accepted. Before its first request only: Starlette
    builds its middleware stack then."""
    app.user_middleware.append(Middleware(RequestIds))  # the last is the innermost, next to the routes
    return app


def _refused(scope: Scope) -> bool:
    """A request whose token the SDK's authentication did not accept (no "user" in scope: none configured)."""
    user = scope.get("user")
    return user is not None and not getattr(user, "is_authenticated", False)


def _large(scope: Scope) -> bool:
    """A body declared longer than the SDK takes (a chunked one declares no length: it is read up to the limit)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return not value.isdigit() or int(value) > MAX_LOOKED_AT
    return False


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages up to its last body part, and the body (None: it runs past MAX_LOOKED_AT; the
    messages then end where it did, and the rest is left to be received)."""
    messages: list[Message] = []
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, b"".join(parts)
        part = message.get("body", b"")
        size += len(part)
        if size > MAX_LOOKED_AT:
            return messages, None
        parts.append(part)
        if not message.get("more_body", False):
            return messages, b"".join(parts)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _id_of_a_wrong_type(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False  # the SDK answers a parse error
    return wrong_request_id(parsed)


def wrong_request_id(parsed: Any) -> bool:
    """Whether a parsed frame is a request (a method and an id) whose id is neither a string nor an integer."""
    if not isinstance(parsed, dict) or "id" not in parsed or "method" not in parsed:
        return False
    found = parsed["id"]
    return isinstance(found, bool) or not isinstance(found, str | int)


async def send_refusal(send: Send, status: int, message: str, *extra: tuple[bytes, bytes]) -> None:
    """Answer an HTTP request with `status` and a JSON-RPC error -32600 (id null) saying `message`: a refusal made
    before the SDK sees the request (here, and a session past its principal's limit: `http.sessions`)."""
    error = {"code": INVALID_REQUEST, "message": message}
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
