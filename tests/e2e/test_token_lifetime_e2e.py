"""A stream lives no longer than the JWT that opened it, against the real server.

Before, a token was checked once, when a request began: a streamable-HTTP `GET` stream (notifications), a
legacy SSE session (`GET /sse`: every answer of the session rides on it), a long-poll and the dashboard's
`/events` (every principal's job changes, for an admin) went on delivering after the token's `exp`, for as
long as the client kept the connection open. Now each ends at `exp`: a stream that has begun ends there (the
client reconnects with a fresh token, and an expired one is 401), a request not yet answered is 401
`invalid_token`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest

from tests.e2e.conftest import MODES, HttpServer, start_http
from tests.e2e.test_identity_e2e import client_as
from tests.e2e.test_jobs_e2e import start
from tests.e2e.test_jwks_outage_e2e import Jwks, idp
from tests.e2e.test_jwt_e2e import AUDIENCE, ISSUER, OTHER_KEY, jwks_url, token
from tests.e2e.test_resources_e2e import Watcher, job_uri, subscribed

pytestmark = pytest.mark.timeout(120)
_ = jwks_url  # the module's JWKS fixture
LIFE = 6  # seconds a short-lived token is valid for: long enough to open what the test holds open
SLACK = 3  # seconds after `exp` by which an open stream has ended


def short_lived(sub: str, **claims: Any) -> str:
    return token(sub, exp=int(time.time()) + LIFE, **claims)


def expiry_of(bearer: str) -> float:
    import jwt

    return float(jwt.decode(bearer, options={"verify_signature": False})["exp"])


@pytest.fixture(params=["streamable-http", "sse"], scope="module")
def server(request: pytest.FixtureRequest, jwks_url: str) -> Iterator[HttpServer]:
    """One server of each transport for the module's tests: each test mints its own tokens and makes its own jobs."""
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    with start_http(request.param, args=args) as running:
        yield running


@asynccontextmanager
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(60, read=60)) as client:
        yield client


async def assert_ends_by_expiry(response: Any, bearer: str) -> None:
    """The open event stream `response` ends no later than SLACK seconds after `bearer`'s `exp`."""
    deadline = expiry_of(bearer) + SLACK
    with anyio.fail_after(max(0.0, deadline - time.time())):  # before: it went on for as long as it was read
        async for _ in response.aiter_bytes():
            pass
    assert time.time() >= expiry_of(bearer) - 1  # it ended at the expiry, not at once


async def test_the_dashboard_event_stream_ends_when_the_admin_token_expires(server: HttpServer) -> None:
    """An admin's `/events` shows every principal's job changes: an expired token saw them for ever."""
    bearer = short_lived("root", scope="admin")
    url = f"http://127.0.0.1:{server.port}/events"
    async with http() as client, client.stream("GET", url, headers={"Authorization": f"Bearer {bearer}"}) as events:
        assert events.status_code == 200, await events.aread()
        await assert_ends_by_expiry(events, bearer)
        response = await client.get(url, headers={"Authorization": f"Bearer {bearer}"})
        assert response.status_code == 401  # and it cannot be opened again with that token


async def test_the_dashboard_event_stream_opened_with_the_cookie_ends_too(server: HttpServer) -> None:
    bearer = short_lived("root", scope="admin")
    url = f"http://127.0.0.1:{server.port}/events"
    async with http() as client, client.stream("GET", url, cookies={"vibe_jobs_token": bearer}) as events:
        assert events.status_code == 200, await events.aread()
        await assert_ends_by_expiry(events, bearer)


async def test_an_mcp_event_stream_ends_when_its_token_expires(server: HttpServer) -> None:
    """Streamable HTTP: the session's `GET` stream (notifications: subscriptions' updates, questions). SSE: the
    session's stream, which carries every answer of the session."""
    bearer = short_lived("alice")
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "text/event-stream"}
    async with http() as client:
        if server.transport == "sse":
            opened = client.stream("GET", server.url, headers=headers)
        else:
            session = await _session(client, server, bearer)
            opened = client.stream("GET", server.url, headers={**headers, "Mcp-Session-Id": session})
        async with opened as stream:
            assert stream.status_code == 200, await stream.aread()
            await assert_ends_by_expiry(stream, bearer)


