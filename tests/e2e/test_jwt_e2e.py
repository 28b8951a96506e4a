"""JWT access tokens (`--auth-jwks --auth-issuer --auth-audience`) against the real server, with a JWKS served
by the test: the audience, issuer, expiry and signature are checked; the protected-resource metadata is served."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.e2e import test_identity_e2e
from tests.e2e.conftest import BASE_ENV, MODES, ROOT, SERVER, HttpServer, free_port, start_http
from tests.e2e.test_identity_e2e import (
    UNKNOWN_ID,
    assert_answers_as_unknown,
    client_as,
    listed,
)
from tests.e2e.test_jobs_e2e import start, structured, texts
from tests.json_server import json_server

pytestmark = pytest.mark.timeout(120)

ISSUER, AUDIENCE, KID = "https://idp.test", "https://jobs.test/mcp", "key-1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KID, EC_KEY = "key-ec", ec.generate_private_key(ec.SECP256R1())
# a key of a 512-bit modulus (too short for PS512's padding: its check raised) with no `alg`
WEAK_KID, WEAK_N = "key-512", (1 << 511) | (12345 << 3) | 1
# a real 1024-bit RSA key (shorter than RFC 7518 3.3's 2048): its tokens were accepted
SHORT_KID, SHORT_KEY = "key-1024", rsa.generate_private_key(public_exponent=65537, key_size=1024)
# EC keys whose JWK names the algorithm of another curve (RFC 7518 3.4: ES384 is P-384's)
P256_AS_ES384, P384_AS_ES256 = "key-p256-es384", "key-p384-es256"
OTHER_CURVE: dict[str, tuple[str, Any]] = {
    P256_AS_ES384: ("ES384", ec.generate_private_key(ec.SECP256R1())),
    P384_AS_ES256: ("ES256", ec.generate_private_key(ec.SECP384R1())),
}
ENC_KID, ENC_KEY = "key-enc", rsa.generate_private_key(public_exponent=65537, key_size=2048)  # `use: enc`
# keys the JWKS serves with their private parts (the issuer leaked them): kid -> (algorithm, the signing key)
LEAKED: dict[str, tuple[str, Any]] = {
    "leaked-rsa": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "leaked-ec": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    "leaked-okp": ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    "leaked-oct": ("HS256", os.urandom(32)),
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks() -> bytes:
    public = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    ec_public = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    enc_public = json.loads(RSAAlgorithm.to_jwk(ENC_KEY.public_key()))
    keys = [
        {**public, "kid": KID, "use": "sig", "alg": "RS256"},
        {**ec_public, "kid": EC_KID, "use": "sig"},
        {**enc_public, "kid": ENC_KID, "use": "enc"},
        {"kty": "RSA", "kid": WEAK_KID, "n": b64(WEAK_N.to_bytes(64, "big")), "e": "AQAB"},
        {**json.loads(RSAAlgorithm.to_jwk(SHORT_KEY.public_key())), "kid": SHORT_KID, "alg": "RS256"},
        *(
            {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": alg}
            for kid, (alg, key) in OTHER_CURVE.items()
        ),
        *({**leaked_jwk(key), "kid": kid} for kid, (_, key) in LEAKED.items()),
    ]
    return json.dumps({"keys": keys}).encode()


def leaked_jwk(key: Any) -> dict[str, Any]:
    """`key` as a JWK with its private parts."""
    if isinstance(key, bytes):
        made = HMACAlgorithm.to_jwk(key)
    elif isinstance(key, rsa.RSAPrivateKey):
        made = RSAAlgorithm.to_jwk(key)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        made = ECAlgorithm.to_jwk(key)
    else:
        made = OKPAlgorithm.to_jwk(key)
    said: dict[str, Any] = json.loads(made)
    return said


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    with json_server(lambda path: jwks()) as base:
        yield f"{base}/jwks.json"


@pytest.fixture(scope="module")
def jwt_server(jwks_url: str) -> Iterator[HttpServer]:
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    with start_http("streamable-http", args=args) as server:
        yield server


def token(sub: str, *, key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": KID})


@pytest.mark.parametrize("mode", MODES)
async def test_valid_tokens_name_their_subject_and_scope(jwt_server: HttpServer, mode: str) -> None:
    async with (
        client_as(jwt_server, token("alice"), mode) as alice,
        client_as(jwt_server, token("bob"), mode) as bob,
        client_as(jwt_server, token("root", scope="read admin"), mode) as root,
    ):
        mine = await start(alice, "noop", {})
        assert mine in await listed(alice) and mine not in await listed(bob)
        await assert_answers_as_unknown(bob, "get-job-result", {}, "jobId", mine)
        assert mine in await listed(root)
        assert UNKNOWN_ID not in await listed(root)
        assert structured(await alice.call_tool("get-job-result", {"jobId": mine}))["jobId"] == mine


@pytest.mark.parametrize(
    "bad",
    [
        lambda: token("alice", aud="https://elsewhere.test/mcp"),
        lambda: token("alice", iss="https://other-idp.test"),
        lambda: token("alice", exp=int(time.time()) - 60),
        lambda: token("alice", key=OTHER_KEY),
        lambda: "not-a-jwt",
        lambda: token("local"),  # the server's own principal (stdio, the library, schedules in code): no token's
        lambda: token("alice smith"),  # whitespace: the token file's separator
        lambda: token("alice\nbob"),  # a control character: a forged line in the server's console log
        lambda: token("x" * 256),  # longer than OIDC allows a `sub`
    ],
    ids=["audience", "issuer", "expired", "signature", "garbage", "sub local", "sub space", "sub newline", "sub 256"],
)
async def test_a_token_for_another_audience_issuer_or_key_is_401(
    jwt_server: HttpServer, bad: Callable[[], str]
) -> None:
    """Each token is made when the test runs (made at collection, each would have expired by the time a long run
    reached it, and been refused for that, whatever its own fault)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {bad()}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(jwt_server.url, json=body, headers=headers)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "/.well-known/oauth-protected-resource/mcp" in challenge, challenge


