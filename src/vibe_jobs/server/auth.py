"""HTTP authentication and the caller's identity, through the MCP SDK's `TokenVerifier` and auth settings.

Two verifiers: a token file (`--auth-tokens FILE`, one `TOKEN PRINCIPAL [SCOPES]` a line, `sha256:HEX`
for a token not kept in clear, `#` comments) and JWT access tokens checked against a JWKS
(`--auth-jwks URL --auth-issuer ISS --auth-audience AUD`). With either, the SDK answers a request without
a valid bearer token with 401 and `WWW-Authenticate`. `Identity.viewer()` names the caller of the current
request (the token's principal, or the local principal when the server has no authentication: stdio,
loopback HTTP). Also here: the Host/Origin (DNS-rebinding) settings and the refusal to bind beyond
loopback without authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import stat
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl

from vibe_jobs.errors import ConfigError
from vibe_jobs.identity import ADMIN_SCOPE, LOCAL, LOCAL_PRINCIPAL, NOBODY, Viewer
from vibe_jobs.logs import get_logger
from vibe_jobs.server.http.guard import Bearer
from vibe_jobs.server.http.lifetime import Lease
from vibe_jobs.server.jwks import JwksKeys, SigningKey
from vibe_jobs.server.sdk import connection_state
from vibe_jobs.settings import Settings

# What a token's principal may be: what identity providers issue as `sub` (OIDC Core: a case-sensitive string of at
# most 255 ASCII characters), e.g. `auth0|5f7c8e...`, `google-oauth2|1234`, GitHub Actions'
# `repo:octo-org/octo-repo:ref:refs/heads/main` (a branch may hold quotes, `#`, `&`...), `system:serviceaccount:ns:sa`,
# `spiffe://domain/path`, `DOMAIN\user`, UUIDs and opaque base64url ids: printable ASCII. A principal only ever goes
# into bound SQL parameters, hashes (dedupe keys after a NUL, lock offsets and advisory-lock keys), JSON (answers,
# logs) and refusal messages; no file name, URL, header, metric label or HTML holds one. Refused: whitespace (the
# token file's separator), control characters (the unauthenticated `NOBODY` is "\x00nobody"; a NUL separates the
# principal in a dedupe key; a newline would forge a log line in the console format), anything not ASCII, and more
# than 255 characters (review helper-96: `[A-Za-z0-9._@:+-]{1,128}` refused every user of Auth0 and GitHub OIDC).
PRINCIPAL_CHARS = "printable ASCII without spaces"
PRINCIPAL_MAX = 255
PRINCIPAL = re.compile(rf"[!-~]{{1,{PRINCIPAL_MAX}}}")
log = get_logger("vibe_jobs.auth")
RECHECK_SECONDS = 30.0  # a JWT is checked again this often (or each JWKS refresh) while a stream it opened lasts
ANSWER_MARGIN = 0.5  # seconds a long-poll ends before its token expires, for its answer to go out
# seconds the issuer's clock may be ahead of ours: a token just issued has its `iat` (and `nbf`) that far in our
# future, and was refused until our clock caught up. Not for `exp`: a request lasts no longer than its token
CLOCK_SKEW_SECONDS = 60
# the latest `exp` a token may have: 9999-12-31T23:59:59Z. PyJWT only checks that it is later than now; an `exp` of
# 10**400 made the request fail (OverflowError, a 500) where the server computes when the request must end
LATEST_EXPIRY = 253_402_300_799
FETCH_THREADS = 4  # JWT verifications waiting for a fetch of the JWKS at once (the others wait for a thread)
VIEWER_KEY = "vibe_jobs.viewer"  # in a connection's state: the viewer of its latest request (`Identity.track`)


def principal_problem(name: str) -> str | None:
    """Why a token may not name `name` as its principal (None: it may): not `PRINCIPAL`, or the server's own local
    principal (stdio, the library, code-declared schedules and their jobs): a token named `local` acted as the
    operator."""
    if name == LOCAL_PRINCIPAL:
        return f"{LOCAL_PRINCIPAL!r} is the server's own principal (stdio, the library, schedules declared in code)"
    if PRINCIPAL.fullmatch(name) is None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        return (
            f"principal {shown!r} ({len(name)} characters) is not 1 to {PRINCIPAL_MAX} characters of"
            f" {PRINCIPAL_CHARS} (no whitespace, control characters or non-ASCII)"
        )
    return None


def principal_of(token: AccessToken) -> str:
    """The principal a verified token acts for: its subject, else its client."""
    return token.subject or token.client_id


LOOPBACK_NAMES = ("localhost",)


class Identity:
    """Who the current request comes from. With authentication `required`, a request without a token
    (which the SDK refuses before it reaches us) would see nothing rather than the local principal's jobs."""

    def __init__(self, required: bool = False) -> None:
        self.required = required

    def viewer(self) -> Viewer:
        token = get_access_token()
        if token is None:
            return Viewer(NOBODY) if self.required else LOCAL
        return Viewer(principal_of(token), ADMIN_SCOPE in token.scopes)

    async def track(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: note the viewer of each request on its connection (`latest_viewer`). What outlives
        the request that made it (a legacy subscription, a question put to a long-poll) acts for that viewer: the
        SDK binds a session to its principal, not to its scopes, so a refreshed token may have lost `admin`."""
        token = get_access_token()
        expires_at = None if token is None else token.expires_at
        connection_state(ctx.session)[VIEWER_KEY] = Noted(self.viewer(), expires_at)
        return await call_next(ctx)

    def seconds_left(self) -> float:
        """Seconds until the current request's token expires, when the request is cut (`http.lifetime`), less
        ANSWER_MARGIN for its answer to go out: what a long-poll may wait (inf: the token does not expire)."""
        token = get_access_token()
        if token is None or token.expires_at is None:
            return math.inf
        return token.expires_at - time.time() - ANSWER_MARGIN

    def sees_server_figures(self, viewer: Viewer) -> bool:
        """May `viewer` see the figures made of every principal's jobs (per tool, throughput, error rate)? An
        admin may; so may the one user of a server without authentication (stdio, loopback HTTP)."""
        return viewer.admin or not self.required


@dataclass(frozen=True, slots=True)
class Noted:
    """The viewer of a connection's latest request, and when its token expires (epoch seconds; None: never)."""

    viewer: Viewer
    expires_at: float | None


def latest_viewer(session: ServerSession) -> Viewer | None:
    """The viewer of the latest request on `session`'s connection (`Identity.track`; None: none noted). Past its
    token's expiry, its principal without `admin`: the SDK binds the session to that principal, and the client may
    go on with a refreshed token (a streamable-HTTP `GET` stream opened again) without a request that says which."""
    noted = noted_viewer(session)
    if noted is None:
        return None
    if noted.expires_at is not None and time.time() >= noted.expires_at:
        return Viewer(noted.viewer.principal)
    return noted.viewer


def noted_viewer(session: ServerSession) -> Noted | None:
    """What `Identity.track` noted of the latest request on `session`'s connection, its token's expiry
    whatever (`latest_viewer` is what it counts for now)."""
    noted = connection_state(session).get(VIEWER_KEY)
    return noted if isinstance(noted, Noted) else None


# -- the token file ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenEntry:
    digest: bytes  # sha256 of the token
    principal: str
    scopes: tuple[str, ...]


def parse_token_file(text: str, where: str) -> list[TokenEntry]:
    """The entries of a token file (`#` starts a comment); a malformed line stops start-up naming the file and the
    line, and so does a token listed twice (one of its two principals or scope sets would be dropped silently)."""
    entries: list[TokenEntry] = []
    seen: dict[bytes, str] = {}
    for number, raw in enumerate(text.split("\n"), 1):  # a line ends at a newline only (not at U+0085, U+2028)
        line, hash_sign, _ = raw.partition("#")
        if not line.strip():
            continue
        at = f"{where}:{number}"
        entry = _entry(line.strip(), at, hash_sign)
        if entry.digest in seen:
            raise ConfigError(f"{at}: the same token as {seen[entry.digest]}: list each token once")
        seen[entry.digest] = at
        entries.append(entry)
    if not entries:
        raise ConfigError(f"{where} holds no token (one `TOKEN PRINCIPAL [SCOPES]` a line)")
    return entries


STRONG_TOKEN_CHARS = 16  # shorter is accepted with a warning: no lockout guards a guessable token
FIELD_GAP = re.compile(r"[ \t\r\f\v]+")  # ASCII white space: str.split() would also split at U+0085 or U+3000
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token: what an Authorization header can carry


def _entry(line: str, where: str, comment: str = "") -> TokenEntry:
    parts = FIELD_GAP.split(line)
    if len(parts) not in (2, 3):
        cut = " (a `#` starts a comment: a token cannot hold one)" if comment else ""
        raise ConfigError(f"{where}: expected `TOKEN PRINCIPAL [SCOPES]`, got {len(parts)} fields{cut}")
    token, principal = parts[0], parts[1]
    if not token.startswith("sha256:") and not TOKEN.fullmatch(token):
        raise ConfigError(
            f"{where}: a token is letters, digits and -._~+/ (a bearer token's characters; no client could send"
            " another one)"
        )
    problem = principal_problem(principal)
    if problem is not None:
        raise ConfigError(f"{where}: a token cannot name this principal: {problem}")
    scopes = tuple(s for s in parts[2].split(",") if s) if len(parts) == 3 else ()
    return TokenEntry(_digest_of(token, where), principal, scopes)


def _digest_of(token: str, where: str) -> bytes:
    if token.startswith("sha256:"):
        try:
            digest = bytes.fromhex(token[len("sha256:") :])
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ConfigError(f"{where}: a sha256: token needs 64 hex digits")
        return digest
    if len(token) < STRONG_TOKEN_CHARS:  # the operator's choice (a test rig's `alice-token`): said, not refused
        log.warning(
            "auth.token_guessable",
            at=where,
            chars=len(token),
            advice=f"a token of {STRONG_TOKEN_CHARS}+ random characters (`openssl rand -hex 32`) cannot be guessed",
        )
    return hashlib.sha256(token.encode()).digest()


def _warn_if_others_read(path: str) -> None:
    """A warning when users other than its owner may read the token file (its tokens are every principal's
    keys): as ssh does for a private key, though the server still starts (a group may be meant to read it)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        readers = "every user" if mode & stat.S_IROTH else "its group"
        log.warning(
            "auth.token_file_readable",
            path=path,
            mode=oct(stat.S_IMODE(mode)),
            why=f"{readers} of this machine can read every principal's token; chmod 600 it",
        )


class TokenFileVerifier(TokenVerifier):
    """Bearer tokens listed in a file. Every entry is compared (in constant time) whatever matches."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: str) -> TokenFileVerifier:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"the token file {path!r} (--auth-tokens, VIBE_JOBS_AUTH_TOKENS) cannot be read: {exc}"
            ) from None
        _warn_if_others_read(path)
        return cls(parse_token_file(text, path))

    async def verify_token(self, token: str) -> AccessToken | None:
        return self.verify(token)

    def verify(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: TokenEntry | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            return None
        return AccessToken(token=token, client_id=found.principal, subject=found.principal, scopes=list(found.scopes))


# -- JWT access tokens ---------------------------------------------------------------------------


class JwtVerifier(TokenVerifier):
    """JWT access tokens signed by a key of the issuer's JWKS, for this audience and issuer (PyJWT). A token whose
    key is known is checked on the event loop (no I/O: a signature check); one that needs a fetch of the JWKS
    waits for it in a thread of the verifier's own (`FETCH_THREADS`), so a flood of unknown key ids cannot take
    the threads that sync job tools run on (server/jwks.py: the keys through an outage)."""

    def __init__(self, jwks_url: str, issuer: str, audience: str, refresh_seconds: float, retry_seconds: float) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover - mcp itself requires pyjwt[crypto]
            raise ConfigError("JWT verification needs PyJWT: pip install 'vibe-jobs[oauth]'") from None
        self.jwt, self.issuer, self.audience = jwt, issuer, audience
        self.keys = JwksKeys(jwks_url, refresh_seconds, retry_seconds)
        self._fetch_threads: anyio.CapacityLimiter | None = None  # made on the event loop, at first use

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access (None: refused). Whatever raises while a token is checked refuses it (a 401), logged
        once, without the token: the SDK let it through as a 500 and a traceback, for anyone who sent it."""
        try:
            return await self._verified(token)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            at = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
            log.warning("auth.token_unverifiable", error=type(exc).__name__, at=at)
            return None

    async def _verified(self, token: str) -> AccessToken | None:
        jwt = self.jwt
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        if not isinstance(kid, str):
            return None
        key = self.keys.known(kid)
        if key is None:
            if self._fetch_threads is None:
                self._fetch_threads = anyio.CapacityLimiter(FETCH_THREADS)
            asked = self.keys.clock()
            key = await anyio.to_thread.run_sync(self.keys.fetched, kid, asked, limiter=self._fetch_threads)
        return None if key is None else self.verify(token, key)

    def verify(self, token: str, key: SigningKey) -> AccessToken | None:
        """The token's claims checked with `key`: signature, by an algorithm the key verifies, expiry, audience,
        issuer."""
        jwt = self.jwt
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            self._log_claim_refused(token, exc)
            return None
        except jwt.PyJWTError:
            return None
        problem = _times_problem(claims)
        if problem is not None:  # signed by the issuer: the operator needs to know why its user is refused
            log.warning("auth.times_refused", issuer=self.issuer, problem=problem)
            return None
        expiry = int(claims["exp"])
        if expiry <= time.time():  # the leeway is for `iat` and `nbf` (PyJWT gives `exp` it too)
            return None
        subject = str(claims["sub"])
        problem = principal_problem(subject)
        if problem is not None:
            log.warning("auth.subject_refused", issuer=self.issuer, problem=problem)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or subject),
            subject=subject,
            scopes=_scopes(claims),
            expires_at=expiry,
            claims={"iss": claims["iss"]},
        )

    def _log_claim_refused(self, token: str, exc: Exception) -> None:
        """A token the issuer's key signed, refused for its `iss` or `aud` (PyJWT checks them after the signature):
        a configuration that differs from the issuer's (`https://idp/` against `https://idp`) refused every user's
        token, and nothing said why (review helper-152)."""
        said = self.jwt.decode(token, options={"verify_signature": False})
        log.warning(
            "auth.claim_refused",
            problem=str(exc),
            claimed_issuer=repr(said.get("iss"))[:200],
            claimed_audience=repr(said.get("aud"))[:200],
            issuer=self.issuer,
            audience=self.audience,
        )


def _times_problem(claims: dict[str, Any]) -> str | None:
    """Why the token's times are refused (None: they are not): `exp`, `nbf`, `iat` are numbers (RFC 7519's
    NumericDate; PyJWT took `"exp": "1796000000"`, a string, as a time), and `exp` is by LATEST_EXPIRY."""
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"`{name}` is a JSON {type(value).__name__}, not a number of seconds (RFC 7519 NumericDate)"
    return "`exp` is past 9999-12-31" if claims["exp"] > LATEST_EXPIRY else None


def _scopes(claims: dict[str, Any]) -> list[str]:
    """The token's scopes: `scope` (RFC 9068), else `scp`, a list (Okta) or a string as `scope` (Entra ID, which
    was read as no scope). A string is apart at spaces only (RFC 6749 3.3): `str.split` also split at a tab or a
    non-breaking space, which a scope may not hold, so a dynamic scope's parameter `x<TAB>admin` granted `admin`."""
    found = claims.get("scope")
    if not isinstance(found, str | list):
        found = claims.get("scp")
    if isinstance(found, str):
        return [s for s in found.split(" ") if s]
    return [s for s in found if isinstance(s, str)] if isinstance(found, list) else []