async def test_a_long_poll_is_answered_before_its_token_expires(server: HttpServer) -> None:
    """`get-job-result` waiting (up to 50 s) on the caller's own running job is answered, the job still running,
    just before the token's `exp` (the request would be cut there: "SSE stream ended without a response")."""
    bearer = short_lived("alice")
    async with client_as(server, token("alice")) as owner:
        job = await start(owner, "wait_forever", {})
        async with client_as(server, bearer) as client:
            with anyio.fail_after(expiry_of(bearer) + SLACK - time.time()):
                answer = await client.call_tool("get-job-result", {"jobId": job, "waitSeconds": 50})
            assert time.time() >= expiry_of(bearer) - 2, "it waited"
            assert answer.structured_content and answer.structured_content["status"] == "running", answer
        await owner.call_tool("cancel-job", {"jobId": job})


@pytest.mark.parametrize("mode", MODES)
async def test_a_subscription_hears_nothing_after_its_token_expires(server: HttpServer, mode: str) -> None:
    """Legacy: `resources/subscribe`, heard on the session's `GET` stream (SSE: the session's stream);
    2026-07-28: a `subscriptions/listen` stream. A job's change after the token's `exp` reaches its other
    subscriber (the same principal, with a valid token), not the expired one."""
    expired, current = Watcher(), Watcher()
    bearer, heard = short_lived("alice"), []
    with expired.send, expired.recv, current.send, current.recv:
        async with client_as(server, token("alice"), mode, message_handler=current) as owner:
            job, before = await start(owner, "wait_forever", {}), await start(owner, "wait_forever", {})
            async with subscribed(owner, job_uri(job)), subscribed(owner, job_uri(before)):
                with contextlib.suppress(Exception):  # the client may report its stream's end as it likes
                    async with (
                        client_as(server, bearer, mode, message_handler=expired) as client,
                        subscribed(client, job_uri(job)),
                        subscribed(client, job_uri(before)),
                    ):
                        await _cancel_and_hear(owner, current, before)
                        with anyio.fail_after(20):  # heard while the token is valid
                            await expired.next_update(job_uri(before))
                        await anyio.sleep(max(0.0, expiry_of(bearer) + 1 - time.time()))  # the token expires
                        heard.append(await _cancel_and_hear(owner, current, job))
                if not heard:  # the client ended before the change was made: it is made after
                    await _cancel_and_hear(owner, current, job)
    assert expired.counts[job_uri(before)] >= 1, "the subscription was heard before the expiry"
    assert expired.counts[job_uri(job)] == 0, expired.counts


async def _cancel_and_hear(owner: Any, current: Watcher, job: str) -> bool:
    await owner.call_tool("cancel-job", {"jobId": job})
    with anyio.fail_after(20):
        await current.next_update(job_uri(job))
    await owner.call_tool("get-job-result", {"jobId": job})  # a round trip: time for a stray update to come
    return True


async def _session(client: httpx2.AsyncClient, server: HttpServer, bearer: str) -> str:
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await client.post(server.url, json=hello, headers=headers)
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await client.post(server.url, json=done, headers={**headers, "Mcp-Session-Id": session})
    return session


# -- a key the issuer withdraws ends the streams its tokens opened ---------------------------------

_ = idp  # the outage module's JWKS fixture (its keys can be changed)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_streams_opened_with_a_withdrawn_key_end_after_the_next_refresh(idp: Jwks, transport: str) -> None:
    """Before: new requests were refused after the refresh, but the streams already open went on until `exp`
    (the dashboard's `/events`: every principal's job changes)."""
    args = ["--auth-jwks", idp.url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    env = {"VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS": "0.2"}
    with start_http(transport, env, args) as server:
        admin, alice = token("root", scope="admin"), token("alice")
        events_url = f"http://127.0.0.1:{server.port}/events"
        async with http() as client:
            if transport == "sse":
                mcp_stream = client.stream("GET", server.url, headers=_streaming(alice))
            else:
                session = await _session(client, server, alice)
                mcp_stream = client.stream("GET", server.url, headers={**_streaming(alice), "Mcp-Session-Id": session})
            async with (
                client.stream("GET", events_url, headers=_streaming(admin)) as events,
                mcp_stream as stream,
            ):
                assert events.status_code == stream.status_code == 200
                idp.keys = [("key-2", OTHER_KEY)]  # key-1 withdrawn
                with anyio.fail_after(10):  # refetched every 0.2 s; before: until `exp`, 300 s away
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_drain, events)
                        tg.start_soon(_drain, stream)
            assert (await client.get(events_url, headers=_streaming(admin))).status_code == 401


def _streaming(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}", "Accept": "text/event-stream"}


async def _drain(response: Any) -> None:
    async for _ in response.aiter_bytes():
        pass
