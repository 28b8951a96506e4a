"""`serve_until`: a request ends with its token's lease (server/http/lifetime.py), on an ASGI app of the test's
own: one that has not answered yet is 401 `invalid_token`, a stream begun is ended, a recheck that fails ends
it before its expiry, and a request without a lease is left alone."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx2
import pytest

from vibe_jobs.server.http.lifetime import Lease, serve_until


async def silent(scope: Any, receive: Any, send: Any) -> None:
    """Never answers (a long-poll whose answer has not begun)."""
    await anyio.sleep_forever()


async def streaming(scope: Any, receive: Any, send: Any) -> None:
    """Begins an event stream, then sends nothing more."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"event: hello\n\n", "more_body": True})
    await anyio.sleep_forever()


async def quick(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def get(app: Any, lease: Lease | None) -> httpx2.Response:
    async def served(scope: Any, receive: Any, send: Any) -> None:
        await serve_until(lease, app, scope, receive, send)

    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=served), base_url="http://t") as client:
        with anyio.fail_after(10):
            return await client.get("/")


async def test_an_answer_not_begun_at_expiry_is_401_invalid_token() -> None:
    response = await get(silent, Lease(time.time() + 0.2))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_a_stream_begun_ends_at_expiry() -> None:
    response = await get(streaming, Lease(time.time() + 0.2))
    assert response.status_code == 200 and response.text == "event: hello\n\n"


async def test_a_failed_recheck_ends_the_stream_before_its_expiry() -> None:
    checks: list[bool] = []

    async def still_valid() -> bool:
        checks.append(len(checks) < 2)  # valid twice, then the key is gone
        return checks[-1]

    began = time.time()
    response = await get(streaming, Lease(time.time() + 60, still_valid, every=0.05))
    assert response.status_code == 200 and time.time() - began < 5 and checks == [True, True, False]


async def test_without_a_lease_or_before_it_ends_the_app_answers_as_it_would() -> None:
    assert (await get(quick, None)).text == "done"
    assert (await get(quick, Lease(time.time() + 60))).text == "done"


async def test_an_error_of_the_app_reaches_the_server_as_raised_not_in_a_group() -> None:
    """Starlette's and uvicorn's error handling (a 500, a logged traceback) see the app's own error."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("the app's own")

    async def still_valid() -> bool:
        return True

    with pytest.raises(ValueError, match="the app's own"):
        await serve_until(Lease(time.time() + 60, still_valid), broken, {"type": "http"}, None, None)  # type: ignore[arg-type]