async def test_the_protected_resource_metadata_is_served(jwt_server: HttpServer) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{jwt_server.port}/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["resource"] == f"http://127.0.0.1:{jwt_server.port}/mcp"
    assert [s.rstrip("/") for s in metadata["authorization_servers"]] == [ISSUER]


@pytest.mark.parametrize(
    ("jwks", "issuer", "named"),
    [
        ("http://127.0.0.1:1/jwks", "x", "--auth-issuer (VIBE_JOBS_AUTH_ISSUER) must be an http(s) URL, not 'x'"),
        ("foo", "https://issuer.example", "--auth-jwks (VIBE_JOBS_AUTH_JWKS) must be an http(s) URL, not 'foo'"),
    ],
)
def test_a_jwt_option_that_is_not_a_url_is_one_line_at_start_up(jwks: str, issuer: str, named: str) -> None:
    """It was a pydantic or PyJWK traceback."""
    args = ["--transport", "streamable-http", "--port", str(free_port())]
    auth = ["--auth-jwks", jwks, "--auth-issuer", issuer, "--auth-audience", "aud"]
    env = {**os.environ, **BASE_ENV}
    done = subprocess.run([*SERVER, *args, *auth], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == f"vibe-jobs: {named}", done.stderr


def test_a_jwt_option_given_alone_names_what_is_missing_as_it_may_be_given() -> None:
    """VIBE_JOBS_AUTH_ISSUER alone was refused naming only the flags (--auth-jwks, ...), which the operator never
    used (review helper-111): the line names each missing option with its variable."""
    args = ["--transport", "streamable-http", "--port", str(free_port())]
    env = {**os.environ, **BASE_ENV, "VIBE_JOBS_AUTH_ISSUER": "https://issuer.example"}
    done = subprocess.run([*SERVER, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    said = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(said) == 1, done.stderr
    assert said[0].endswith("missing: --auth-jwks (VIBE_JOBS_AUTH_JWKS), --auth-audience (VIBE_JOBS_AUTH_AUDIENCE)"), (
        said
    )


# -- the subjects identity providers issue (review helper-96) -------------------------------------

store_url = test_identity_e2e.store_url  # the fixture: every store

# Auth0 (a database user, a social connection) and GitHub Actions OIDC: each was 401 under the old rule
# (`[A-Za-z0-9._@:+-]{1,128}`), which refused `|` and `/`: every user of such a deployment was locked out.
AUTH0, GOOGLE_VIA_AUTH0 = "auth0|5f7c8ec7c33c6c004bbafe82", "google-oauth2|112233445566778899000"
GITHUB_OIDC = "repo:octo-org/octo-repo:ref:refs/heads/main"


async def test_subjects_of_real_identity_providers_authenticate_and_see_only_their_own_jobs(
    jwks_url: str, store_url: str
) -> None:
    """Over streamable HTTP, on every store, with a quota on (each create takes the principal's lock: a byte of
    SQLite's lock file, a PostgreSQL advisory lock): each subject is its own principal, with its own jobs, dedupe
    and schedules."""
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE, "--store", store_url]
    with start_http("streamable-http", {"VIBE_JOBS_QUOTA_PENDING": "100"}, args) as server:
        async with (
            client_as(server, token(AUTH0)) as auth0,
            client_as(server, token(GOOGLE_VIA_AUTH0)) as google,
            client_as(server, token(GITHUB_OIDC)) as github,
        ):
            jobs = {}
            for name, client in (("auth0", auth0), ("google", google), ("github", github)):
                jobs[name] = await start(client, "echo", {"text": "same"})  # equal calls: one job each, never shared
                assert structured(await client.call_tool("get-job-result", {"jobId": jobs[name]}))["jobId"]
            assert len(set(jobs.values())) == 3, jobs
            assert await listed(auth0) == {jobs["auth0"]} and await listed(github) == {jobs["github"]}
            assert await listed(google) == {jobs["google"]}
            await assert_answers_as_unknown(github, "get-job-result", {}, "jobId", jobs["auth0"])
            await assert_answers_as_unknown(auth0, "cancel-job", {}, "jobId", jobs["github"])
            made = await github.call_tool("schedule-job", {"tool": "noop", "arguments": {}, "everySeconds": 3600})
            assert not made.is_error, texts(made)
            sid = structured(made)["scheduleId"]
            assert [s["scheduleId"] for s in structured(await github.call_tool("list-schedules", {}))["schedules"]] == [
                sid
            ]
            assert structured(await auth0.call_tool("list-schedules", {}))["schedules"] == []


async def test_a_refused_subject_is_named_in_the_servers_log(jwt_server: HttpServer) -> None:
    """A token the issuer signed for a subject no principal may be is 401, and the operator reads why."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {token('alice smith')}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.post(jwt_server.url, json=body, headers=headers)).status_code == 401
    jwt_server.errlog.seek(0)
    lines = jwt_server.errlog.read().decode().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    refused = [entry for entry in logged if entry.get("event") == "auth.subject_refused"]
    assert refused and "'alice smith'" in refused[-1]["problem"], logged
    assert "printable ASCII without spaces" in refused[-1]["problem"], refused


@pytest.mark.parametrize(
    ("claims", "named"),
    [({"iss": ISSUER + "/"}, "claimed_issuer"), ({"aud": AUDIENCE + "/"}, "claimed_audience")],
    ids=["issuer", "audience"],
)
async def test_a_token_signed_by_the_issuer_for_another_issuer_or_audience_is_named_in_the_servers_log(
    jwt_server: HttpServer, claims: dict[str, str], named: str
) -> None:
    """An issuer or audience configured a character apart from what the identity provider signs (a trailing '/')
    refused every user's token, and nothing in the server's log said why (review helper-152)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {token('alice', **claims)}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.post(jwt_server.url, json=body, headers=headers)).status_code == 401
    jwt_server.errlog.seek(0)
    logged = [json.loads(line) for line in jwt_server.errlog.read().decode().splitlines() if line.startswith("{")]
    refused = [entry for entry in logged if entry.get("event") == "auth.claim_refused"]
    said = next(iter(claims.values()))
    assert refused and refused[-1][named] == repr(said), logged[-5:]
    assert refused[-1]["issuer"] == ISSUER and refused[-1]["audience"] == AUDIENCE, refused[-1]


# -- a token whose algorithm is not its key's kind (review helper-152) ---------------------------


def forged(alg: str, kid: str) -> str:
    """A token naming `alg` and the key `kid` (key ids are public: the JWKS lists them), signed by no key."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}
    parts = [json.dumps(part).encode() for part in ({"alg": alg, "kid": kid, "typ": "JWT"}, claims)]
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in [*parts, b"x" * 64])


@pytest.mark.parametrize(("alg", "kid"), [("ES256", KID), ("ES512", KID), ("RS256", EC_KID), ("PS256", EC_KID)])
async def test_a_token_naming_an_algorithm_of_another_kind_of_key_is_401(
    jwt_server: HttpServer, alg: str, kid: str
) -> None:
    """An EC algorithm named for the issuer's RSA key, or the reverse, was PyJWT's TypeError ("Expecting a
    PEM-formatted key"): anyone who read a key id in the JWKS had every such request answered 500, with a
    traceback logged at error level, on /mcp and on the dashboard. It is refused as any token that is not valid."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {forged(alg, kid)}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(jwt_server.url, json=body, headers=headers)
        page = await http.get(f"http://127.0.0.1:{jwt_server.port}/", headers=headers)  # the dashboard
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    assert page.status_code == 401, page.text
    jwt_server.errlog.seek(0)
    assert b"Exception in ASGI application" not in jwt_server.errlog.read()


async def test_a_token_signed_by_the_issuers_ec_key_authenticates(jwt_server: HttpServer) -> None:
    """The key of each kind still verifies the algorithms of its kind."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "erin", "iat": now, "exp": now + 300}
    signed = jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": EC_KID})
    async with client_as(jwt_server, signed) as erin:
        mine = await start(erin, "noop", {})
        assert await listed(erin) == {mine}


# -- where the scopes are (review helper-152) ----------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "admin"),
    [
        ({"scope": "read admin"}, True),
        ({"scp": ["read", "admin"]}, True),  # Okta
        ({"scp": "read admin"}, True),  # Entra ID: `scp` is one space-separated string
        ({"scope": "read\u00a0admin"}, False),  # one scope (RFC 6749: scopes are apart at spaces only)
        ({"scope": "group:x\tadmin"}, False),  # a dynamic scope whose parameter the client chose
        ({"scp": ["read admin"]}, False),
    ],
    ids=["scope", "scp list", "scp string", "nbsp", "tab", "scp item with a space"],
)
async def test_scope_admin_is_read_where_identity_providers_put_it(
    jwt_server: HttpServer, claims: dict[str, Any], admin: bool
) -> None:
    """Entra ID's `scp` (a string) gave no scope at all: its admins saw only their own jobs. A scope holding a
    non-breaking space or a tab before `admin` was split there (`str.split`), as if the issuer had granted `admin`."""
    async with client_as(jwt_server, token("carol")) as carol, client_as(jwt_server, token("dave", **claims)) as dave:
        theirs = await start(carol, "noop", {})
        assert (theirs in await listed(dave)) is admin


# -- the issuer's clock (review helper-152) ------------------------------------------------------

AHEAD = 5  # seconds the issuer's clock is ahead of the server's: a token it has just issued is from the future here


@pytest.mark.parametrize("claim", ["iat", "nbf"])
async def test_a_token_just_issued_by_an_issuer_whose_clock_is_ahead_authenticates(
    jwt_server: HttpServer, claim: str
) -> None:
    """A token whose `iat` (or `nbf`) was a few seconds ahead of the server's clock was 401 (PyJWT allows no
    leeway): each fresh token of an issuer whose clock runs ahead was refused until the server's clock caught up,
    and a client that fetched another on the 401 was refused again."""
    now = int(time.time())
    async with client_as(jwt_server, token("frank", **{claim: now + AHEAD})) as frank:
        assert await listed(frank) == set()


@pytest.mark.parametrize(
    ("claim", "offset"),
    [("nbf", 600), ("exp", -2)],
    ids=["not before in ten minutes", "expired two seconds ago"],
)
async def test_a_token_not_yet_or_no_longer_valid_is_still_401(jwt_server: HttpServer, claim: str, offset: int) -> None:
    """The leeway is for clocks a little apart: not for a token valid only later, nor for one past its `exp`. (The
    times are taken when the test runs: taken at collection, 20 minutes before it ran in CI, the token of "ten
    minutes later" was valid by then.)"""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    claims = {claim: int(time.time()) + offset}
    headers = {"Authorization": f"Bearer {token('frank', **claims)}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.post(jwt_server.url, json=body, headers=headers)).status_code == 401


def signed(alg: str, kid: str, key: Any = KEY, **claims: Any) -> str:
    """A token for `mallory` signed by `key` with `alg`, naming the key `kid`."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


async def refusal(server: HttpServer, bearer: str) -> httpx2.Response:
    """The answer to `tools/list` on /mcp with `bearer`, checked to be 401 with the challenge, and no traceback
    in the server's log."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(server.url, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    server.errlog.seek(0)
    assert b"Traceback" not in server.errlog.read()
    return response


def logged(server: HttpServer, event: str) -> list[dict[str, Any]]:
    """The entries of the server's log (JSON lines) for `event`."""
    server.errlog.seek(0)
    entries = [json.loads(line) for line in server.errlog.read().decode().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == event]


# -- what a JWK says of itself: its algorithm, its use, its private parts -------------------------


@pytest.mark.parametrize("alg", ["PS256", "RS512"])
async def test_a_token_naming_another_algorithm_than_its_jwk_gives_is_401(jwt_server: HttpServer, alg: str) -> None:
    """The issuer's key says `"alg": "RS256"`; a token naming that key with PS256 or RS512, signed by that very key,
    was accepted (each key verified every algorithm of its type): the JWK's algorithm is the only one it verifies
    (RFC 7517 4.4, RFC 8725 3.1)."""
    await refusal(jwt_server, signed(alg, KID))


async def test_a_key_for_encryption_verifies_no_signature(jwt_server: HttpServer) -> None:
    """A JWK whose `use` is `enc` is the issuer's key for encrypting, not for signing tokens."""
    await refusal(jwt_server, signed("RS256", ENC_KID, ENC_KEY))


@pytest.mark.parametrize("kid", sorted(LEAKED))
async def test_a_key_served_with_its_private_parts_verifies_nothing_and_is_named_in_the_log(
    jwt_server: HttpServer, kid: str
) -> None:
    """A JWKS that publishes a private key (RSA `d`, `p`, `q`...; EC and OKP `d`; an `oct` secret) gives anyone
    the issuer's signing key: a token signed with it forges any subject, `admin` too. Before, an Ed25519 key's
    forgery authenticated (PyJWT verifies with the public half of a private key), an RSA or EC key's was a 500
    (PyJWT called `verify` on a private key: AttributeError) with a traceback. Such a key is dropped, and the
    server's log says which at error level, each time the JWKS is fetched."""
    alg, key = LEAKED[kid]
    await refusal(jwt_server, signed(alg, kid, key, scope="admin"))
    named = [entry for entry in logged(jwt_server, "auth.jwks_private_key") if entry.get("kid") == kid]
    assert named and named[-1]["level"] == "error", named
    assert not {"d", "k"} & named[-1].keys(), named[-1]  # the private parts are not repeated in the log


def raw_signed(alg: str, kid: str, key: Any) -> str:
    """A token for `mallory` signed by `key` with `alg` as it is (PyJWT's `encode` refuses a key of another curve)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300, "scope": "admin"}
    signing_input = ".".join(b64(json.dumps(part).encode()) for part in ({"alg": alg, "kid": kid}, claims))
    return f"{signing_input}.{b64(jwt.get_algorithm_by_name(alg).sign(signing_input.encode(), key))}"


@pytest.mark.parametrize(
    ("bearer", "kid", "bits"),
    [
        (lambda: raw_signed("RS256", SHORT_KID, SHORT_KEY), SHORT_KID, 1024),
        (lambda: forged("PS512", WEAK_KID), WEAK_KID, 512),
    ],
    ids=["1024 bits, signed", "512 bits, PS512"],
)
async def test_an_rsa_key_shorter_than_2048_bits_verifies_nothing_and_is_named_in_the_log(
    jwt_server: HttpServer, bearer: Callable[[], str], kid: str, bits: int
) -> None:
    """RFC 7518 3.3: RS* and PS* keys are 2048 bits or longer; a 512-bit modulus is factored cheaply, and whoever
    factors it signs any token (`admin` too). A token signed by the JWKS's 1024-bit key authenticated; a PS512 one
    naming its 512-bit key raised in PyJWT ("Digest too large for key size": a 500 before the catch-all, then
    auth.token_unverifiable). Such a key verifies nothing, the set's other keys serve, and the log names the key
    and its size at error level (not its numbers)."""
    unverifiable = len(logged(jwt_server, "auth.token_unverifiable"))
    await refusal(jwt_server, bearer())
    assert len(logged(jwt_server, "auth.token_unverifiable")) == unverifiable  # refused by rule: nothing raised
    named = [entry for entry in logged(jwt_server, "auth.jwks_weak_key") if entry.get("kid") == kid]
    assert named and named[-1]["level"] == "error" and named[-1]["bits"] == bits, named
    assert "2048" in named[-1]["problem"] and not {"n", "e"} & named[-1].keys(), named[-1]
    async with client_as(jwt_server, token(f"grace-{bits}")) as grace:  # the issuer's other keys still verify
        assert await listed(grace) == set()


async def test_a_short_key_is_logged_once_each_fetch_not_each_token() -> None:
    """Three tokens naming the short key: one fetch of the JWKS, one error line (a flood of such tokens does not
    flood the log)."""
    fetches: list[str] = []

    def answer(path: str) -> bytes:
        fetches.append(path)
        return jwks()

    with json_server(answer) as base:
        args = ["--auth-jwks", f"{base}/jwks.json", "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
        with start_http("streamable-http", args=args) as server:
            for _ in range(3):
                await refusal(server, raw_signed("RS256", SHORT_KID, SHORT_KEY))
            named = [entry for entry in logged(server, "auth.jwks_weak_key") if entry.get("kid") == SHORT_KID]
            assert len(named) == len(fetches) == 1, (named, fetches)


@pytest.mark.parametrize(("kid", "alg"), [(P256_AS_ES384, "ES384"), (P384_AS_ES256, "ES256"), (EC_KID, "ES384")])
async def test_an_ec_key_verifies_only_its_curves_algorithm(jwt_server: HttpServer, kid: str, alg: str) -> None:
    """ES256 is P-256's algorithm, ES384 P-384's, ES512 P-521's (RFC 7518 3.4). Under PyJWT 2.10 (which mcp allows)
    the issuer's P-256 key, with no `alg`, verified ES384 and ES512 tokens it signed; PyJWT 2.11 refuses them, and
    nothing said why when a JWK names another curve's algorithm (every token by that key refused). Refused here by
    the key's curve whatever PyJWT's version, and such a JWK is named in the log at error level."""
    if kid == EC_KID:
        await refusal(jwt_server, raw_signed(alg, kid, EC_KEY))
        return
    await refusal(jwt_server, raw_signed(alg, kid, OTHER_CURVE[kid][1]))
    named = [entry for entry in logged(jwt_server, "auth.jwks_curve_mismatch") if entry.get("kid") == kid]
    assert named and named[-1]["level"] == "error" and alg in named[-1]["problem"], named
    assert named[-1]["curve"] == {"ES384": "secp256r1", "ES256": "secp384r1"}[alg], named[-1]


# -- numbers a token's claims may hold -----------------------------------------------------------


@pytest.mark.parametrize("exp", [10**400, 2**64, 1e300], ids=["10**400", "2**64", "1e300"])
async def test_a_token_expiring_past_any_date_is_401(jwt_server: HttpServer, exp: float) -> None:
    """The issuer's key signed a token with an `exp` past any date: it was accepted (PyJWT checks only that it is
    later than now); past a float's range (10**400), the request then failed where the server computes when it
    must end (OverflowError: a 500, and a traceback logged, for every request of that token)."""
    said = len(logged(jwt_server, "auth.times_refused"))
    await refusal(jwt_server, signed("RS256", KID, exp=exp))
    assert len(logged(jwt_server, "auth.times_refused")) == said + 1  # the issuer signed it: the operator is told


def signed_as_is(header: str, claims: str | bytes) -> str:
    """A token of `header` and `claims` (JSON texts, as they are: NaN, 1e400, a list...) signed by the issuer's key."""
    signing_input = f"{b64(header.encode())}.{b64(claims if isinstance(claims, bytes) else claims.encode())}"
    signature = jwt.get_algorithm_by_name("RS256").sign(signing_input.encode(), KEY)
    return f"{signing_input}.{b64(signature)}"


def malformed_tokens() -> dict[str, str]:
    """Tokens no server should accept, or choke on: the issuer's key signs the claims a test names (so only the
    claim is at fault), with the header's faults unsigned."""
    now = int(time.time())
    good = f'"iss": "{ISSUER}", "aud": "{AUDIENCE}", "sub": "mallory"'
    header = json.dumps({"alg": "RS256", "kid": KID})
    claims: dict[str, str | bytes] = {
        "exp NaN": f'{{{good}, "exp": NaN}}',
        "exp Infinity": f'{{{good}, "exp": Infinity}}',
        "exp 1e400": f'{{{good}, "exp": 1e400}}',
        "exp a string": f'{{{good}, "exp": "{now + 300}"}}',
        "exp true": f'{{{good}, "exp": true}}',
        "exp 4301 digits": f'{{{good}, "exp": 1{"0" * 4300}}}',
        "nbf 10**400": f'{{{good}, "exp": {now + 300}, "nbf": 1{"0" * 400}}}',
        "nbf NaN": f'{{{good}, "exp": {now + 300}, "nbf": NaN}}',
        "nbf a string": f'{{{good}, "exp": {now + 300}, "nbf": "soon"}}',
        "nbf a string of digits": f'{{{good}, "exp": {now + 300}, "nbf": "{now}"}}',
        "iat a string of digits": f'{{{good}, "exp": {now + 300}, "iat": "{now}"}}',
        "iat 10**400": f'{{{good}, "exp": {now + 300}, "iat": 1{"0" * 400}}}',
        "iat -Infinity": f'{{{good}, "exp": {now + 300}, "iat": -Infinity}}',
        "iat a list": f'{{{good}, "exp": {now + 300}, "iat": [1]}}',
        "sub a number": f'{{"iss": "{ISSUER}", "aud": "{AUDIENCE}", "sub": 7, "exp": {now + 300}}}',
        "sub a list": f'{{"iss": "{ISSUER}", "aud": "{AUDIENCE}", "sub": ["a"], "exp": {now + 300}}}',
        "aud an object": f'{{"iss": "{ISSUER}", "aud": {{}}, "sub": "mallory", "exp": {now + 300}}}',
        "iss a list": f'{{"iss": ["{ISSUER}"], "aud": "{AUDIENCE}", "sub": "mallory", "exp": {now + 300}}}',
        "claims a list": "[1, 2]",
        "claims nested deep": "[" * 5_000 + "]" * 5_000,
        "claims not JSON": "{",
        "claims not UTF-8": b'{"sub": "\xff"}',
    }
    tokens = {name: signed_as_is(header, text) for name, text in claims.items()}
    body = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300}).encode())
    for name, bad in {
        "alg none": '{"alg": "none", "kid": "key-1"}',
        "alg missing": '{"kid": "key-1"}',
        "alg a list": '{"alg": ["RS256"], "kid": "key-1"}',
        "alg HS256": '{"alg": "HS256", "kid": "key-1"}',
        "kid a number": '{"alg": "RS256", "kid": 1}',
        "kid a list": '{"alg": "RS256", "kid": ["key-1"]}',
        "kid 5000 characters": json.dumps({"alg": "RS256", "kid": "k" * 5000}),
        "crit unknown": '{"alg": "RS256", "kid": "key-1", "crit": ["x"]}',
        "crit a string": '{"alg": "RS256", "kid": "key-1", "crit": "exp"}',
        "b64 false": '{"alg": "RS256", "kid": "key-1", "b64": false, "crit": ["b64"]}',
        "header a list": "[]",
        "header 4301 digits": f'{{"alg": "RS256", "kid": "key-1", "n": 1{"0" * 4300}}}',
        "header not JSON": "{",
    }.items():
        tokens[name] = f"{b64(bad.encode())}.{body}.{b64(b'x' * 256)}"
    tokens |= {"two parts": f"{b64(header.encode())}.{body}", "four parts": f"{tokens['alg none']}.x"}
    tokens |= {"dots": "...", "not base64": "!!!.@@@.###", "empty parts": "..x", "one character": "e"}
    return tokens


