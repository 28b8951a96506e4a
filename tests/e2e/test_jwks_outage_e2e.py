"""The real server's JWT verification while the issuer's JWKS endpoint hangs (server/jwks.py).

Before, every verification ran on the worker threads that sync job tools share (40), and PyJWT's key client held
one lock across each lookup of a key id it did not know and its fetch: once its 30 s cooldown had passed, each
token naming an unknown key id refetched the JWKS, one after another, each fetch up to its 10 s time-out while the
endpoint hung. Forged tokens during an identity provider's outage took every thread, and valid tokens waited
behind them (left alone in earlier notes: "JWKS unreachable"). And a key the issuer withdrew from its JWKS was
still accepted for as long as the process lived (the client memoised each key id's key). Now a token whose key
is known is checked on the event loop, fetches run one at a time on threads of their own, the keys known serve
until a fetch succeeds, and they are fetched again every VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from tests.e2e.conftest import HttpServer, start_http
from tests.e2e.test_identity_e2e import client_as
from tests.e2e.test_jobs_e2e import structured
from tests.e2e.test_jwt_e2e import AUDIENCE, ISSUER, KEY, KID, OTHER_KEY, token
from tests.json_server import json_server

pytestmark = pytest.mark.timeout(120)


@dataclass
class Jwks:
    """A JWKS endpoint that answers until `hang` is set, then holds each request until the test ends."""

    url: str = ""
    keys: list[Any] = field(default_factory=lambda: [(KID, KEY)])  # (kid, private key) of the keys served
    odd: list[dict[str, Any]] = field(default_factory=list)  # members served after those keys, as they are
    document: bytes | None = None  # served instead of the keys, when set
    hang: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)  # a fetch came in while `hang` was set
    fetches: int = 0


@pytest.fixture
def idp() -> Iterator[Jwks]:
    state = Jwks()

    def answer(path: str) -> bytes | None:
        state.fetches += 1
        if state.hang.is_set():
            state.hanging.set()
            state.release.wait(30)  # an outage: the fetch's time-out ends it, not an answer
            return None
        return state.document or jwks_of(state.keys, state.odd)

    with json_server(answer) as base:
        state.url = f"{base}/jwks.json"
        try:
            yield state
        finally:
            state.release.set()


def jwks_of(keys: list[Any], odd: list[dict[str, Any]]) -> bytes:
    public = [json.loads(RSAAlgorithm.to_jwk(key.public_key())) for _, key in keys]
    members = [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"} for (kid, _), jwk in zip(keys, public, strict=True)]
    return json.dumps({"keys": [*members, *odd]}).encode()


def jwt_server(idp: Jwks, **env: str) -> Any:
    args = ["--auth-jwks", idp.url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    return start_http("streamable-http", extra_env=env, args=args)


async def list_jobs_as(server: HttpServer, bearer: str) -> float:
    """Seconds for a whole session as `bearer` (initialize, list-jobs, close: each request verifies the token)."""
    began = anyio.current_time()
    async with client_as(server, bearer) as client:
        assert structured(await client.call_tool("list-jobs", {}))["jobs"] == []
    return anyio.current_time() - began


async def forge(server: HttpServer, count: int) -> list[int]:
    """`count` requests at once with tokens naming key ids the issuer never had: the status of each."""
    statuses: list[int] = []
    async with httpx2.AsyncClient(timeout=60) as http, anyio.create_task_group() as tg:

        async def one(i: int) -> None:
            headers = {"Authorization": f"Bearer {forged(i)}", "Accept": "application/json"}
            statuses.append((await http.post(server.url, json={}, headers=headers)).status_code)

        for i in range(count):
            tg.start_soon(one, i)
    return statuses


def forged(i: int) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}
    return jwt.encode(claims, OTHER_KEY, algorithm="RS256", headers={"kid": f"forged-{i}"})


async def test_forged_key_ids_during_an_outage_do_not_hold_up_valid_tokens(idp: Jwks) -> None:
    """The keys are fresh (refreshed every 300 s, the default); the pause lets the server's period between two
    fetches pass (`VIBE_JOBS_AUTH_JWKS_RETRY_SECONDS`, 30 s by default: PyJWT's cooldown before; a subprocess's
    clock cannot be set from here), so each forged key id asks for a fetch, which hangs."""
    with jwt_server(idp, VIBE_JOBS_AUTH_JWKS_RETRY_SECONDS="1") as server:
        await list_jobs_as(server, token("alice"))  # the keys are fetched
        idp.hang.set()
        await anyio.sleep(1.1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(forge, server, 45)  # more than the 40 worker threads
            assert await anyio.to_thread.run_sync(idp.hanging.wait, 30)  # a forged token's fetch hangs
            took = None
            with anyio.move_on_after(20):  # before: it waited for a thread the forged tokens held, 10 s each
                took = await list_jobs_as(server, token("alice"))
            tg.cancel_scope.cancel()
        assert took is not None and took < 3, took


async def test_the_keys_known_serve_through_an_outage(idp: Jwks) -> None:
    """Keys past their refresh interval are used while the JWKS hangs; forged key ids are refused, and a flood of
    them costs a fetch or two, one at a time."""
    with jwt_server(idp, VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS="0.001") as server:
        await list_jobs_as(server, token("alice"))
        idp.hang.set()
        for _ in range(3):  # each verification finds the keys stale: a fetch starts in the background and hangs
            assert await list_jobs_as(server, token("alice")) < 3
        fetches = idp.fetches
        assert await forge(server, 8) == [401] * 8
        assert idp.fetches - fetches <= 2  # one that waited for the fetch under way, then none (it was just tried)


@pytest.mark.parametrize("rotated", [True, False], ids=["rotated-out", "only-key-revoked"])
async def test_a_key_the_issuer_withdraws_is_refused_after_the_next_refresh(idp: Jwks, rotated: bool) -> None:
    """Before: accepted until the server restarted (PyJWT's client memoised each key id's key). An issuer that
    revokes its only key serves an empty set: that was taken for an outage and the key kept (helper-73 F4)."""
    with jwt_server(idp, VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS="0.2") as server:
        await list_jobs_as(server, token("alice"))
        idp.keys = [("key-2", OTHER_KEY)] if rotated else []  # key-1 is withdrawn (rotated out, or compromised)
        headers = {"Authorization": f"Bearer {token('alice')}", "Accept": "application/json"}
        async with httpx2.AsyncClient(timeout=30) as http:
            with anyio.fail_after(10):
                while True:  # the server refetches its keys every 0.2 s: asked again each 100 ms until it has
                    if (await http.post(server.url, json={}, headers=headers)).status_code == 401:
                        break
                    await anyio.sleep(0.1)
        if not rotated:
            return
        signed = jwt.encode(
            jwt.decode(token("alice"), options={"verify_signature": False}), OTHER_KEY, "RS256", {"kid": "key-2"}
        )
        assert await list_jobs_as(server, signed) < 3  # the new key's tokens are accepted


ODD_MEMBERS = {
    "alg a list": {"alg": ["RS256"], "kid": "key-odd"},
    "kid a list": {"kid": ["key-odd"]},
    "kty a list": {"kty": ["RSA"], "kid": "key-odd"},
    "key_ops not a list": {"key_ops": "verify", "kid": "key-odd"},
}


@pytest.mark.parametrize("odd", ODD_MEMBERS.values(), ids=ODD_MEMBERS.keys())
async def test_a_malformed_member_of_the_jwks_leaves_its_other_keys_in_use(idp: Jwks, odd: dict[str, Any]) -> None:
    """A member whose `alg` or `kid` was a list raised TypeError out of the fetch (unhashable), which nothing
    caught: the fetch failed with a traceback, no key of the set was known, and every token was 401. The member
    is skipped, and the others serve. (A `key_ops` that is not a list of operations with `verify` verifies nothing.)"""
    public = json.loads(RSAAlgorithm.to_jwk(OTHER_KEY.public_key()))
    idp.odd = [{**public, **odd}]
    claims = jwt.decode(token("alice"), options={"verify_signature": False})
    odd_token = jwt.encode(claims, OTHER_KEY, "RS256", {"kid": "key-odd"})
    with jwt_server(idp) as server:
        assert await list_jobs_as(server, token("alice")) < 3  # the set's other key verifies
        async with httpx2.AsyncClient(timeout=30) as http:
            headers = {"Authorization": f"Bearer {odd_token}", "Accept": "application/json"}
            assert (await http.post(server.url, json={}, headers=headers)).status_code == 401
        server.errlog.seek(0)
        assert b"Traceback" not in server.errlog.read()


async def test_a_jwks_nested_too_deep_to_read_is_a_failed_fetch(idp: Jwks) -> None:
    """A JWKS document nested deeper than Python's JSON reader goes raised RecursionError out of the fetch, which
    nothing caught: the fetch's thread died with a traceback on the server's stderr, and the log never said the
    JWKS could not be read (auth.jwks_unavailable), nor would it on any later fetch. It is a failed fetch like any
    other: logged, the keys known kept, the token naming an unknown key refused."""
    idp.document = b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with jwt_server(idp) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            headers = {"Authorization": f"Bearer {token('alice')}", "Accept": "application/json"}
            assert (await http.post(server.url, json={}, headers=headers)).status_code == 401
        server.errlog.seek(0)
        said = server.errlog.read().decode()
    assert "Traceback" not in said, said[-2000:]
    entries = [json.loads(line) for line in said.splitlines() if line.startswith("{")]
    unavailable = [entry for entry in entries if entry.get("event") == "auth.jwks_unavailable"]
    assert [entry["error"] for entry in unavailable] == ["RecursionError"] * idp.fetches, entries
