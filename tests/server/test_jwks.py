"""The issuer's keys and the JWT check, fuzzed (server/jwks.py, server/auth.py `JwtVerifier`): whatever a JWKS
member or a token holds, nothing raises, and what is accepted is what the rules allow."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms
from structlog.testing import capture_logs

from tests.json_server import json_server
from vibe_jobs.server.auth import LATEST_EXPIRY, JwtVerifier
from vibe_jobs.server.jwks import CURVE_ALGORITHMS, KEY_ALGORITHMS, PRIVATE_MEMBERS, RSA_MIN_BITS, signing_keys

ISSUER, AUDIENCE = "https://idp.test", "https://jobs.test/mcp"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OKP_KEY = ed25519.Ed25519PrivateKey.generate()
SHORT_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # verifies nothing
P384_KEY = ec.generate_private_key(ec.SECP384R1())
# each kind of key, public and private, as the JWK the issuer may serve
JWKS_MEMBERS = [
    json.loads(made)
    for made in (
        RSAAlgorithm.to_jwk(RSA_KEY),
        RSAAlgorithm.to_jwk(RSA_KEY.public_key()),
        ECAlgorithm.to_jwk(EC_KEY),
        ECAlgorithm.to_jwk(EC_KEY.public_key()),
        OKPAlgorithm.to_jwk(OKP_KEY),
        OKPAlgorithm.to_jwk(OKP_KEY.public_key()),
        RSAAlgorithm.to_jwk(SHORT_RSA_KEY.public_key()),
        ECAlgorithm.to_jwk(P384_KEY.public_key()),
    )
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
JWK_MEMBERS = ["kty", "alg", "use", "key_ops", "kid", "crv", "n", "e", "x", "y", "d", "k"]
ALGORITHMS = sorted({a for kind in KEY_ALGORITHMS.values() for a in kind} | {"HS256", "none", "RSA-OAEP"})


@st.composite
def jwks_members(draw: st.DrawFn) -> dict[str, Any]:
    """A real JWK with some members replaced: by another algorithm, use or key id, or by any JSON value."""
    member = {**draw(st.sampled_from(JWKS_MEMBERS)), "kid": "k"}
    plausible = {"alg": st.sampled_from(ALGORITHMS), "use": st.sampled_from(["sig", "enc"]), "kid": st.text()}
    for name in draw(st.lists(st.sampled_from(JWK_MEMBERS), max_size=3, unique=True)):
        member[name] = draw(plausible.get(name, JSON_VALUES) | JSON_VALUES)
    return member


@settings(max_examples=300, deadline=None)
@given(st.lists(jwks_members(), max_size=3))
def test_a_jwks_member_verifies_only_as_its_jwk_allows(members: list[dict[str, Any]]) -> None:
    """Never raises (a member whose `alg` or `kid` was a list failed the whole set: TypeError); a key kept is
    for signatures, has no private parts, and verifies its JWK's `alg` alone, else its type's algorithms; an RSA
    key is 2048 bits or more, an EC key verifies its curve's algorithm only."""
    with capture_logs():
        keys = signing_keys({"keys": members})
    for kid, key in keys.items():
        assert any(allows(m, key.algorithms) for m in members if m.get("kid") == kid), (members, key)
        if isinstance(key.key, rsa.RSAPublicKey):
            assert key.key.key_size >= RSA_MIN_BITS, (members, key)
        if isinstance(key.key, ec.EllipticCurvePublicKey):
            assert key.algorithms == (CURVE_ALGORITHMS[key.key.curve.name],), (members, key)