async def test_malformed_tokens_are_each_401_never_500(jwt_server: HttpServer) -> None:
    """Each of `malformed_tokens` on /mcp and on the dashboard: 401 with the challenge, and nothing in the server's
    log at error level (no traceback), nor the token."""
    tokens, unverifiable = malformed_tokens(), len(logged(jwt_server, "auth.token_unverifiable"))
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    answers = {}
    async with httpx2.AsyncClient(timeout=30) as http:
        for name, bad in tokens.items():
            headers = {"Authorization": f"Bearer {bad}", "Accept": "application/json, text/event-stream"}
            on_mcp = await http.post(jwt_server.url, json=mcp, headers=headers)
            page = await http.get(f"http://127.0.0.1:{jwt_server.port}/", headers=headers)
            answers[name] = (on_mcp.status_code, page.status_code, "www-authenticate" in on_mcp.headers)
    assert {name: said for name, said in answers.items() if said != (401, 401, True)} == {}
    jwt_server.errlog.seek(0)
    log = jwt_server.errlog.read().decode()
    assert "Traceback" not in log and len(logged(jwt_server, "auth.token_unverifiable")) == unverifiable
    assert not [bad for bad in tokens.values() if len(bad) > 20 and bad in log]


# -- one Authorization header, one verdict on every route ----------------------------------------


