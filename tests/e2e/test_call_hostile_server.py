"""The client side against a hostile job server (tests/e2e/hostile_jobs_server.py, a real MCP server over stdio):
`vibe-jobs call` run as a person runs it, and `vibe_jobs.client.call_and_wait` in process. A server that answers
long-polls at once, gives poll intervals that are no numbers or refuses a cancel must neither spin, crash nor hang
the client (review helper-61 F3, F5)."""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from vibe_jobs.client import DEFAULT_POLL_MS, MAX_POLL_MS, MIN_POLL_MS, TasksClientExtension, call_and_wait, interval_ms

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "e2e" / "hostile_jobs_server.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VIBE_JOBS_LOG_LEVEL": "warning"}


def call_command(scenario: str, log: Path | None = None) -> list[str]:
    server = shlex.join([sys.executable, str(HOSTILE), scenario, *([str(log)] if log else [])])
    return [sys.executable, "-m", "vibe_jobs", "call", "work", "--server-cmd", server]


def run_call(scenario: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = call_command(scenario, log)
    return subprocess.run(cmd, cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50)


def reads(log: Path, method: str) -> list[float]:
    """When the server was asked `method`, in its monotonic seconds."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [float(when) for name, when in (line.split() for line in lines) if name == method]


# -- poll intervals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (250, 250),
        (0, MIN_POLL_MS),
        (-5, MIN_POLL_MS),
        (1e308, MAX_POLL_MS),
        (10**400, MAX_POLL_MS),
        (float("nan"), DEFAULT_POLL_MS),
        (float("inf"), DEFAULT_POLL_MS),
        ("1000", DEFAULT_POLL_MS),
        (True, DEFAULT_POLL_MS),
        (None, DEFAULT_POLL_MS),
    ],
)
def test_a_server_s_poll_interval_is_kept_within_bounds(given: object, kept: int) -> None:
    """1e308 ms slept for ever, 0 spun; NaN raised ValueError and infinity OverflowError."""
    assert interval_ms(given) == kept


def test_long_polls_answered_at_once_are_read_at_the_recommendation(tmp_path: Path) -> None:
    """A server that answers every long-poll at once (its cap is lower, or it is hostile) was read in a busy loop:
    thousands of get-job-result a second. Each read now waits the answer's recommendation (200 ms)."""
    log = tmp_path / "reads.log"
    done = run_call("early", log)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    times = reads(log, "get-job-result")
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.15, gaps  # before: a millisecond or two


def test_a_recommendation_that_is_no_number_is_read_at_the_default(tmp_path: Path) -> None:
    """pollingRecommendation.interval NaN (get-job-result without long-polls): ValueError before."""
    done = run_call("nan")
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr


def test_a_status_that_is_no_text_is_no_status_message() -> None:
    """An object as the status raised `TypeError: unhashable type: 'dict'`; the answer is now shown for what it is
    (no status message), as an answer without a status always was."""
    done = run_call("status_object")
    assert done.returncode == 2 and done.stdout == ""
    assert "a status of no kind" in done.stderr and "TypeError" not in done.stderr, done.stderr


# -- the tasks extension -------------------------------------------------------------------


async def follow_task(scenario: str, log: Path, seconds: float) -> tuple[str | None, bool]:
    """call_and_wait over the tasks extension within `seconds`: the result's text and whether time ran out."""
    params = StdioServerParameters(command=sys.executable, args=[str(HOSTILE), scenario, str(log)], cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), extensions=[TasksClientExtension()]) as client:
            text = None
            with anyio.move_on_after(seconds) as scope:
                result = await call_and_wait(client, "work", {})
                text = getattr(result.content[0], "text", None)
    return text, scope.cancelled_caught


async def test_a_task_s_infinite_poll_interval_is_read_at_the_default(tmp_path: Path) -> None:
    """pollIntervalMs Infinity in tasks/get raised OverflowError (and 1e308 slept for ever)."""
    assert await follow_task("task_inf", tmp_path / "reads.log", 30) == ("done", False)


async def test_a_refused_tasks_cancel_does_not_replace_the_cancellation(tmp_path: Path) -> None:
    """A cancelled call_and_wait sends tasks/cancel; the server's refusal ("Task not found") raised MCPError out of
    the caller's move_on_after, which then no longer contained the cancellation."""
    log = tmp_path / "reads.log"
    assert await follow_task("task_refuses_cancel", log, 0.5) == (None, True)
    assert len(reads(log, "tasks/cancel")) == 1