def allows(member: dict[str, Any], algorithms: tuple[str, ...]) -> bool:
    """May the JWK `member` verify with `algorithms`? (An `alg` of null is no `alg`, as a `use` of null.)"""
    public_for_signatures = not PRIVATE_MEMBERS & member.keys() and member.get("use") in ("sig", None)
    kty, alg = member.get("kty"), member.get("alg")
    of_its_type = isinstance(kty, str) and set(algorithms) <= set(KEY_ALGORITHMS.get(kty, ()))
    return public_for_signatures and of_its_type and (alg is None or algorithms == (alg,))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: dict[str, Any], claims: Any) -> str:
    """A token of `header` and `claims` (as JSON: NaN, 10**400 and the like pass) signed by the issuer's RSA key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = get_default_algorithms()["RS256"].sign(signing_input.encode(), RSA_KEY)
    return f"{signing_input}.{b64(signature)}"


NUMBERS = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.sampled_from([2**63, 10**20, 10**400, 1e300])
)
CLAIM_VALUES = NUMBERS | JSON_VALUES | st.sampled_from([ISSUER, AUDIENCE, [AUDIENCE], "alice", "admin"])
CLAIMS = st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "scp", "client_id", "azp"]),
    CLAIM_VALUES,
    max_size=4,
)
HEADERS = st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "x5c"]), JSON_VALUES, max_size=2)


@pytest.fixture(scope="module")
def verifier() -> Iterator[JwtVerifier]:
    """A verifier of the issuer's JWKS, served locally: its RSA key (`kid` k, RS256 only)."""
    public = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    document = json.dumps({"keys": [{**public, "kid": "k", "use": "sig", "alg": "RS256"}]}).encode()
    with json_server(lambda path: document) as base:
        yield JwtVerifier(f"{base}/jwks.json", ISSUER, AUDIENCE, 300, 30)


@settings(max_examples=300, deadline=None)
@given(header=HEADERS, claims=CLAIMS, cut=st.integers(min_value=0, max_value=400))
def test_no_token_raises_and_what_is_accepted_expires_in_range(
    verifier: JwtVerifier, header: dict[str, Any], claims: dict[str, Any], cut: int
) -> None:
    """Tokens signed by the issuer's key with any header and claims (huge, NaN, non-numeric `exp`/`nbf`/`iat`...),
    and the same cut short: each is refused or accepted by a rule (no `auth.token_unverifiable`: nothing raised),
    and one accepted has numbers for times and expires after now and by LATEST_EXPIRY (`exp` 10**400 was
    accepted, then a 500)."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now, **claims}
    token = signed({"alg": "RS256", "kid": "k", **header}, body)
    for sent in (token, token[:cut]):
        with capture_logs() as logs:
            found = anyio.run(verifier.verify_token, sent)
        assert not [entry for entry in logs if entry["event"] == "auth.token_unverifiable"], logs
        if found is not None:
            assert found.expires_at is not None and now < found.expires_at <= LATEST_EXPIRY, found
            times = [body[name] for name in ("exp", "nbf", "iat") if name in body]
            assert all(type(time) in (int, float) for time in times), body  # `"exp": "1796000000"` was taken


def validate_exp_of_pyjwt_2_10(self: Any, payload: dict[str, Any], now: float, leeway: float) -> None:
    """PyJWT 2.10.1's `PyJWT._validate_exp`, whose `int()` let OverflowError through (an `exp` of 1e400 is inf)."""
    try:
        exp = int(payload["exp"])
    except ValueError:
        raise jwt.DecodeError("Expiration Time claim (exp) must be an integer.") from None
    if exp <= now - leeway:
        raise jwt.ExpiredSignatureError("Signature has expired")