def header_forms() -> dict[str, list[tuple[str, str]]]:
    """Authorization headers as clients send them, right and wrong: each as the request's list of headers."""
    admin, user = token("root", scope="admin"), token("alice")
    return {
        "admin": [("Authorization", f"Bearer {admin}")],
        "not admin": [("Authorization", f"Bearer {user}")],
        "scheme lower case": [("Authorization", f"bearer {admin}")],
        "scheme upper case": [("Authorization", f"BEARER {admin}")],
        "two spaces": [("Authorization", f"Bearer  {admin}")],
        "a tab": [("Authorization", f"Bearer\t{admin}")],
        "no space": [("Authorization", f"Bearer{admin}")],
        "words after": [("Authorization", f"Bearer {admin} x")],
        "scheme alone": [("Authorization", "Bearer")],
        "basic": [("Authorization", "Basic cm9vdDpyb290")],
        "valid then garbage": [("Authorization", f"Bearer {admin}"), ("Authorization", "Bearer garbage")],
        "garbage then valid": [("Authorization", "Bearer garbage"), ("Authorization", f"Bearer {admin}")],
        "none": [],
    }


async def status_of(http: httpx2.AsyncClient, method: str, url: str, headers: list[tuple[str, str]]) -> int:
    """The status of a request (a stream's: its answer is not read)."""
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    sent = [*headers, ("Accept", "application/json, text/event-stream")]
    async with http.stream(method, url, headers=sent, json=mcp if method == "POST" else None) as response:
        return response.status_code


