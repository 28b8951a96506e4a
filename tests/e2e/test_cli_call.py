"""`vibe-jobs call` as a person runs it: a subprocess that starts its own stdio server.

Every command is started at once by a module fixture (each pays a server start-up), and each
test then reads the outcome of its own command.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import HttpServer
from vibe_jobs.cli.call import ProgressView, build_arguments, parse_value, server_command, started_job

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_LEVEL": "warning", "VIBE_JOBS_POLL_BASE_MS": "200"}
BAD_SERVER = shlex.join([sys.executable, "-c", "import sys; sys.exit('bad server')"])
CASES: dict[str, list[str]] = {
    "sleepy": ["sleepy", "--arg", "seconds=0.5"],
    "explode": ["explode", "--arg", "message=kaboom"],
    "explode_escapes": ["explode", "--arg", "message=kaboom \x1b]0;owned\x07\x1b[2J"],
    "no_wait": ["sleepy", "--arg", "seconds=0.2", "--no-wait"],
    "json": ["echo", "--json-args", '{"text": "hi"}', "--arg", "count=2", "--json", "--legacy"],
    # the issue's two spellings of --json in one command: the arguments object, and JSON output
    "json_twice": ["echo", "--json", '{"text": "hi", "count": 3}', "--json"],
    "json_first": ["--json", "echo", "--arg", "text=ho"],
    "plain": ["plain-noop"],
    # a text parameter given a value that reads as JSON of another type (a folder named 2024, a version 1.10)
    "text_arg": ["echo", "--arg", "text=2024", "--arg", "count=2"],
    # an enum's values are text in a definition the parameter names by $ref ("3.10" read as JSON is 3.1)
    "enum_arg": ["pick-python", "--arg", "version=3.10", "--arg", "fallback=3.12"],
    "codemap": ["map-codebase", "--arg", "path=src"],
    "interrupt": ["sleepy", "--arg", "seconds=30", "--arg", "steps=60"],
    "bad_server": ["noop", "--server-cmd", BAD_SERVER],
}


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Runs:
    procs: dict[str, subprocess.Popen[str]]
    done: dict[str, Outcome] = field(default_factory=dict)

    def outcome(self, name: str) -> Outcome:
        if name not in self.done:
            proc = self.procs[name]
            out, err = proc.communicate(timeout=50)
            self.done[name] = Outcome(proc.returncode, out, err)
        return self.done[name]


def start(args: list[str]) -> subprocess.Popen[str]:
    target = [] if "--server-cmd" in args else ["--server-cmd", shlex.join(SERVER)]
    cmd = [sys.executable, "-m", "vibe_jobs", "call", *args, *target]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def runs() -> Iterator[Runs]:
    runs = Runs({name: start(args) for name, args in CASES.items()})
    try:
        yield runs
    finally:
        for name, proc in runs.procs.items():
            if proc.poll() is None:
                proc.kill()
            if name not in runs.done:
                proc.communicate()


# -- in-process parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.5", 0.5), ("true", True), ("[1, 2]", [1, 2]), ('"7"', "7"), ("hello", "hello"), ("", "")],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_an_arg_is_read_as_the_tool_s_schema_says() -> None:
    schema = {
        "properties": {
            "path": {"type": "string"},
            "cwd": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "maxFiles": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "anything": {},
        }
    }
    pairs = ["path=2024", "cwd=null", "maxFiles=5", "anything=7", "unknown=true", "command=[1]"]
    arguments = build_arguments(pairs, None, schema)
    assert arguments == {"path": "2024", "cwd": None, "maxFiles": 5, "anything": 7, "unknown": True, "command": [1]}
    assert build_arguments(["path=2024"], None) == {"path": 2024}  # no schema known: JSON when it parses


def test_build_arguments_merges_json_and_pairs() -> None:
    got = build_arguments(["b=2", "c=x=y"], '{"a": 1, "b": 1}')
    assert got == {"a": 1, "b": 2, "c": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        build_arguments(["novalue"], None)
    with pytest.raises(ValueError, match="JSON object"):
        build_arguments([], "[1]")


def test_server_command_default_and_split() -> None:
    assert server_command(None) == [sys.executable, "-m", "vibe_jobs", "serve"]
    assert server_command("srv --tools 'a b'") == ["srv", "--tools", "a b"]


def test_started_job_only_for_job_answers() -> None:
    from mcp_types import CallToolResult

    job = CallToolResult(content=[], structured_content={"jobId": "j1", "status": "pending"})
    assert started_job("sleepy", job) == "j1"
    assert started_job("get-job-result", job) is None
    assert started_job("plain", CallToolResult(content=[], structured_content={"result": "ok"})) is None


async def test_progress_view_lines_without_tty() -> None:
    stream = io.StringIO()
    view = ProgressView(stream, tty=False)
    await view.on_progress(20, 100, "step 1")
    await view.on_progress(20, 100, "step 1")  # unchanged: no new line
    view.update_from({"status": "running", "progress": 40, "message": "step 2", "details": {"currentStage": "sleep"}})
    assert stream.getvalue().splitlines() == ["progress  20% step 1", "progress  40% [sleep] step 2"]


async def test_progress_view_bar_on_tty() -> None:
    stream = io.StringIO()
    view = ProgressView(stream, tty=True)
    await view.on_progress(0.5, 1, "half")
    view.clear()
    assert stream.getvalue() == f"\r\x1b[K[{'#' * 12}{'.' * 12}]  50% half\r\x1b[K"


# -- the command against a real server ----------------------------------------------------


def test_job_result_is_printed(runs: Runs) -> None:
    res = runs.outcome("sleepy")
    assert res.code == 0, res.err
    assert json.loads(res.out) == {"seconds": 0.5, "steps": 5}


def test_failed_job_exits_1_with_its_message(runs: Runs) -> None:
    res = runs.outcome("explode")
    assert res.code == 1 and res.out == ""
    assert "failed" in res.err and "kaboom" in res.err and "Traceback" not in res.err


def test_a_failed_job_s_words_reach_the_terminal_escaped(runs: Runs) -> None:
    """What the job wrote (here its error message) went to the terminal raw: its escape sequences set the title
    and cleared the screen (review helper-56, for `jobs show`; the same for `call`)."""
    res = runs.outcome("explode_escapes")
    assert res.code == 1 and "kaboom" in res.err
    assert "\x1b" not in res.err and "\x07" not in res.err and "\\x1b[2J" in res.err, res.err


def test_no_wait_without_a_running_server_is_refused(runs: Runs) -> None:
    """The server `call` started stopped when it exited: the job printed was killed at once."""
    res = runs.outcome("no_wait")
    assert res.code == 2 and res.out == "", res
    assert "--no-wait needs --url" in res.err and "Traceback" not in res.err


def test_no_wait_prints_the_job_id_of_a_job_the_running_server_finishes(http_server: HttpServer) -> None:
    cmd = [sys.executable, "-m", "vibe_jobs", "call", "sleepy", "--arg", "seconds=0.2", "--url", http_server.url]
    done = subprocess.run([*cmd, "--no-wait"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)
    assert "get-job-result" in done.stderr
    follow = [sys.executable, "-m", "vibe_jobs", "call", "get-job-result", "--arg", f"jobId={job_id}"]
    args = ["--arg", "waitSeconds=10", "--url", http_server.url, "--output", "json"]
    read = subprocess.run([*follow, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read
    assert '"completed"' in read.stdout, read


def test_json_prints_the_status_message(runs: Runs) -> None:
    res = runs.outcome("json")
    assert res.code == 0, res.err
    msg = json.loads(res.out)
    assert msg["status"] == "completed" and msg["toolName"] == "echo"
    assert msg["result"]["structuredContent"]["text"] == "hihi"


@pytest.mark.parametrize(("case", "text"), [("json_twice", "hihihi"), ("json_first", "ho")])
def test_json_as_arguments_and_as_output_flag_together(runs: Runs, case: str, text: str) -> None:
    res = runs.outcome(case)
    assert res.code == 0, res.err
    msg = json.loads(res.out)
    assert msg["status"] == "completed" and msg["toolName"] == "echo"
    assert msg["result"]["structuredContent"]["text"] == text


def test_an_arg_for_a_text_parameter_stays_text_whatever_it_looks_like(runs: Runs) -> None:
    """`--arg text=2024` sent the number 2024 and the call was refused: "text: Input should be a valid string"."""
    res = runs.outcome("text_arg")
    assert res.code == 0, res.err
    assert "20242024" in res.out


def test_an_arg_for_an_enum_parameter_is_read_by_its_definition(runs: Runs) -> None:
    """An enum parameter's schema is a `$ref` to its definition: its type was unknown, `--arg version=3.10` sent
    the number 3.1 and the call was refused ("Input should be '3.10' or '3.12'")."""
    res = runs.outcome("enum_arg")
    assert (res.code, res.out.strip()) == (0, "3.10 3.12"), res.err


def test_plain_tool_result_is_printed(runs: Runs) -> None:
    res = runs.outcome("plain")
    assert (res.code, res.out.strip()) == (0, "ok"), res.err


def test_server_that_dies_is_reported_without_traceback(runs: Runs) -> None:
    res = runs.outcome("bad_server")
    assert res.code == 2
    assert "server: bad server" in res.err and "Traceback" not in res.err


def test_interrupt_without_tty_cancels_the_job(runs: Runs) -> None:
    proc = runs.procs["interrupt"]
    assert proc.stderr is not None and proc.stdout is not None
    seen = ""
    while "progress" not in seen and (line := proc.stderr.readline()):
        seen += line
    assert "progress" in seen, seen  # stderr is not a TTY: one line per progress change
    proc.send_signal(signal.SIGINT)
    err, out = proc.stderr.read(), proc.stdout.read()
    proc.stderr.close()
    proc.stdout.close()
    runs.done["interrupt"] = Outcome(proc.wait(20), out, err)
    assert runs.done["interrupt"].code == 1, err
    assert "cancelling job" in err and "cancelled" in err and "interrupted from the command line" in err


def test_map_codebase(runs: Runs) -> None:
    res = runs.outcome("codemap")
    if "Unknown tool: map-codebase" in res.err:
        pytest.skip("the built-in map-codebase tool is not listed by this server")
    assert res.code == 0, res.err
    assert "vibe_jobs/cli/main.py" in res.out


@pytest.mark.parametrize(
    ("argv", "arguments", "json_output"),
    [
        (["echo", "--json", '{"text": "hi"}'], {"text": "hi"}, False),
        (["echo", "--json", '{"text": "hi"}', "--output", "json"], {"text": "hi"}, True),
        (["echo", "--arg", "text=hi", "--json"], {"text": "hi"}, True),
        (["echo", "--json-args", '{"text": "hi"}'], {"text": "hi"}, False),
        (["echo", "--json", '{"text": "hi"}', "--json"], {"text": "hi"}, True),
        (["echo", "--json", "--json", '{"text": "hi"}'], {"text": "hi"}, True),
        (["--json", "echo", "--arg", "text=hi"], {"text": "hi"}, True),
        (["--json", '{"text": "hi"}', "echo"], {"text": "hi"}, False),
    ],
)
def test_json_flag_gives_arguments_or_json_output(
    argv: list[str], arguments: dict[str, str], json_output: bool
) -> None:
    from vibe_jobs.cli.call import split_json_flag
    from vibe_jobs.cli.main import build_parser

    args = build_parser().parse_args(["call", *argv])
    split_json_flag(args)
    assert build_arguments(args.arg, args.json_args) == arguments
    assert args.json is json_output
