"""The token file, its verifier, the bind rule and the Host/Origin settings (server/auth.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from vibe_jobs.errors import ConfigError
from vibe_jobs.server.auth import (
    TokenFileVerifier,
    auth_setup,
    check_bind,
    is_loopback,
    parse_token_file,
    transport_security,
)
from vibe_jobs.settings import Settings

ALICE = "alice-token-0123456789abcdef"


# What identity providers issue as `sub`, and what an operator may name in the token file (review helper-96: all but
# the first were refused, `[A-Za-z0-9._@:+-]{1,128}`): Auth0, GitHub Actions OIDC (a branch may hold quotes and `&`),
# Kubernetes, SPIFFE, a Windows account, Azure AD's pairwise base64url id, the longest OIDC allows.
IDP_SUBJECTS = [
    "alice",
    "auth0|5f7c8ec7c33c6c004bbafe82",
    "google-oauth2|112233445566778899000",
    "repo:octo-org/octo-repo:ref:refs/heads/main",
    'repo:octo-org/octo-repo:ref:refs/heads/it\'s-"quoted"&<b>',
    "system:serviceaccount:jobs:runner",
    "spiffe://example.org/ns/jobs/sa/runner",
    "CONTOSO\\jdoe",
    "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    "x" * 255,
]


@pytest.mark.parametrize("principal", IDP_SUBJECTS)
async def test_a_token_file_may_name_any_principal_an_identity_provider_issues(principal: str) -> None:
    (entry,) = parse_token_file(f"{ALICE} {principal} read\n", "t")
    assert (entry.principal, entry.scopes) == (principal, ("read",))
    found = await TokenFileVerifier([entry]).verify_token(ALICE)
    assert found is not None and found.subject == principal


def test_a_token_file_names_principals_and_scopes_and_may_hold_digests_only() -> None:
    digest = hashlib.sha256(b"root-token-0123456789abcdef").hexdigest()
    text = f"# team tokens\n\n{ALICE} alice\n  sha256:{digest.upper()}   root   admin,read  # the operator\n"
    alice, root = parse_token_file(text, "tokens")
    assert (alice.principal, alice.scopes) == ("alice", ())
    assert (root.principal, root.scopes) == ("root", ("admin", "read"))


async def test_the_verifier_answers_the_principal_of_a_listed_token_and_nothing_else() -> None:
    digest = hashlib.sha256(b"root-token-0123456789abcdef").hexdigest()
    verifier = TokenFileVerifier(parse_token_file(f"{ALICE} alice\nsha256:{digest} root admin", "t"))
    alice = await verifier.verify_token(ALICE)
    root = await verifier.verify_token("root-token-0123456789abcdef")
    assert alice is not None and (alice.client_id, alice.subject, alice.scopes) == ("alice", "alice", [])
    assert root is not None and (root.subject, root.scopes) == ("root", ["admin"])
    for wrong in ("", ALICE[:-1], ALICE + "x", f"sha256:{digest}", "\udcff"):
        assert await verifier.verify_token(wrong) is None


ALICE_DIGEST = hashlib.sha256(ALICE.encode()).hexdigest()


def test_a_short_token_is_served_with_a_warning_naming_its_line_and_never_the_token() -> None:
    """A token file of short tokens (`alice-token alice`, as a test rig writes one) stopped the server's start:
    "a token must be at least 16 characters". Guessable, it is the operator's to choose: the start says so."""
    with capture_logs() as logs:
        entries = parse_token_file(f"{ALICE} root admin\nalice-tok alice\n", "tokens")
    assert [(e.principal, e.scopes) for e in entries] == [("root", ("admin",)), ("alice", ())]
    assert entries[1].digest == hashlib.sha256(b"alice-tok").digest()
    (warning,) = [line for line in logs if line["event"] == "auth.token_guessable"]
    assert (warning["at"], warning["chars"], warning["log_level"]) == ("tokens:2", 9, "warning")
    assert "alice-tok" not in str(logs)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        (f"{ALICE}\n", "t:1: expected `TOKEN PRINCIPAL [SCOPES]`"),
        (f"{ALICE} alice admin extra\n", "t:1: expected"),
        ("sha256:abcd alice\n", "64 hex digits"),
        (
            f"\n{ALICE} al\x07ice\n",
            "t:2: a token cannot name this principal: principal 'al.+x07ice' .6 characters. is"
            " not 1 to 255 characters of printable ASCII without spaces",
        ),
        (f"{ALICE} al\u00efce\n", "t:1: .*principal 'al\u00efce' .*printable ASCII"),
        (f"{ALICE} {'a' * 256}\n", f"t:1: .*principal '{'a' * 40}...' .256 characters. is not 1 to 255"),
        (f"{ALICE} local\n", "t:1: a token cannot name this principal: 'local' is the server's own principal"),
        # review helper-56: a token no client could send (it was accepted, and never matched), one listed twice (the
        # second principal and scopes silently won: an admin scope lost), a `#` inside a token (cut as a comment)
        ("t\u00f6ken-0123456789abcdef alice\n", "t:1: a token is letters, digits"),
        (f"{ALICE} alice admin\n{ALICE} bob\n", "t:2: the same token as t:1"),
        (
            f"sha256:{hashlib.sha256(ALICE.encode()).hexdigest()} root admin\n{ALICE} bob\n",
            "t:2: the same token as t:1",
        ),
        ("abc#defghijklmnopqrstu alice\n", "t:1: expected .*a `#` starts a comment"),
        # a line ends at a newline only: U+0085 (which str.splitlines takes for one) made one line two tokens, both
        # accepted, and shifted the line numbers every later error names
        (f"{ALICE} alice\u0085{ALICE[::-1]} bob\n", "t:1: .*principal 'alice.x85.*printable ASCII"),
        (f"{ALICE} alice\n# a note\u2028\nshort\n", "t:3: expected `TOKEN PRINCIPAL"),
    ],
)
def test_a_malformed_token_file_stops_start_up_naming_the_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_token_file(text, "t")


