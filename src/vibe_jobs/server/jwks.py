"""The issuer's signing keys for JWT access tokens: fetched from its JWKS, and kept through its outages.

PyJWT's `PyJWKClient` alone held one lock across every lookup and its fetch. While the JWKS endpoint hung (up to
the fetch's time-out), every verification waited behind it, valid tokens too; a failed fetch was made again by
the next token that named an unknown key; and once the keys' lifespan ran out during an outage, every request
fetched in turn. An outage or a slow identity provider stalled the server for every authenticated caller, and
the waits held the worker threads that sync job tools run on. Here:

- a token whose key is known is checked at once, also when the keys are older than the refresh interval: one
  background fetch is started, and the keys known serve until a fetch succeeds;
- a token naming a key not known (a rotation, or a forgery) waits for a fetch, of which one runs at a time,
  bounded by its time-out; after a fetch was tried, successful or not, no other is made for `retry_seconds`,
  so a flood of unknown key ids costs one fetch per period and the others are refused at once.

Of the set, a key verifies signatures only if it is for that (`use` `sig` or none, `key_ops` with `verify` or
none), only by the algorithm its JWK names (`alg`; without one, each of its type's), an EC key only by its curve's,
an RSA key only when it is long enough, and never when the set publishes its private parts (`signing_key`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vibe_jobs.logs import get_logger
from vibe_jobs.redact import redact_url

log = get_logger("vibe_jobs.auth")

FETCH_TIMEOUT_SECONDS = 5.0
# the algorithms a key of each JWK type (`kty`) verifies. Given one list for every key, PyJWT met a token naming an
# algorithm of another kind of key (ES256 with the issuer's RSA key id: key ids are public) with a TypeError, not a
# refusal: a 500 and a traceback logged at error level, for anyone, on every route (review helper-152). No `oct`:
# a symmetric key is a secret, which a JWKS (public) cannot hold
KEY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
# RSA keys shorter than this verify nothing (RFC 7518 3.3: RS*/PS* keys MUST be 2048 bits or longer). A 512-bit
# modulus is factored in hours on rented machines, and whoever factors the issuer's key signs any token
RSA_MIN_BITS = 2048
# the one algorithm an EC key of each curve verifies (RFC 7518 3.4; `cryptography`'s curve names). PyJWT checks this
# from 2.11 only: with 2.10 (which mcp allows), a P-256 key without `alg` verified ES384 and ES512 tokens too
CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# the members of a private JWK (RFC 7518 6.2.2, 6.3.2, 6.4.1; RFC 8037 2): the issuer's signing key, for all to read
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
UNUSED = ". No token is verified with it; the issuer must sign with another key"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key of the issuer's JWKS (its `cryptography` public key) and the algorithms it verifies."""

    key: Any
    algorithms: tuple[str, ...]


class JwksKeys:
    """Signing keys by key id (`kid`), fetched from `url` every `refresh_seconds` and kept when a fetch fails; at
    most one fetch every `retry_seconds` (Settings.auth_jwks_retry_ms; at most the refresh interval)."""

    def __init__(
        self,
        url: str,
        refresh_seconds: float,
        retry_seconds: float,
        *,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import jwt  # mcp itself requires pyjwt[crypto]

        self.url, self.refresh_seconds, self.clock = url, refresh_seconds, clock
        self.retry_seconds = min(retry_seconds, refresh_seconds)
        self._client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout_seconds)
        self._wait_seconds = timeout_seconds + 1  # for a fetch another caller is making
        self._keys: dict[str, SigningKey] = {}
        self._fetched = -math.inf  # when keys were last fetched (the clock's seconds)
        self._tried = -math.inf  # when a fetch last began
        self._fetching = threading.Lock()

    def known(self, kid: str) -> SigningKey | None:
        """The key `kid` if it is known, without waiting. Keys past their refresh interval are still used, and one
        fetch is started in the background (unless one is under way or was tried in the last `retry_seconds`)."""
        if self.clock() - self._fetched >= self.refresh_seconds and self._may_try() and self._fetching.acquire(False):
            threading.Thread(target=self._fetch_then_release, name="vibe-jobs-jwks", daemon=True).start()
        return self._keys.get(kid)

    def fetched(self, kid: str, asked: float) -> SigningKey | None:
        """(Blocking, at most the fetch's time-out and a second.) The key `kid` for a token that arrived at `asked`
        (the clock's seconds): when it is not known, after the fetch under way, or after one of its own unless one
        began since `asked` or in the last `retry_seconds`; None when there is still no such key."""
        key = self._keys.get(kid)
        if key is None and self._fetching.acquire(timeout=self._wait_seconds):
            try:
                if self._tried < asked and self._may_try():  # none began since the token came
                    self._fetch()
            finally:
                self._fetching.release()
            key = self._keys.get(kid)
        return key

    def _may_try(self) -> bool:
        return self.clock() - self._tried >= self.retry_seconds

    def _fetch_then_release(self) -> None:
        """A fetch for a caller that took `_fetching` (a lock, which this thread may release)."""
        try:
            self._fetch()
        finally:
            self._fetching.release()

    def _fetch(self) -> None:
        """Fetch the JWKS (the caller holds `_fetching`); on failure keep the keys known and log why. A document
        nested deeper than the JSON reader goes (RecursionError) is one that cannot be read: it killed the fetch's
        thread with a traceback, and nothing said the JWKS was unavailable."""
        import jwt

        self._tried = self.clock()
        try:
            keys = signing_keys(self._client.fetch_data())
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError, RecursionError) as exc:
            url, error = redact_url(self.url), type(exc).__name__
            log.warning("auth.jwks_unavailable", url=url, error=error, kept=len(self._keys))
            return
        self._keys = keys
        self._fetched = self.clock()


