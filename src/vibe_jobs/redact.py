"""Secrets kept out of what is shown: job arguments named like a secret, `env` values, URL passwords.

One module, used by every surface that renders params (list-jobs, `jobs://recent`, the operator CLI, logs,
the dashboard). The stored job keeps the real values: the tool receives them. The pattern of secret names
is `VIBE_JOBS_SECRET_PATTERN` (default `token|secret|password|key|auth`, case-insensitive, searched
anywhere in the name), set once at start-up with `set_secret_pattern`. The values hidden in params are
hidden in a failed job's error text too (`hide_secrets`), when long enough to be told from other text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values are not hidden in free text: a secret "1" would blank every digit
DEFAULT_SECRET_PATTERN = "token|secret|password|key|auth"
ENV_NAMES = frozenset({"env"})  # an argument holding an environment: every value is hidden, names kept
# the scheme is read from the start of a run of scheme characters, possessively (`\b` let one start at every letter
# of `a.a.a...`, each read to the run's end: 80 KB of it took 21 s); the run is kept whole as the "scheme", so that a
# URL glued on by '.', '-' or '+' (`x.postgres://u:pw@`) still loses its password
# a `scheme://user` and what follows a `:` after it up to white space, a quote, an angle bracket, `?` or `#`, each run
# read once (possessively); `_masked_userinfo` takes the password to the run's last `@`: one written unescaped may hold
# '/' (base64) or '@', where a URL's own rules would end it sooner and show the rest
_USERINFO = re.compile(r"(?<![a-z0-9+.-])([a-z0-9+.-]++://)([^/@\s:]*+)(:[^\s\"'<>?#]*+)?", re.IGNORECASE)
# a bearer token as an Authorization header carries it (RFC 6750's b64token), in free text: a refused Host or
# Origin header is logged with its value, and a line folded onto it (obs-fold) brought `Authorization: Bearer ...`
_BEARER = re.compile(r"\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
# what a URL or a request target may span: no white space, quote or angle bracket; from a piece's first `?` to its end
# (found at C speed: the other pieces of text, such as code's `x == y`, cost nothing), and the piece's head before
# that `?`, read backwards
# where a URL's user and password start: after its `scheme://`, else at its start
_AUTHORITY = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_QUERIED = re.compile(r"\?[^\s\"<>]*")
_HEAD_REVERSED = re.compile(r"[^\s\"<>]*")

_pattern = re.compile(DEFAULT_SECRET_PATTERN, re.IGNORECASE)


def set_secret_pattern(pattern: str) -> None:
    """Names matching `pattern` (a regular expression, case-insensitive) are secrets from now on."""
    global _pattern
    _pattern = re.compile(pattern, re.IGNORECASE)


def check_pattern(pattern: str) -> str:
    """`pattern` if it compiles (settings use this to refuse a bad VIBE_JOBS_SECRET_PATTERN at start-up)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return pattern


def is_secret(name: str) -> bool:
    return _pattern.search(name) is not None


def redact_params(params: Mapping[str, Any], hidden: list[Any] | None = None) -> dict[str, Any]:
    """A copy of `params` with secret-named values (at any depth) and `env` values replaced by `***`
    (the values replaced are added to `hidden` when given)."""
    return {str(k): _redact_entry(str(k), v, hidden) for k, v in params.items()}


def _redact_entry(name: str, value: Any, hidden: list[Any] | None) -> Any:
    if is_secret(name):
        return _masked(value, hidden)
    if name in ENV_NAMES and isinstance(value, Mapping):
        return {str(k): _masked(v, hidden) for k, v in value.items()}
    return _redact_value(value, hidden)


def _masked(value: Any, hidden: list[Any] | None) -> str:
    if hidden is not None:
        hidden.append(value)
    return MASK


def _redact_value(value: Any, hidden: list[Any] | None) -> Any:
    if isinstance(value, Mapping):
        return redact_params(value, hidden)
    if isinstance(value, list | tuple):
        return [_redact_value(v, hidden) for v in value]
    if isinstance(value, str) and may_hold_url_secret(value):
        return redact_urls_in(value)
    return value


def secret_values(params: Mapping[str, Any]) -> list[str]:
    """The literal values `redact_params` hides in `params` (strings, numbers as written) of at least
    MIN_SECRET_CHARS characters, longest first (one holding another is hidden whole)."""
    hidden: list[Any] = []
    redact_params(params, hidden)
    found: set[str] = set()
    for text in (text for value in hidden for text in _texts(value)):  # as given, and as a repr shows it
        found.update(form for form in (text, repr(text)[1:-1]) if len(form) >= MIN_SECRET_CHARS)
    return sorted(found, key=len, reverse=True)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def hide_secrets(text: str, params: Mapping[str, Any]) -> str:
    """`text` (an error's message, a traceback) with the values `redact_params` hides in `params`
    (`secret_values`) and URL passwords (`redact_urls_in`) replaced by `***`."""
    return secret_hider(params)(text)


def secret_hider(params: Mapping[str, Any]) -> Callable[[str], str]:
    """`hide_secrets` for many texts of one job (its secret values found once). Apply it to text as raised,
    before it is joined onto one line or cut: a secret over several lines, or cut in two, would show."""
    values = secret_values(params)

    def hide(text: str) -> str:
        for value in values:
            text = text.replace(value, MASK)
        return redact_urls_in(text) if may_hold_url_secret(text) else text

    return hide


def may_hold_url_secret(text: str) -> bool:
    """Whether `text` may hold a URL with a password, or a URL or request target with a secret-named query
    parameter (a cheap test first)."""
    return ("://" in text and "@" in text) or ("?" in text and "=" in text)


