"""Redaction: secret-named arguments, `env` values and URL passwords never shown; the rest left as it is."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator

import pytest
import structlog

from vibe_jobs.logs import configure_logging, get_logger
from vibe_jobs.redact import (
    DEFAULT_SECRET_PATTERN,
    hide_secrets,
    is_secret,
    redact_params,
    redact_url,
    redact_urls_in,
    set_secret_pattern,
)


@pytest.fixture(autouse=True)
def default_pattern() -> Iterator[None]:
    yield
    set_secret_pattern(DEFAULT_SECRET_PATTERN)


def test_the_values_hidden_in_params_are_hidden_in_error_text_when_eight_characters_or_longer() -> None:
    params = {
        "api_token": "sk-live-123456", "user": "alice-sk-live", "pin": "1234", "env": {"CI_TOKEN": "ci-secret-9"},
        "nested": {"client_secret": {"a": "short", "b": ["long-secret-b", 12345678901]}},
        "apiKey": "sk-live-123456-extended", "dsn": "postgresql://u:hunter22@db/x",
    }  # fmt: skip
    text = (
        "token sk-live-123456-extended and sk-live-123456 for alice-sk-live (pin 1234, short), ci-secret-9,"
        " long-secret-b, 12345678901; connecting to postgresql://u:hunter22@db/x"
    )
    assert hide_secrets(text, params) == (
        "token *** and *** for alice-sk-live (pin 1234, short), ***, ***, ***; connecting to postgresql://u:***@db/x"
    )
    assert hide_secrets("nothing secret", {"user": "alice"}) == "nothing secret"


def test_secret_named_arguments_and_env_values_are_masked_at_any_depth() -> None:
    params = {
        "path": "/src", "apiToken": "t1", "PASSWORD": "p", "github_key": "k", "Authorization": "Bearer x",
        "command": ["git", "status"], "env": {"CI": "1", "HOME": "/h"},
        "nested": {"client_secret": "s", "items": [{"token": "t2"}, "plain"]},
    }  # fmt: skip
    shown = redact_params(params)
    assert shown == {
        "path": "/src", "apiToken": "***", "PASSWORD": "***", "github_key": "***", "Authorization": "***",
        "command": ["git", "status"], "env": {"CI": "***", "HOME": "***"},
        "nested": {"client_secret": "***", "items": [{"token": "***"}, "plain"]},
    }  # fmt: skip
    assert params["apiToken"] == "t1" and params["env"] == {"CI": "1", "HOME": "/h"}  # the original is untouched


def test_the_pattern_is_configurable() -> None:
    set_secret_pattern("^cred$")
    assert is_secret("CRED") and not is_secret("token")
    assert redact_params({"cred": "x", "token": "y"}) == {"cred": "***", "token": "y"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/jobs?schema=x", "postgresql://app:***@db:5432/jobs?schema=x"),
        ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
        ("sqlite:///home/u/jobs.db", "sqlite:///home/u/jobs.db"),
        ("postgresql://app:p%40ss@db/jobs", "postgresql://app:***@db/jobs"),
        ("memory://", "memory://"),
        ("postgresql://app@db/jobs?password=s3cret&schema=x", "postgresql://app@db/jobs?password=***&schema=x"),
        (
            "postgresql://a:b@db/j?sslpassword=s&sslmode=require",
            "postgresql://a:***@db/j?sslpassword=***&sslmode=require",
        ),
        ("app:s3cret@localhost:8000/mcp", "app:***@localhost:8000/mcp"),  # no scheme: it was shown whole
        ("app@localhost:8000/mcp", "app@localhost:8000/mcp"),
        ("app:s3cret@localhost/mcp?token=t0k&x=1", "app:***@localhost/mcp?token=***&x=1"),
        # a password holding '/', '?' or '#' unescaped (base64): urlsplit ends the host at it, reads the password's
        # start as a port and the rest as a path, query or fragment; all was shown
        ("https://app:s3c/ret+x=@host/mcp", "https://app:***@host/mcp"),
        ("https://app:s3c?ret@host/mcp", "https://app:***@host/mcp"),
        ("https://app:s3c#ret@host:8000/mcp?token=t", "https://app:***@host:8000/mcp?token=***"),
        ("app:s3c/ret@localhost:8000/mcp", "app:***@localhost:8000/mcp"),
        ("app:s3c@ret@localhost:8000/mcp", "app:***@localhost:8000/mcp"),  # '@' in it: 'ret' was shown
        ("http:/app:s3cret@localhost/mcp", "http:***@localhost/mcp"),  # one slash: urlsplit read no host
        # a password starting with '/' or digits then '/': urlsplit read a port (none, or the digits); shown whole
        ("postgresql://app:/Pw5ecret+x=@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:123/Pw5ecret@db/jobs?password=p&x=1", "postgresql://app:***@db/jobs?password=***&x=1"),
        ("https://host:8000/@scope/pkg", "https://host:***@scope/pkg"),  # as in free text: more hidden than less
        ("postgresql://app:/Sup3r?Pw@db/jobs", "postgresql://app:***@db/jobs"),  # and a '?' or '#' in it
        ("postgresql://app:12/Sup3r#Pw@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("https://host:8000/x?email=a@b.c", "https://host:***@b.c"),  # one URL: more hidden than less
        ("https://host/x?email=a@b.c", "https://host/x?email=a@b.c"),  # no 'user:': no password
        ("https://u@host:8000/@scope/pkg", "https://u@host:8000/@scope/pkg"),  # a user without a password
        ("sqlite:///home/u/C:/a@b.db", "sqlite:///home/u/C:/a@b.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_text_and_params_lose_their_passwords() -> None:
    text = "cannot reach postgresql://app:s3cret@db/jobs (and https://u:pw@h/x)"
    assert redact_urls_in(text) == "cannot reach postgresql://app:***@db/jobs (and https://u:***@h/x)"
    assert redact_params({"dsn": "postgresql://a:b@h/d"}) == {"dsn": "postgresql://a:***@h/d"}


def test_log_lines_carry_no_secret() -> None:
    out = io.StringIO()
    before = structlog.get_config()
    configure_logging("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    try:
        get_logger("t").info(
            "server.started", store="postgresql://u:topsecret@h/db", api_token="tok-1", params={"password": "pw-2"}
        )
    finally:
        structlog.configure(**before)
    line = json.loads(out.getvalue())
    assert "topsecret" not in out.getvalue() and "tok-1" not in out.getvalue() and "pw-2" not in out.getvalue()
    assert line["store"] == "postgresql://u:***@h/db" and line["api_token"] == "***"
    assert line["params"] == {"password": "***"} and line["event"] == "server.started"


def test_urls_in_text_lose_their_passwords_and_secret_parameters() -> None:
    text = "cannot open postgresql://u@h:1/t?x=1&password=s3cret&token=t0k then http://a:b@c/ and api_key=plain"
    shown = redact_urls_in(text)
    assert "s3cret" not in shown and "t0k" not in shown and ":b@" not in shown
    assert "x=1" in shown and "api_key=plain" in shown  # outside a URL, text is text


def test_request_targets_lose_their_secret_parameters_as_an_access_log_line_shows_them() -> None:
    line = '127.0.0.1:5 - "GET /events?access_token=t0k-123&job=j1 HTTP/1.1" 401'
    assert redact_urls_in(line) == '127.0.0.1:5 - "GET /events?access_token=***&job=j1 HTTP/1.1" 401'
    assert redact_urls_in("ratio a/b?token=1") == "ratio a/b?token=1"  # not a request target: text is text
    assert redact_urls_in("http://a?x=1#http://b?token=2") == "http://a?x=1#http://b?token=***"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("reach https://app:Zq9/xK+e7Q==@db:5432/x now", "reach https://app:***@db:5432/x now"),  # base64: a '/'
        ("x https://app:p@ss@host/ y", "x https://app:***@host/ y"),  # to the last '@'
        ("https://u:pw@h/x?email=a@b.c", "https://u:***@h/x?email=a@b.c"),  # not past a query
        ('"https://u:pw@h/a","e":"x@y"', '"https://u:***@h/a","e":"x@y"'),  # nor a quote
        ("http://a:b/x?next=https://u:pw@h", "http://a:b/x?next=https://u:***@h"),  # a URL in a query
        ("https://host:8000/@scope/x", "https://host:***@scope/x"),  # more hidden than less: the port
    ],
)
def test_a_password_written_unescaped_in_text_is_hidden_to_the_url_s_last_at(text: str, shown: str) -> None:
    assert redact_urls_in(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "http://x" * 40_000 + " ?=",
        "http://x/" * 40_000 + " ?=@",
        "a." * 200_000 + " x://y @",
        "(/" * 100_000 + " ?=",
        "http://a:" * 20_000 + "@",
        "http://a:?" * 20_000 + "@",
        "http://a:b/" * 20_000 + "@",
    ],
)
def test_url_redaction_reads_hostile_text_in_linear_time(text: str) -> None:
    """Each of these took seconds to minutes (quadratic regular expressions) on the event loop, in every list-jobs
    of a job holding one such argument; now they take milliseconds (a generous bound for a loaded machine)."""
    started = time.perf_counter()
    redact_urls_in(text)
    redact_params({"text": text})
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("before", [".", "-", "+", "x-", "db."])
def test_a_url_password_is_hidden_whatever_scheme_character_comes_before_the_url(before: str) -> None:
    """A URL glued to a word by '.', '-' or '+' (`--dsn=x-postgres://...`, `name.https://...`): the scheme's start
    read only where no scheme character is before it (linear time) found none there, and the password showed."""
    shown = redact_urls_in(f"dsn {before}postgresql://app:s3cret-pw@db:5432/jobs")
    assert "s3cret" not in shown and shown == f"dsn {before}postgresql://app:***@db:5432/jobs"
    assert "s3cret" not in redact_params({"dsn": f"{before}postgresql://app:s3cret-pw@db/jobs"})["dsn"]


def test_code_with_question_marks_and_equals_signs_costs_about_what_writing_it_as_json_does() -> None:
    """A request target's query made every text with a `?` and a `=` a candidate (code: `a ? b : c`, `x == y`), and
    each of its pieces cost a Python call: 200 KB of code took 30 ms to redact where JSON took 0.5 ms, in every
    list-jobs, jobs://recent and dashboard page of a job holding it (the event loop held meanwhile). Measured
    against JSON of the same params on the same machine (the better of three tries of each), not a fixed time."""
    params = {"code": "const x = a ? b : c; let url = foo(y) == z; // check\n" * 40_000}

    def best(work: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return min(times)

    assert redact_params(params) == params
    assert best(lambda: redact_params(params)) < 10 * best(lambda: json.dumps(params))