# -- what the MCPServer is built with ------------------------------------------------------------


@dataclass(frozen=True)
class AuthSetup:
    """`MCPServer(token_verifier=..., auth=...)`, or nothing (no authentication)."""

    verifier: TokenVerifier | None = None
    settings: AuthSettings | None = None
    recheck_seconds: float | None = None  # how often a token is checked again while a request it opened lasts

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    def lease(self, token: AccessToken) -> Lease:
        """How long a request `token` opened may last: until its expiry, and, for a JWT, while its key is still
        in the issuer's JWKS (checked every `recheck_seconds`: the keys are fetched again every refresh)."""
        verifier = self.verifier
        if self.recheck_seconds is None or verifier is None:
            return Lease(token.expires_at)

        async def still_valid() -> bool:
            return await verifier.verify_token(token.token) is not None

        return Lease(token.expires_at, still_valid, self.recheck_seconds)

    def admin_check(self) -> Callable[[str | AccessToken], Awaitable[Bearer | None]] | None:
        """For the HTTP routes beside /mcp that show every job (the dashboard): is a bearer token valid (None:
        not), does it hold scope `admin`, and when does it expire? None when there is no authentication
        (loopback, one user)."""
        verifier = self.verifier
        if verifier is None:
            return None

        async def is_admin(token: str | AccessToken) -> Bearer | None:
            # a token the SDK verified (the Authorization header), or one to verify (the dashboard's cookie; JWT: off
            # the event loop when the JWKS must be fetched)
            found = token if isinstance(token, AccessToken) else await verifier.verify_token(token)
            return None if found is None else Bearer(ADMIN_SCOPE in found.scopes, self.lease(found))

        return is_admin