def signing_keys(document: Any) -> dict[str, SigningKey]:
    """The signing keys of a fetched JWKS by key id. A set with no key this server can use (`{"keys": []}`: the
    issuer revoked its only key) is an answer, and replaces the keys known; a document that is no JWK Set is a
    failure (PyJWKSetError) that keeps them. PyJWT's own `PyJWKSet` refuses an empty set, as if it were an outage."""
    import jwt

    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list):
        raise jwt.PyJWKSetError("the document is not a JWK Set (it has no list of keys)")
    keys: dict[str, SigningKey] = {}
    for member in members:
        kid = member.get("kid") if isinstance(member, dict) else None
        key = signing_key(member, kid) if isinstance(kid, str) and kid else None
        if key is not None:
            keys[str(kid)] = key
    return keys


def signing_key(member: dict[str, Any], kid: str) -> SigningKey | None:
    """The JWK `member` (key id `kid`) as a key that verifies token signatures; None for one this server does not
    verify with: published with its private parts (`published_private`), for another use, of a type or algorithm
    not in KEY_ALGORITHMS, or not readable (PyJWT). Before, each key verified every algorithm of its type whatever
    its `alg` said, a leaked Ed25519 key verified tokens anyone could sign, and a member whose `alg` (or `kid`) was
    a list failed the whole fetch (TypeError, a traceback): no key of the set verified anything."""
    import jwt

    if published_private(member, kid) or not for_signatures(member):
        return None
    kty, alg = member.get("kty"), member.get("alg")
    verifies = KEY_ALGORITHMS.get(kty, ()) if isinstance(kty, str) else ()
    if alg is not None:  # the algorithm the key is for (RFC 7517 4.4; RFC 8725 3.1): its only one
        verifies = (alg,) if alg in verifies else ()
    if not verifies:
        return None
    try:
        key = jwt.PyJWK(member).key
    except (jwt.PyJWTError, ValueError):  # ValueError: PyJWT 2.10 let one through (`"e": ""`), failing the whole set
        return None
    verifies = key_verifies(key, verifies, kid)
    return SigningKey(key, verifies) if verifies else None


def key_verifies(key: Any, algorithms: tuple[str, ...], kid: str) -> tuple[str, ...]:
    """Of `algorithms` (what the key's JWK allows), those `key` verifies: none for an RSA key shorter than
    RSA_MIN_BITS (before, a 512-bit key verified tokens, and PS512 ones raised), an EC key's curve's only
    (CURVE_ALGORITHMS; a curve not there verifies none, as an algorithm not in KEY_ALGORITHMS). A short RSA key, or
    an EC key whose JWK names another curve's algorithm, is the issuer's mistake, refusing every token it signs:
    logged at error level each time the set is fetched, naming the key and its size or curve (never its numbers)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_MIN_BITS:
        problem = f"an RSA key of {key.key_size} bits can be factored (RFC 7518 3.3: {RSA_MIN_BITS} or more)"
        log.error("auth.jwks_weak_key", kid=kid[:200], bits=key.key_size, problem=problem + UNUSED)
        return ()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return algorithms
    curve = key.curve.name
    mine = tuple(a for a in algorithms if a == CURVE_ALGORITHMS.get(curve))
    if not mine and curve in CURVE_ALGORITHMS:  # its JWK's `alg` is another curve's
        problem = f"an EC key on {curve} is for {CURVE_ALGORITHMS[curve]} (RFC 7518 3.4), its JWK says {algorithms[0]}"
        log.error("auth.jwks_curve_mismatch", kid=kid[:200], curve=curve, problem=problem + UNUSED)
    return mine


def for_signatures(member: dict[str, Any]) -> bool:
    """Is the JWK for verifying signatures: `use` `sig` or none, `key_ops` holding `verify` or none (RFC 7517 4.2,
    4.3)? An `enc` key is the issuer's for encrypting."""
    ops = member.get("key_ops")
    return member.get("use") in ("sig", None) and (ops is None or (isinstance(ops, list) and "verify" in ops))


def published_private(member: dict[str, Any], kid: str) -> bool:
    """Does the JWKS publish this key's private parts (a symmetric key is all secret)? Then anyone can sign tokens
    with it: logged at error level (naming the key, not its parts) each time the set is fetched."""
    if member.get("kty") != "oct" and not PRIVATE_MEMBERS & member.keys():
        return False
    log.error(
        "auth.jwks_private_key",
        kid=kid[:200],
        problem="the issuer's JWKS publishes this key's private (or secret) parts: anyone can sign tokens with it."
        " No token is verified with it; the issuer must withdraw it and sign with a new one",
    )
    return True