async def test_every_route_takes_the_authorization_header_as_mcp_does(jwks_url: str) -> None:
    """For each form of the header: /mcp (streamable HTTP), /sse (an SSE server), the dashboard and its /events
    all authenticate it, or all refuse it (401); the dashboard then answers 403 for a token without `admin`."""
    args = ["--auth-jwks", jwks_url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    verdicts: dict[str, list[int]] = {}
    with start_http("streamable-http", args=args) as streamable, start_http("sse", args=args) as sse:
        async with httpx2.AsyncClient(timeout=30) as http:
            for name, headers in header_forms().items():
                on = f"http://127.0.0.1:{streamable.port}"
                verdicts[name] = [
                    await status_of(http, "POST", streamable.url, headers),
                    await status_of(http, "GET", sse.url, headers),
                    await status_of(http, "GET", f"{on}/", headers),
                    await status_of(http, "GET", f"{on}/events", headers),
                    await status_of(http, "GET", f"{on}/metrics", headers),  # open: figures, no job data
                ]
    authenticated = {name: [status != 401 for status in said[:4]] for name, said in verdicts.items()}
    assert {name: said for name, said in authenticated.items() if len(set(said)) != 1} == {}, verdicts
    assert {name for name, said in authenticated.items() if said[0]} == {
        "admin",
        "not admin",
        "scheme lower case",
        "scheme upper case",
        "valid then garbage",
    }, verdicts
    assert verdicts["not admin"][2:] == [403, 403, 200] and {said[4] for said in verdicts.values()} == {200}, verdicts


async def test_a_token_refused_on_the_dashboard_is_checked_and_logged_once(jwt_server: HttpServer) -> None:
    """The SDK's authentication checks the Authorization header on every route of the app; the dashboard then
    checked the same token again: each of its requests verified a signature twice, and a refusal the issuer's
    operator must read (a time claim not a number) was logged twice. The dashboard takes the SDK's verdict."""
    claims = jwt.decode(token("mallory"), options={"verify_signature": False})
    bad = signed_as_is(json.dumps({"alg": "RS256", "kid": KID}), json.dumps({**claims, "exp": str(claims["exp"])}))
    said = len(logged(jwt_server, "auth.times_refused"))
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await http.get(f"http://127.0.0.1:{jwt_server.port}/", headers={"Authorization": f"Bearer {bad}"})
    assert page.status_code == 401, page.text
    assert len(logged(jwt_server, "auth.times_refused")) == said + 1
