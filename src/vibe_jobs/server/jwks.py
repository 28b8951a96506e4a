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
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from vibe_jobs.logs import get_logger
from vibe_jobs.redact import redact_url

log = get_logger("vibe_jobs.auth")

FETCH_TIMEOUT_SECONDS = 5.0


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
        self._keys: dict[str, Any] = {}  # kid -> jwt.PyJWK
        self._fetched = -math.inf  # when keys were last fetched (the clock's seconds)
        self._tried = -math.inf  # when a fetch last began
        self._fetching = threading.Lock()

    def known(self, kid: str) -> Any | None:
        """The key `kid` if it is known, without waiting. Keys past their refresh interval are still used, and one
        fetch is started in the background (unless one is under way or was tried in the last `retry_seconds`)."""
        if self.clock() - self._fetched >= self.refresh_seconds and self._may_try() and self._fetching.acquire(False):
            threading.Thread(target=self._fetch_then_release, name="vibe-jobs-jwks", daemon=True).start()
        return self._keys.get(kid)

    def fetched(self, kid: str, asked: float) -> Any | None:
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
        """Fetch the JWKS (the caller holds `_fetching`); on failure keep the keys known and log why."""
        import jwt

        self._tried = self.clock()
        try:
            keys = signing_keys(self._client.fetch_data())
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError) as exc:
            url, error = redact_url(self.url), type(exc).__name__
            log.warning("auth.jwks_unavailable", url=url, error=error, kept=len(self._keys))
            return
        self._keys = keys
        self._fetched = self.clock()


def signing_keys(document: Any) -> dict[str, Any]:
    """The signing keys of a fetched JWKS by key id. A set with no key this server can use (`{"keys": []}`: the
    issuer revoked its only key) is an answer, and replaces the keys known; a document that is no JWK Set is a
    failure (PyJWKSetError) that keeps them. PyJWT's own `PyJWKSet` refuses an empty set, as if it were an outage."""
    import jwt

    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list):
        raise jwt.PyJWKSetError("the document is not a JWK Set (it has no list of keys)")
    keys: dict[str, Any] = {}
    for member in members:
        try:
            key = jwt.PyJWK(member) if isinstance(member, dict) else None
        except jwt.PyJWTError:
            continue  # a key this server cannot use (its type or algorithm)
        if key is not None and key.key_id and key.public_key_use in ("sig", None):
            keys[key.key_id] = key
    return keys
