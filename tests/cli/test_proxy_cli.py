"""`vibe-jobs proxy` refuses what it cannot run with one line naming the problem, and exits non-zero."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.e2e.proxy_fixtures import wait_for
from vibe_jobs.cli.main import main

VIBE_JOBS = [sys.executable, "-m", "vibe_jobs"]


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """`main(["proxy", ...])` in this process configures logging as the proxy starts (to this test's captured
    stderr, at info): the other commands' tests in this process must not find it so."""
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "no upstream: give -- COMMAND [ARGS...], --upstream-url, --upstream or --config"),
        (("--jobs", "a", "--direct", "b", "--", "x"), "give --jobs or --direct, not both"),
        (("--upstream-url", "http://h/mcp", "--", "x"), "give either -- COMMAND or --upstream-url, not both"),
        (("--upstream-header", "X: y", "--", "x"), "--upstream-header needs --upstream-url"),
        (("--upstream", "bad name=x"), "may hold letters, digits, '-' and '_' only"),
        (("--config", "/no/such/file.json"), "config /no/such/file.json"),
    ],
)
def test_a_proxy_that_cannot_run_says_why(
    args: tuple[str, ...], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["proxy", "--store", "memory://", *args]) == 2  # as every command's start-up refusal
    said = capsys.readouterr()
    assert problem in said.err and said.err.startswith("vibe-jobs proxy: ")
    assert said.out == ""  # stdout is the protocol's, even when the proxy refuses to start


