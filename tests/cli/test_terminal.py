"""What the commands write to a terminal follows the terminal's conventions: colours only on a terminal that takes
them (not under NO_COLOR, not on TERM=dumb, not into a file with VIBE_JOBS_LOG_FORMAT=console), and `call`'s
redrawn progress bar only where control sequences work. The console log was always coloured, and the bar always
drawn with `ESC [K` on any TTY."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT, on_a_terminal

VIBE_JOBS = [sys.executable, "-m", "vibe_jobs"]
START_UP = [*VIBE_JOBS, "serve", "--store", "memory://"]  # logs server.started on stderr, then stops (stdin empty)
SERVER = [*VIBE_JOBS, "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
ESC = "\x1b["


def stderr_on_a_terminal(argv: list[str], **env: str) -> str:
    """What `argv` writes to its stderr when that is a terminal (a pseudo-terminal read to its end)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_FORMAT": "console", "TERM": "xterm", **env}
    code, drawn = on_a_terminal(argv, ROOT, env, stdout_too=False)
    assert code == 0
    return drawn.decode("utf-8", "replace")


def test_the_console_log_is_coloured_on_a_terminal_only() -> None:
    assert ESC in stderr_on_a_terminal(START_UP)  # the check below can see colours
    done = subprocess.run(
        START_UP, capture_output=True, text=True, timeout=60, check=False, input="",
        env={**os.environ, "VIBE_JOBS_LOG_FORMAT": "console"},
    )  # fmt: skip
    assert "server.started" in done.stderr and ESC not in done.stderr, done.stderr


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_colour_where_the_terminal_says_so(env: dict[str, str]) -> None:
    said = stderr_on_a_terminal(START_UP, **env)
    assert "server.started" in said and ESC not in said, said


def test_call_draws_no_bar_on_a_dumb_terminal() -> None:
    call = [*VIBE_JOBS, "call", "sleepy", "--arg", "seconds=0.6", "--arg", "steps=3"]
    call += ["--server-cmd", shlex.join(SERVER)]
    env = {"VIBE_JOBS_LOG_LEVEL": "warning"}
    assert f"\r{ESC}K" in stderr_on_a_terminal(call, **env)  # the bar, redrawn in place
    said = stderr_on_a_terminal(call, TERM="dumb", **env)
    assert "progress " in said and ESC not in said, said  # one line per change