def test_a_token_whose_check_raises_is_refused_logged_once_without_the_token(
    verifier: JwtVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-all of `JwtVerifier.verify_token`: whatever raises while a token is checked refuses it, logged once
    with the error's type and where, never the token (the SDK answered a 500 and logged a traceback). No input is
    known to raise with the PyJWT installed (2.11 and later; the fuzzing above and in test_jwt_e2e.py finds none
    since short RSA keys verify nothing). With PyJWT 2.10.1, which mcp allows, a token the issuer signed with `exp`
    1e400 did, against the real server (OverflowError in `_validate_exp`): PyJWT's check is put back as 2.10.1 had
    it, and that token is sent."""
    monkeypatch.setattr(jwt.PyJWT, "_validate_exp", validate_exp_of_pyjwt_2_10)
    token = signed({"alg": "RS256", "kid": "k"}, {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": 1e400})
    with capture_logs() as logs:
        assert anyio.run(verifier.verify_token, token) is None
    assert [(entry["event"], entry["log_level"], entry["error"]) for entry in logs] == [
        ("auth.token_unverifiable", "warning", "OverflowError")
    ], logs
    assert logs[0]["at"].endswith("validate_exp_of_pyjwt_2_10") and token.split(".")[0] not in repr(logs), logs


# -- every kind of key, every algorithm, signed by any of the keys ---------------------------------

# the keys of one JWKS (no `alg`: each verifies what its type and size or curve allow) and what each verifies
EVERY_KEY: dict[str, tuple[Any, tuple[str, ...]]] = {
    "rsa": (RSA_KEY, KEY_ALGORITHMS["RSA"]),
    "short": (SHORT_RSA_KEY, ()),
    "p256": (EC_KEY, ("ES256",)),
    "p384": (P384_KEY, ("ES384",)),
    "okp": (OKP_KEY, ("EdDSA",)),
}


def public_jwk(key: Any) -> dict[str, Any]:
    """The public half of `key` as a JWK."""
    if isinstance(key, rsa.RSAPrivateKey):
        made = RSAAlgorithm.to_jwk(key.public_key())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        made = ECAlgorithm.to_jwk(key.public_key())
    else:
        made = OKPAlgorithm.to_jwk(key.public_key())
    said: dict[str, Any] = json.loads(made)
    return said


@pytest.fixture(scope="module")
def every_key_verifier() -> Iterator[JwtVerifier]:
    """A verifier of a JWKS, served locally, that holds each of EVERY_KEY (public)."""
    members = [{**public_jwk(key), "kid": kid} for kid, (key, _) in EVERY_KEY.items()]
    document = json.dumps({"keys": members}).encode()
    with json_server(lambda path: document) as base, capture_logs():
        yield JwtVerifier(f"{base}/jwks.json", ISSUER, AUDIENCE, 300, 30)


@settings(max_examples=300, deadline=None)
@given(
    kid=st.sampled_from(sorted(EVERY_KEY)),
    signer=st.sampled_from(sorted(EVERY_KEY)),
    alg=st.sampled_from(ALGORITHMS),
    garbage=st.none() | st.binary(max_size=600),
)
def test_a_token_is_accepted_only_signed_by_the_key_it_names_with_an_algorithm_of_that_key(
    every_key_verifier: JwtVerifier, kid: str, signer: str, alg: str, garbage: bytes | None
) -> None:
    """Tokens naming any key of the set and any algorithm, signed by any key of the set that can (else `garbage`):
    none raises (a PS512 token naming a short key did: auth.token_unverifiable), and one is accepted only when the
    key it names signed it by an algorithm that key verifies (a 1024-bit key's tokens were; a P-256 key's ES384
    ones were with PyJWT 2.10)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300}
    signing_input = f"{b64(json.dumps({'alg': alg, 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = garbage
    if signature is None and alg in get_default_algorithms() and alg not in ("none", "HS256"):
        try:
            signature = get_default_algorithms()[alg].sign(signing_input.encode(), EVERY_KEY[signer][0])
        except (TypeError, AttributeError, ValueError):  # a key of another type than the algorithm's
            signature = None
    with capture_logs() as logs:
        found = anyio.run(every_key_verifier.verify_token, f"{signing_input}.{b64(signature or b'x')}")
    assert not [entry for entry in logs if entry["event"] == "auth.token_unverifiable"], logs
    may = garbage is None and signer == kid and alg in EVERY_KEY[kid][1]
    assert (found is not None) == may, (kid, signer, alg, garbage)
