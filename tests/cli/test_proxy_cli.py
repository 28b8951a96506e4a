"""`vibe-jobs proxy` refuses what it cannot run with one line naming the problem, and exits non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vibe_jobs.cli.main import main


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
    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--store", "memory://", *args])
    assert problem in str(exited.value.code)
    assert capsys.readouterr().out == ""  # stdout is the protocol's, even when the proxy refuses to start


def test_an_upstream_that_cannot_start_stops_the_proxy_naming_it() -> None:
    cmd = [sys.executable, "-m", "vibe_jobs", "proxy", "--store", "memory://", "--", "/no/such/server"]
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 1
    assert "vibe-jobs proxy: upstream /no/such/server: cannot start: FileNotFoundError" in run.stderr
    assert run.stdout == ""