def redact_bearer(text: str) -> str:
    """`text` with every `Bearer <token>` in it as `Bearer ***`."""
    return _BEARER.sub(lambda m: m[1] + MASK, text) if "earer" in text or "EARER" in text else text


def redact_url(url: str) -> str:
    """`url` with its password and secret-named query parameters (`?password=`, `sslpassword=`: named as
    arguments are, `is_secret`) replaced by `***`: postgresql://u:***@host/db?password=***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL urlsplit reads (a bad IPv6 host): its password, at least
        return _mask_userinfo(url)
    if not password and (misread := _misread_userinfo(url, parts)) is not None:
        return misread
    shown = parts
    if password:
        user, _, host = parts.netloc.rpartition("@")
        name = user.split(":", 1)[0]
        shown = shown._replace(netloc=f"{name}:{MASK}@{host}")
    if parts.query:
        shown = shown._replace(query=_redact_query(parts.query))
    return url if shown == parts else urlunsplit(shown)  # unchanged as written (urlunsplit drops an empty //)


def _misread_userinfo(url: str, parts: SplitResult) -> str | None:
    """`url` with its password as `***` when urlsplit read none where one is: given without the scheme
    (`app:pw@host:8000/mcp`: `app` read as the scheme, the rest as a path), with one slash (`http:/app:pw@host`), or
    holding a `/`, `?`, `#` or `@` unescaped (a base64 one: `https://app:ab/cd@host` read `ab` as the port;
    `https://app:/cd?e@host`, `https://app:12/cd@host` an empty port, or 12). Then the user is up to the first `:`,
    the password up to the last `@` (more hidden than less: `https://host:8000/@scope` loses its port, as in free
    text). None for a URL without a `user:` or an `@`, or whose userinfo urlsplit read (an `@` in its host part)."""
    at = url.rfind("@")
    if at < 0 or "@" in parts.netloc:
        return None
    start = authority.end() if (authority := _AUTHORITY.match(url)) is not None else 0
    colon = url.find(":", start, at)
    if colon < 0 or url.startswith("/", start):  # no password; a path (`sqlite:///C:/a@b.db`)
        return None
    return f"{url[:colon]}:{MASK}@{redact_url(url[at + 1 :])}"


# what a refusal of such a URL says instead of naming a port that is the password's start
PASSWORD_UNESCAPED = "a password holding '/', '?', '#' or '@' is written %2F, %3F, %23, %40 in a URL"


def password_misread(url: str) -> bool:
    """Whether urlsplit read the start of `url`'s password as its port or path (`https://app:ab/cd@host`: the
    password holds a '/', '?' or '#' unescaped), or may have (`https://host:8000/a@b`: an '@' after the host is the
    password's end or the path's): an error about that port or host would be about the password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.netloc) and not parts.password and _misread_userinfo(url, parts) is not None


def _redact_query(query: str) -> str:
    pairs = [pair.partition("=") for pair in query.split("&")]
    return "&".join(f"{k}{eq}{MASK if eq and is_secret(k) else v}" for k, eq, v in pairs)


def redact_urls_in(text: str) -> str:
    """Every `scheme://user:password@` in free text with its password as `***` (whatever characters it
    holds), and every secret-named query parameter of a URL or a request target (`/path?token=`) in it."""
    if "@" in text and "://" in text:  # a password needs both
        text = _mask_userinfo(text)
    return _masked_pieces(text) if "=" in text else text


def _mask_userinfo(text: str) -> str:
    return _USERINFO.sub(_masked_userinfo, text)


def _masked_userinfo(m: re.Match[str]) -> str:
    """A `scheme://user:...` run with all before its last `@` after the user as `***` (more hidden than less: a
    port and path before an `@` in a path go too); unchanged without an `@` (no password)."""
    rest = m[3]
    at = rest.rfind("@") if rest else -1
    return m[0] if at < 0 else f"{m[1]}{m[2]}:{MASK}{rest[at:]}"


def _masked_pieces(text: str) -> str:
    """`text` with each piece that holds a `?` and then a `=` through `_masked_queries`, in linear time: a piece's
    head is read back from its first `?`, never past the end of the last piece masked (a Python call per piece of
    all text took 30 ms for 200 KB of code, in every list-jobs)."""
    out: list[str] = []
    done = 0
    for tail in _QUERIED.finditer(text):
        if "=" not in tail[0]:
            continue
        head = _HEAD_REVERSED.match(text[done : tail.start()][::-1])
        start = tail.start() - (len(head[0]) if head is not None else 0)
        out += [text[done:start], _masked_queries(text[start : tail.end()])]
        done = tail.end()
    out.append(text[done:])
    return "".join(out)


def _masked_queries(piece: str) -> str:
    """`piece` (no white space) with the query of each URL in it through `_redact_query`: a URL has `://` before
    its `?`, or the piece is a request target as a request line or an access log shows it (`GET
    /events?access_token=... HTTP/1.1`: RFC 6750 lets a client send its token so); its query ends at a `#`.
    Read once, from left to right (a regular expression that looked for a query from every `scheme://` read to
    the end of the text from each: 160 KB of `http://x` took 10 s, on the event loop, in every list-jobs)."""
    out: list[str] = []
    done = searched = 0
    url = piece.lstrip("('").startswith("/")
    while (mark := piece.find("?", searched)) >= 0:
        url = url or "://" in piece[searched:mark]
        searched = mark + 1
        if url:
            end = piece.find("#", mark)
            end = len(piece) if end < 0 else end
            out += [piece[done:searched], _redact_query(piece[searched:end])]
            done = searched = end
            url = False
    out.append(piece[done:])
    return "".join(out)
