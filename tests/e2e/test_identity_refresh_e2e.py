"""A session's identity is its latest token's, against the real `vibe-jobs serve` over HTTP.

The SDK binds a session to its principal (client, issuer, subject), not to its scopes: a client that refreshes its
token keeps its session when the new token names the same principal, and its scopes may differ (an IdP that took
`admin` away). A legacy `resources/subscribe` to another principal's job, made while the session's token held
`admin`, was checked once: after the refresh the session went on hearing that job's updates. Now an update goes to
a session only while its latest token may read the job. So for a job's question put to an admin's long-poll, which
stays outstanding past it: its reply goes to the job only while the session's latest token may read the job.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import ElicitRequestParams, ElicitResult

from tests.e2e.conftest import HttpServer, start_http
from tests.e2e.test_identity_e2e import ALICE, client_as
from tests.e2e.test_jobs_e2e import start
from tests.e2e.test_jwt_e2e import AUDIENCE, ISSUER, jwks_url, token
from tests.e2e.test_resources_e2e import Watcher, job_uri

pytestmark = pytest.mark.timeout(120)
_ = jwks_url  # the JWT module's JWKS fixture

BOB_ADMIN, BOB = "bob-admin-token-0123456789abcdef", "bob-plain-token-0123456789abcdef"


class Bearer(httpx2.Auth):
    """A bearer token the client can change between requests (a refreshed access token)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@pytest.fixture(params=["streamable-http", "sse"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "tokens"
    admin = hashlib.sha256(BOB_ADMIN.encode()).hexdigest()
    path.write_text(f"{ALICE} alice\nsha256:{admin} bob admin\n{BOB} bob\n")
    path.chmod(0o600)
    with start_http(request.param, args=["--auth-tokens", str(path)]) as running:
        yield running


@asynccontextmanager
async def refreshable(server: HttpServer, bearer: Bearer, **options: Any) -> AsyncIterator[Client]:
    """A legacy client whose every request (the SSE stream and POSTs alike) carries `bearer`'s current token."""
    async with create_mcp_http_client(auth=bearer) as http:
        if server.transport == "sse":
            target: Any = sse_client(server.url, auth=bearer)
        else:
            target = streamable_http_client(server.url, http_client=http)
        async with Client(target, mode="legacy", read_timeout_seconds=60, **options) as client:
            yield client


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        await client.subscribe_resource(uri)


async def unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.unsubscribe_resource(uri)


async def cancel_and_hear(client: Client, watcher: Watcher, job: str) -> None:
    await client.call_tool("cancel-job", {"jobId": job})
    with anyio.fail_after(20):
        await watcher.next_update(job_uri(job))


async def test_a_subscription_made_as_admin_ends_when_the_refreshed_token_drops_admin(server: HttpServer) -> None:
    bearer, watcher = Bearer(BOB_ADMIN), Watcher()
    with watcher.send, watcher.recv:
        async with client_as(server, ALICE) as alice, refreshable(server, bearer, message_handler=watcher) as bob:
            before, after = await start(alice, "wait_forever", {}), await start(alice, "wait_forever", {})
            own = await start(bob, "wait_forever", {})
            for job in (before, after, own):
                await subscribe(bob, job_uri(job))
            await cancel_and_hear(alice, watcher, before)  # heard while the token holds admin
            bearer.token = BOB  # refreshed: the same principal, no longer admin
            listed = (await bob.call_tool("list-jobs", {})).structured_content or {}
            assert {j["id"] for j in listed["jobs"]} == {own}, "the session now acts without admin"
            await alice.call_tool("cancel-job", {"jobId": after})
            ended = await alice.call_tool("get-job-result", {"jobId": after, "waitSeconds": 20})
            assert (ended.structured_content or {}).get("status") == "cancelled", ended
            await cancel_and_hear(bob, watcher, own)  # told after alice's job's end (one fan-out, in order)
            await unsubscribe(bob, job_uri(own))  # its last update may follow: not while the client closes
    assert watcher.counts[job_uri(before)] >= 1
    assert watcher.counts[job_uri(after)] == 0, "alice's job was told to a session that may no longer read it"


async def test_a_question_asked_of_an_admin_is_not_answered_once_its_token_drops_admin(server: HttpServer) -> None:
    """bob, as admin, long-polls alice's job and is asked its question (the request outlives the long-poll); his
    token is refreshed without admin before he replies: his reply no longer answers alice's job."""
    bearer, asked, released = Bearer(BOB_ADMIN), anyio.Event(), anyio.Event()

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await released.wait()
        return ElicitResult(action="accept", content={"confirm": True})

    async with client_as(server, ALICE) as alice, refreshable(server, bearer, elicitation_callback=on_elicit) as bob:
        job = await start(alice, "confirm", {"question": "Delete?", "wait": 8})
        async with anyio.create_task_group() as tg:
            tg.start_soon(bob.call_tool, "get-job-result", {"jobId": job, "waitSeconds": 1})
            with anyio.fail_after(20):
                await asked.wait()
            bearer.token = BOB  # refreshed before bob replies: the same principal, no longer admin
            listed = (await bob.call_tool("list-jobs", {})).structured_content or {}
            assert listed["jobs"] == [], "the session now acts without admin"
            released.set()
        with anyio.fail_after(30):
            while (
                done := (await alice.call_tool("get-job-result", {"jobId": job, "waitSeconds": 10}))
            ).structured_content["status"] not in ("completed", "failed"):
                pass
    result = done.structured_content["result"]
    assert "deleted" not in str(result), "bob's reply answered alice's job, which he may no longer read"
    assert "no answer: timeout" in str(result), result


async def test_a_subscription_made_with_an_expired_admin_token_hears_only_the_principals_own(jwks_url: str) -> None:
    """Streamable HTTP: the session's `GET` stream ends at the admin token's `exp` and the client opens it again
    with its refreshed token, sending no request. The admin token's viewer, noted at its last request, no longer
    counts past its `exp`: the session hears only of its principal's own jobs (the SDK binds it to that principal)."""
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    life = 12  # seconds from when bob connects: long enough to connect and subscribe on a loaded machine
    bearer, watcher = Bearer(""), Watcher()
    with start_http("streamable-http", args=args) as server, watcher.send, watcher.recv:
        async with (
            client_as(server, token("alice")) as alice,
            client_as(server, token("root", scope="admin")) as root,
        ):
            admin = bearer.token = token("bob", scope="admin", exp=int(time.time()) + life)  # minted as bob connects
            async with refreshable(server, bearer, message_handler=watcher) as bob:
                before, after = await start(alice, "wait_forever", {}), await start(alice, "wait_forever", {})
                probe = await start(bob, "sleepy", {"seconds": 120, "steps": 120})  # bob's own: an update a second
                own = await start(bob, "wait_forever", {})
                for job in (before, after, probe, own):
                    await subscribe(bob, job_uri(job))
                await cancel_and_hear(alice, watcher, before)  # heard while the token holds admin
                bearer.token = token("bob")  # refreshed, without admin; bob sends no request from here on
                await anyio.sleep(max(0.0, admin_expiry(admin) + 1 - time.time()))  # the admin token expires
                # bob's stream is open again (the client reopens it after a pause of its own): he hears his job again;
                # a single update sent at expiry + 1 s was lost whenever the reopening took longer than that
                heard = watcher.counts[job_uri(probe)]
                with anyio.fail_after(30):
                    while watcher.counts[job_uri(probe)] < heard + 2:
                        await watcher.next_update(job_uri(probe))
                await alice.call_tool("cancel-job", {"jobId": after})
                ended = await alice.call_tool("get-job-result", {"jobId": after, "waitSeconds": 20})
                assert (ended.structured_content or {}).get("status") == "cancelled", ended
                await cancel_and_hear(root, watcher, own)  # told after alice's job's end (one fan-out, in order)
    assert watcher.counts[job_uri(after)] == 0, "alice's job was told on the strength of an expired admin token"


def admin_expiry(bearer: str) -> float:
    import jwt

    return float(jwt.decode(bearer, options={"verify_signature": False})["exp"])


async def test_an_admin_whose_token_expired_and_was_refreshed_hears_again_after_its_next_request(
    jwks_url: str,
) -> None:
    """Streamable HTTP: bob's admin token expires and his client refreshes it (admin still) without a request.
    Past the expiry the session's noted viewer counts as bob's own only: alice's job's updates are withheld. Once
    a request shows his refreshed admin token, he hears them again: the subscription was not dropped for good (a
    legitimate admin, whose client cannot tell, went on hearing nothing of that job)."""
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    life = 8  # seconds from when bob connects: long enough to connect and subscribe on a loaded machine
    bearer, watcher = Bearer(""), Watcher()
    with start_http("streamable-http", args=args) as server, watcher.send, watcher.recv:
        async with client_as(server, token("alice")) as alice:
            admin = bearer.token = token("bob", scope="admin", exp=int(time.time()) + life)  # minted as bob connects
            async with refreshable(server, bearer, message_handler=watcher) as bob:
                job = await start(alice, "sleepy", {"seconds": 60, "steps": 60})  # an update a second
                uri = job_uri(job)
                await subscribe(bob, uri)
                with anyio.fail_after(20):
                    await watcher.next_update(uri)  # heard while the token holds admin
                bearer.token = token("bob", scope="admin")  # refreshed, admin still; no request from bob meanwhile
                await anyio.sleep(max(0.0, admin_expiry(admin) + 1 - time.time()))  # the first token expires
                with anyio.fail_after(20):  # alice's job moves on past the expiry: updates fanned out meanwhile
                    start_at = await progress_of(alice, job)
                    while await progress_of(alice, job, wait=2) < start_at + 3 * 100 / 60:
                        pass  # each long-poll returns at the job's next change
                await bob.call_tool("list-jobs", {})  # a request: the refreshed admin token is noted
                heard = watcher.counts[uri]
                with anyio.fail_after(20):
                    while watcher.counts[uri] <= heard:
                        await watcher.recv.receive()


async def progress_of(client: Client, job: str, wait: float = 0) -> float:
    polled = (await client.call_tool("get-job-result", {"jobId": job, "waitSeconds": wait})).structured_content or {}
    assert polled.get("status") == "running", polled
    return float(polled.get("progress") or 0)
