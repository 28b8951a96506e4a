"""The client side against a hostile job server (tests/e2e/hostile_jobs_server.py, a real MCP server over stdio):
`vibe-jobs call` run as a person runs it, and `vibe_jobs.client.call_and_wait` in process. A server that answers
long-polls at once, gives poll intervals that are no numbers, refuses a cancel or writes escape sequences must
neither spin, crash, hang nor drive the person's terminal (review helper-61 F3-F5, helper-59 F6)."""

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

from tests.e2e.conftest import on_a_terminal
from vibe_jobs.client import DEFAULT_POLL_MS, MAX_POLL_MS, MIN_POLL_MS, TasksClientExtension, call_and_wait, interval_ms

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "e2e" / "hostile_jobs_server.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VIBE_JOBS_LOG_LEVEL": "warning", "COLUMNS": "60"}
ESCAPES = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mRED\x1b[0m\r\x1b[Kspoofed"  # what the server writes


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


def gaps_between_reads(scenario: str, log: Path) -> list[float]:
    """`vibe-jobs call` against `scenario` (it must print the result): the seconds between its get-job-result reads."""
    done = run_call(scenario, log)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    return [later - earlier for earlier, later in itertools.pairwise(reads(log, "get-job-result"))]


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
    gaps = gaps_between_reads("early", tmp_path / "reads.log")
    assert len(gaps) == 3 and min(gaps) >= 0.15, gaps  # before: a millisecond or two


def test_a_long_poll_held_to_the_server_s_cap_is_followed_by_the_next_at_once(tmp_path: Path) -> None:
    """A server whose cap on a long-poll is below the client's 30 s (VIBE_JOBS_MAX_WAIT_SECONDS) answers each one
    unfinished after holding it: the client paused the answer's recommendation (5 s here) before the next, so it
    learnt of the finish up to that late. A long-poll that held a second or more is followed at once."""
    gaps = gaps_between_reads("capped", tmp_path / "reads.log")
    assert len(gaps) == 2 and max(gaps) < 1.2 + 1.0, gaps  # before: 1.2 s held + 5 s paused


def test_a_recommendation_that_is_no_number_is_read_at_the_default(tmp_path: Path) -> None:
    """pollingRecommendation.interval NaN (get-job-result without long-polls): ValueError before."""
    done = run_call("nan")
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr


def test_an_input_schema_with_types_of_no_name_does_not_end_the_call() -> None:
    """Each --arg is read by the tool's listed schema: a `type` that is a number or a boolean (a list of names or
    one name, says JSON Schema) raised `TypeError: 'int' object is not iterable` and ended the call (exit 2)."""
    cmd = [*call_command("odd_schema"), "--arg", "n=1", "--arg", "m=two"]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    assert "Error" not in done.stderr, done.stderr


def test_each_arg_is_read_by_the_schema_of_a_tool_listed_on_a_later_page(tmp_path: Path) -> None:
    """`call` read the tool's schema from the first page of tools/list only: a tool listed later had its
    `--arg n=5` sent as the number 5 where its schema asks for a string (helper-113's note)."""
    log = tmp_path / "reads.log"
    cmd = [*call_command("paged", log), "--arg", "n=5"]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    sent = [line.split(" ", 1)[1] for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("arg")]
    assert sent == ['{"n":"5"}']


def test_a_status_that_is_no_text_is_no_status_message() -> None:
    """An object as the status raised `TypeError: unhashable type: 'dict'`; the answer is now shown for what it is
    (no status message), as an answer without a status always was."""
    done = run_call("status_object")
    assert done.returncode == 2 and done.stdout == ""
    assert "a status of no kind" in done.stderr and "TypeError" not in done.stderr, done.stderr


def test_a_job_s_progress_and_details_of_odd_shapes_do_not_end_the_call() -> None:
    """A progress that is a text raised ValueError in the progress line, and details that are a list an
    AttributeError: each ended the call (exit 2) instead of showing the job (review helper-64's leftovers)."""
    done = run_call("odd_shapes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n" and "Error" not in done.stderr, done.stderr


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


# -- what reaches the person's terminal ---------------------------------------------------


def test_a_job_s_words_reach_stderr_escaped_and_a_pipe_gets_the_result_as_it_is() -> None:
    """Progress lines carried the job's message and stage raw. The result on stdout, a pipe here, is the tool's
    exact text (`call ... > out.txt`); on a terminal it is escaped (the test below)."""
    done = run_call("escapes")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr
    assert "[\\x1b]0;PWNED-TITLE\\x07" in done.stderr and "spoofed step 2" in done.stderr
    assert done.stdout.startswith(f"done {ESCAPES[:20]}"), done.stdout  # byte for byte (text mode reads \r as \n)


def test_a_failed_job_s_words_never_read_as_the_verdict_of_vibe_jobs_call() -> None:
    """The one-line verdict on stderr kept a newline of the server's tool name, and the error's lines started at the
    margin: a hostile server forged a line `vibe-jobs: job job1 (work) completed: ...` under the real one."""
    done = run_call("forged_failure")
    assert done.returncode == 1, done.stderr
    verdicts = [line for line in done.stderr.splitlines() if line.startswith("vibe-jobs: job ")]
    assert len(verdicts) == 1 and " failed: boom" in verdicts[0], done.stderr
    assert "(work\\nvibe-jobs: job job1 (work) completed: all tests passed)" in verdicts[0], done.stderr
    assert "\n  vibe-jobs: job job1 (work) completed: all tests passed" in done.stderr  # the error's own line, indented


def test_a_server_s_error_and_its_log_reach_stderr_escaped() -> None:
    """An MCPError's message and the server's stderr tail were printed raw."""
    done = run_call("error_escapes")
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr
    assert "MCPError: boom \\x1b]0;PWNED-TITLE" in done.stderr and "server: hostile log line \\x1b" in done.stderr


def test_on_a_terminal_the_bar_and_the_result_are_escaped() -> None:
    """On a TTY the bar (cut to the terminal's width, 60 columns here) and the result carried raw escape
    sequences: the title was set and the screen cleared. Only the bar's own redraw (`\\r\\x1b[K`) is left."""
    code, seen = on_a_terminal(call_command("escapes"), ROOT, ENV)
    assert code == 0, seen
    shown = seen.replace(b"\r\x1b[K", b"")
    assert b"\x1b" not in shown and b"\x07" not in shown, seen
    assert b"done \\x1b]0;PWNED-TITLE\\x07" in shown
    bars = [drawn for drawn in seen.split(b"\r\x1b[K") if drawn.startswith(b"[##")]
    assert bars and all(len(bar) == 59 for bar in bars), bars  # escaped, then cut: no half sequence