def test_an_unreadable_token_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"token file .*missing.*--auth-tokens, VIBE_JOBS_AUTH_TOKENS"):
        TokenFileVerifier.load(str(tmp_path / "missing"))


def test_auth_options_must_be_one_complete_kind(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    assert not auth_setup(Settings(), "http://127.0.0.1:1").enabled
    assert auth_setup(Settings(auth_tokens=str(tokens)), "http://127.0.0.1:1").enabled
    with pytest.raises(ConfigError, match="not both"):
        auth_setup(Settings(auth_tokens=str(tokens), auth_issuer="https://idp"), "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="all three"):
        auth_setup(Settings(auth_jwks="https://idp/jwks"), "http://127.0.0.1:1")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"])
def test_loopback_binds_need_no_authentication(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, authenticated=False, allow_unauthenticated=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "jobs.example"])
def test_other_binds_need_authentication_or_the_explicit_flag(host: str) -> None:
    with pytest.raises(ConfigError, match=r"--auth-tokens FILE.*--allow-unauthenticated"):
        check_bind(host, authenticated=False, allow_unauthenticated=False)
    check_bind(host, authenticated=True, allow_unauthenticated=False)
    check_bind(host, authenticated=False, allow_unauthenticated=True)


def test_host_checks_stay_on_for_every_bind_with_the_allowed_names() -> None:
    wide = transport_security("0.0.0.0", ("jobs.example",))
    assert wide.enable_dns_rebinding_protection
    assert {"jobs.example", "jobs.example:*", "127.0.0.1:*"} <= set(wide.allowed_hosts)
    assert "0.0.0.0" not in wide.allowed_hosts
    assert {"https://jobs.example", "http://jobs.example:*"} <= set(wide.allowed_origins)
    assert "10.0.0.7:*" in transport_security("10.0.0.7", ()).allowed_hosts


@pytest.mark.parametrize(("mode", "warned"), [(0o600, None), (0o640, "its group"), (0o644, "every user")])
def test_a_token_file_other_users_can_read_is_warned_of(tmp_path: Path, mode: int, warned: str | None) -> None:
    """Its tokens are every principal's keys: a file left world-readable (a plain `echo > tokens` gives 644) let
    any user of the machine act as admin, and nothing said so (helper-106's note). The server still starts."""
    path = tmp_path / "tokens"
    path.write_text(f"{ALICE} alice\n")
    path.chmod(mode)
    with capture_logs() as logs:
        verifier = TokenFileVerifier.load(str(path))
    assert verifier.verify(ALICE) is not None
    said = [entry for entry in logs if entry["event"] == "auth.token_file_readable"]
    if warned is None:
        assert said == []
    else:
        assert len(said) == 1 and warned in said[0]["why"] and said[0]["mode"] == oct(mode), said
        assert ALICE not in str(said)