def test_a_malformed_upstream_header_is_refused_without_showing_it() -> None:
    """`--upstream-header 'Authorization Bearer TOKEN'` (its colon left out) was echoed whole in the refusal,
    the token with it, to stderr (a container's log)."""
    header = "Authorization Bearer Sup3rSecretTok"
    cmd = [*VIBE_JOBS, "proxy", "--store", "memory://", "--upstream-url", "http://h/mcp", "--upstream-header", header]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "an --upstream-header is not 'Name: value'" in run.stderr, run.stderr
    assert "Sup3rSecretTok" not in run.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://app:Sup3rSecretPw@127.0.0.1:99999/mcp", "is not a URL: its port is not a number from 1 to 65535"),
        ("http://app:Sup3rSecretPw@127.0.0.1:abc/mcp", "is not a URL: its port is not a number from 1 to 65535"),
        # a password with '/' (base64): urlsplit read its start as the port, and both the URL and its error
        # ("Port could not be cast to integer value as 'Sup3rSecretPw'") showed it
        ("https://app:Sup3rSecretPw/x+y=@127.0.0.1:8000/mcp", "is not a URL: a password holding '/', '?', '#'"),
        ("app:Sup3rSecretPw/x@localhost:8000/mcp", "is not the URL of a server: give http(s)://HOST:PORT/"),
        ("app:Sup3rSecretPw@localhost:8000/mcp", "is not the URL of a server: give http(s)://HOST:PORT/"),
        ("ftp://app:Sup3rSecretPw@files.example/mcp", "is not the URL of a server: give http(s)://HOST:PORT/"),
    ],
)
def test_an_upstream_url_of_no_server_is_refused_as_call_refuses_its_url(url: str, problem: str) -> None:
    """`--upstream-url` with a port of 99999 or `abc`, no scheme or `ftp://` was refused in the HTTP library's words
    (`OverflowError: connect(): port must be 0-65535.`, `InvalidURL`, `UnsupportedProtocol`) once the proxy tried
    to connect, where `call --url` checks the URL's shape first: one rule (vibe_jobs.urls), naming the flag."""
    cmd = [*VIBE_JOBS, "proxy", "--store", "memory://", "--upstream-url", url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("vibe-jobs proxy: --upstream-url '") and problem in lines[0], run.stderr
    assert "Sup3rSecretPw" not in run.stderr and "app:***@" in run.stderr, run.stderr


def test_a_config_file_s_url_of_no_server_is_refused_naming_its_entry(tmp_path: Path) -> None:
    config = tmp_path / "servers.json"
    config.write_text('{"mcpServers": {"web": {"url": "https://u:Sup3rSecretPw@example.com:0/mcp"}}}')
    cmd = [*VIBE_JOBS, "proxy", "--store", "memory://", "--config", str(config)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2, run.stderr
    assert f"config {config}: mcpServers.web: url 'https://u:***@example.com:0/mcp' is not the URL" in run.stderr
    assert "Sup3rSecretPw" not in run.stderr


def test_an_upstream_that_cannot_start_stops_the_proxy_naming_it() -> None:
    cmd = [sys.executable, "-m", "vibe_jobs", "proxy", "--store", "memory://", "--", "/no/such/server"]
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2
    assert "vibe-jobs proxy: upstream /no/such/server: cannot start: FileNotFoundError" in run.stderr
    assert run.stdout == ""


def test_a_port_in_use_is_one_line_and_exit_2_as_for_serve() -> None:
    """The bind refusal came out of the upstreams' task group as a traceback with exit 1."""
    root = Path(__file__).resolve().parents[2]
    upstream = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://"]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "vibe_jobs", "proxy", "--transport", "streamable-http", "--port", str(port)]
        run = subprocess.run([*cmd, "--store", "memory://", "--", *upstream], cwd=root, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert run.returncode == 2, run.stderr
    said = run.stderr.strip().splitlines()
    assert said[-1] == f"vibe-jobs: cannot listen on 127.0.0.1:{port}: Address already in use", said
    assert "Traceback" not in run.stderr and run.stdout == ""


# an upstream that starts and never answers `initialize`; it writes its pid first
HANG = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # ended, not yet reaped by its new parent


def proxy_of_hanging_upstream(tmp_path: Path, **env: str) -> tuple[list[str], dict[str, str], Path]:
    pidfile = tmp_path / "upstream.pid"
    cmd = [sys.executable, "-m", "vibe_jobs", "proxy", "--store", "memory://", "--", sys.executable, "-c", HANG]
    return [*cmd, str(pidfile)], {**os.environ, **env}, pidfile


def test_an_upstream_that_never_answers_stops_the_proxy_after_the_start_timeout(tmp_path: Path) -> None:
    """It hung silently for ever, and left the upstream behind when killed."""
    cmd, env, pidfile = proxy_of_hanging_upstream(tmp_path, VIBE_JOBS_PROXY_START_TIMEOUT_SECONDS="2")
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and run.stdout == "", run.stderr[-2000:]
    assert "cannot start: TimeoutError: no answer to initialize and tools/list within 2 s" in run.stderr, run.stderr
    wait_for(lambda: gone(int(pidfile.read_text())), seconds=10)


def test_sigterm_while_the_upstream_starts_stops_the_upstream_too(tmp_path: Path) -> None:
    cmd, env, pidfile = proxy_of_hanging_upstream(tmp_path)
    with (
        (tmp_path / "proxy.stderr").open("wb") as err,
        subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err) as proc,
    ):
        try:
            wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        finally:
            proc.kill()
    assert proc.returncode == 0, (tmp_path / "proxy.stderr").read_text()[-2000:]
    wait_for(lambda: gone(int(pidfile.read_text())), seconds=10)


def test_proxies_of_other_upstreams_are_other_programs_and_the_same_one_is_the_same() -> None:
    """Every proxy was the one program `vibe-jobs-proxy`: on the SQLite file two proxies share (Claude Desktop's
    default), one back before the other failed the other's stopped jobs as tools no longer registered. A proxy's
    program names what it fronts (vibe_jobs.owners: the jobs of another program are left for it)."""
    from vibe_jobs.cli.proxy import program_of_upstreams
    from vibe_jobs.owners import check_program
    from vibe_jobs.server.proxy.config import UpstreamSpec

    files = UpstreamSpec(command="npx", args=("-y", "@modelcontextprotocol/server-filesystem", "/tmp"))
    web = UpstreamSpec(url="https://example.com/mcp", headers={"Authorization": "Bearer secret-1"})
    programs = {program_of_upstreams([files]), program_of_upstreams([web]), program_of_upstreams([files, web])}
    assert len(programs) == 3 and all(check_program(p).startswith("vibe-jobs-proxy-") for p in programs), programs
    rotated = UpstreamSpec(url="https://example.com/mcp", headers={"Authorization": "Bearer secret-2"})
    assert program_of_upstreams([rotated]) == program_of_upstreams([web])  # a header (a token rotated) is no other