# the JWT options as a refusal names them: the flag, and the variable that gives it too
JWT_OPTIONS = (
    "--auth-jwks (VIBE_JOBS_AUTH_JWKS)",
    "--auth-issuer (VIBE_JOBS_AUTH_ISSUER)",
    "--auth-audience (VIBE_JOBS_AUTH_AUDIENCE)",
)


def auth_setup(settings: Settings, base_url: str) -> AuthSetup:
    """The authentication `settings` ask for (token file, or JWKS + issuer + audience), for a server at
    `base_url` (http://host:port; its `/mcp` is the protected resource of the metadata)."""
    jwt_options = (settings.auth_jwks, settings.auth_issuer, settings.auth_audience)
    if settings.auth_tokens and any(jwt_options):
        raise ConfigError("give either --auth-tokens or --auth-jwks/--auth-issuer/--auth-audience, not both")
    if settings.auth_tokens:
        verifier = TokenFileVerifier.load(settings.auth_tokens)
        return AuthSetup(verifier, AuthSettings(issuer_url=AnyHttpUrl(base_url), resource_server_url=None))
    if any(jwt_options):
        if not all(jwt_options):
            missing = ", ".join(name for name, given in zip(JWT_OPTIONS, jwt_options, strict=True) if not given)
            raise ConfigError(
                "JWT verification needs all three of --auth-jwks, --auth-issuer and --auth-audience;"
                f" missing: {missing}"
            )
        jwks, issuer, audience = (str(o) for o in jwt_options)
        issuer_url = _http_url(issuer, JWT_OPTIONS[1])
        _http_url(jwks, JWT_OPTIONS[0])
        refresh = settings.auth_jwks_refresh_ms / 1000
        return AuthSetup(
            JwtVerifier(jwks, issuer, audience, refresh, settings.auth_jwks_retry_ms / 1000),
            AuthSettings(
                issuer_url=issuer_url,
                resource_server_url=AnyHttpUrl(f"{base_url}/mcp"),
                validate_token_resource=False,  # the verifier checks the audience itself
            ),
            min(refresh, RECHECK_SECONDS),
        )
    return AuthSetup()


def _http_url(value: str, what: str) -> AnyHttpUrl:
    """`value` as an http(s) URL, or ConfigError naming the option (a bad one was a traceback at start-up)."""
    try:
        return AnyHttpUrl(value)
    except ValueError:
        raise ConfigError(f"{what} must be an http(s) URL, not {value!r}") from None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, authenticated: bool, allow_unauthenticated: bool) -> None:
    """Refuse to serve beyond loopback without authentication (unless the operator said so)."""
    if is_loopback(host) or authenticated or allow_unauthenticated:
        return
    raise ConfigError(
        f"refusing to serve HTTP on {host} without authentication: anyone who reaches the port could read and "
        "cancel every job. Pass --auth-tokens FILE (or --auth-jwks URL --auth-issuer ISS --auth-audience AUD), "
        "or --allow-unauthenticated to accept that"
    )


def transport_security(host: str, allowed_hosts: tuple[str, ...]) -> TransportSecuritySettings:
    """Host/Origin checks on for every bind: loopback names, the bound address, and `allowed_hosts`."""
    names = ["127.0.0.1", "localhost", "[::1]", *allowed_hosts]
    if not is_loopback(host) and host not in ("0.0.0.0", "::", ""):
        names.append(f"[{host}]" if ":" in host else host)
    hosts = [form for name in names for form in (name, f"{name}:*")]
    origins = [f"{scheme}://{form}" for scheme in ("http", "https") for name in names for form in (name, f"{name}:*")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
