"""The CLI's numeric flags and store URLs refused with one line that names the problem (review helper-56):
`worker --concurrency -1` took its place in the cluster and never claimed a job, `--drain-seconds nan` crashed the
worker's stop and left its lease, `--port 70000` ended in a traceback, and a mistyped store URL printed its
password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

VIBE_JOBS = [sys.executable, "-m", "vibe_jobs"]


def refused(*argv: str) -> str:
    """The command's error (it must fail at once, with one line and no traceback)."""
    done = subprocess.run([*VIBE_JOBS, *argv], capture_output=True, text=True, timeout=60, check=False, input="")
    assert done.returncode != 0, (argv, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["worker", "--concurrency", "-1"], "--concurrency: '-1': must be a positive whole number"),
        (["worker", "--concurrency", "0"], "--concurrency: '0': must be a positive whole number"),
        (["worker", "--concurrency", "99999999999999999999"], "at most 2,147,483,647"),
        (["worker", "--drain-seconds", "nan"], "--drain-seconds: 'nan': must be a number of seconds from 0"),
        (["worker", "--drain-seconds", "-1"], "--drain-seconds: '-1'"),
        (["serve", "--port", "70000"], "--port: '70000': must be a port number from 0 to 65535"),
        (["dashboard", "--port", "-1"], "--port: '-1'"),
        (["health", "--timeout", "-1"], "--timeout: '-1': must be a number of seconds from more than 0"),
        (["call", "echo", "--timeout", "nan"], "--timeout: 'nan'"),
        (["jobs", "purge", "--older-than", "99999999999999999999w"], "is more than ten years"),  # OverflowError
        (["jobs", "list", "--limit", "abc"], "--limit: 'abc': invalid literal"),  # "invalid _limit_arg value"
        (["serve", "--allowed-hosts", "jobs.example,http://x"], "--allowed-hosts 'jobs.example,http://x' is invalid"),
        (["jobs", "list", "--limit=0"], "--limit: '0': must be between 1 and 500"),
        # `call --url`: these ended as `OverflowError: connect(): port must be 0-65535.` and `UnsupportedProtocol`
        (["call", "echo", "--url", "http://127.0.0.1:99999/mcp"], "--url 'http://127.0.0.1:99999/mcp' is not a URL"),
        (["call", "echo", "--url", "localhost:8000/mcp"], "is not the URL of a server: give http(s)://HOST:PORT/mcp"),
        (["call", "echo", "--url", "http://u:Sup3rSecretPw@h:x/mcp"], "--url 'http://u:***@h:x/mcp' is not a URL"),
        (["call", "echo", "--url", "u:Sup3rSecretPw@h:80/mcp"], "--url 'u:***@h:80/mcp' is not the URL of a server"),
        (["call", "echo", "--json", "{'path': 1}"], "(--json OBJECT or --json-args) are not JSON: Expect"),
        (
            ["serve", "--tools", "../mytools"],
            "tools module '../mytools' is not a module name",
        ),  # a TypeError's traceback
    ],
)
def test_a_value_out_of_its_range_is_refused_naming_it(argv: list[str], says: str) -> None:
    assert says in refused(*argv)


def test_a_mistyped_store_url_is_refused_without_its_password() -> None:
    error = refused("jobs", "list", "--store", "postgressql://app:Sup3rSecretPw@db.internal/jobs")
    assert "unknown store URL" in error and "app:***@db.internal" in error, error
    assert "Sup3rSecretPw" not in error


def test_a_bug_in_a_tools_module_is_shown_where_it_is(tmp_path: Path) -> None:
    """The refusal of a path as a module name must not hide a tools module's own error as "cannot import" with no
    file or line (review helper-57)."""
    (tmp_path / "buggytools.py").write_text('import os\nLIMIT = int(os.environ.get("LIMIT", "ten"))\n')
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [*VIBE_JOBS, "serve", "--store", "memory://", "--tools", "buggytools"],
        capture_output=True, text=True, timeout=60, check=False, input="", env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert 'buggytools.py", line 2' in done.stderr and "invalid literal for int()" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (
            "from vibe_jobs import JobContext, plain_tool\n@plain_tool()\n"
            "async def slow(n: int, job: JobContext) -> str:\n"
            "    return 'x'\n",
            "tool slow: it takes a JobContext (job), so it is a job tool: declare it with @job_tool",
        ),
        (
            "from vibe_jobs import plain_tool\nclass Thing: ...\n@plain_tool()\nasync def odd(t: Thing) -> str:\n"
            "    return 'x'\n",
            "tool odd: Cannot generate a JsonSchema",
        ),
        (
            "from vibe_jobs import job_tool\nclass Thing: ...\n@job_tool()\nasync def odd(t: Thing) -> str:\n"
            "    return 'x'\n",
            "job tool odd: an argument's type has no JSON schema, so no caller could give it",
        ),
        (  # the control tool took the name silently: the server said it served a job tool 'list-jobs'
            "from vibe_jobs import job_tool\n@job_tool(name='list-jobs')\nasync def mine() -> str:\n    return 'x'\n",
            "job tool list-jobs: the name is one of the server's own tools; choose another",
        ),
        (  # a ValueError's traceback
            "from vibe_jobs import job_tool\n@job_tool(name='map-codebase')\nasync def mine() -> str:\n"
            "    return 'x'\n",
            "job tool map-codebase: a tool of that name is registered already (a built-in tool's: --no-builtin",
        ),
    ],
    ids=[
        "plain-tool-taking-a-job-context",
        "plain-tool-of-a-class",
        "job-tool-of-a-class",
        "own-name",
        "built-in-name",
    ],
)
def test_a_tool_declared_wrong_is_refused_at_start_naming_it(tmp_path: Path, source: str, says: str) -> None:
    """A @plain_tool taking a JobContext (meant as a job tool), or a tool with an argument no schema describes,
    stopped `serve` with pydantic's traceback (exit 1); it is an invalid setting: one line naming the tool, exit 2."""
    (tmp_path / "plaintools.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [*VIBE_JOBS, "serve", "--store", "memory://", "--tools", "plaintools"],
        capture_output=True, text=True, timeout=60, check=False, input="", env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


async def test_the_vibe_jobs_script_finds_a_tools_module_in_the_working_directory(tmp_path: Path) -> None:
    """README: a module of job tools next to you, `vibe-jobs serve --tools mymodule` registers it. The installed
    `vibe-jobs` script's import path starts at the script's own directory, not the working directory (as
    `python -m vibe_jobs` has it), so it answered "cannot import tools module 'mymodule'"."""
    script = Path(sys.executable).with_name("vibe-jobs")
    assert script.exists(), f"the console script is not installed at {script}"
    (tmp_path / "mymodule.py").write_text(
        "from vibe_jobs import job_tool\n\n"
        "@job_tool(description='Map a code base')\nasync def map_code(path: str) -> str:\n    return path\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "VIBE_JOBS_LOG_LEVEL": "warning"}  # no PYTHONPATH: as a user runs it
    params = StdioServerParameters(
        command=str(script), args=["serve", "--store", "memory://", "--tools", "mymodule"], env=env, cwd=str(tmp_path)
    )
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=60) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
        except Exception:
            errlog.seek(0)
            raise AssertionError(errlog.read()) from None
    assert "map_code" in tools


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"env": {"VIBE_JOBS_TOOLS": "nosuch_tools_mod"}}, "VIBE_JOBS_TOOLS"),
        ({"argv": ["--tools", "nosuch_tools_mod"]}, "--tools"),
        ({"argv": ["--tools=nosuch_tools_mod"]}, "--tools"),
        ({"env": {"VIBE_JOBS_TOOLS": " ../mytools "}}, "VIBE_JOBS_TOOLS"),
    ],
)
def test_a_tools_module_that_cannot_be_loaded_stops_start_up_as_any_invalid_setting(
    given: dict[str, Any], named: str
) -> None:
    """README: an invalid value stops start-up with an error naming the variable and the value, and bad conditions
    at start-up are one line and exit code 2. An unknown module in VIBE_JOBS_TOOLS (or --tools) exited 1 with a
    line that named neither the variable nor the flag (review helper-111)."""
    env = {**os.environ, "VIBE_JOBS_LOG_LEVEL": "warning", **given.get("env", {})}
    done = subprocess.run(
        [*VIBE_JOBS, "serve", "--store", "memory://", *given.get("argv", [])],
        capture_output=True, text=True, timeout=60, check=False, input="", env=env,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"vibe-jobs: {named}: "), done.stderr
    assert "tools_mod" in lines[0] or "../mytools" in lines[0], done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["worker", "--store", "memory://"], "vibe-jobs: `worker` needs a shared store: --store postgresql://"),
        (
            ["serve", "--no-worker", "--store", "memory://"],
            "vibe-jobs: --no-worker (run_jobs=False) needs a shared store",
        ),
    ],
)
def test_a_store_a_command_cannot_run_on_is_one_line_and_exit_2(argv: list[str], says: str) -> None:
    """README: bad conditions give one clear line and exit code 2 at start-up; these exited 1 (review helper-111)."""
    done = subprocess.run([*VIBE_JOBS, *argv], capture_output=True, text=True, timeout=60, check=False, input="")
    assert done.returncode == 2 and done.stderr.strip().startswith(says), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == "", done.stderr


@pytest.mark.parametrize("port", ["99999", "abc", "0"])
@pytest.mark.parametrize("command", ["serve", "worker", "jobs list", "health"])
def test_a_postgresql_url_whose_port_is_no_port_is_one_line_naming_it(command: str, port: str) -> None:
    """`serve --store postgresql://...:99999/db` (or `:abc`) ended in asyncpg's traceback when it connected
    (OverflowError, ValueError); `jobs` printed `vibe-jobs: OverflowError: connect(): port must be 0-65535.`"""
    url = f"postgresql://app:Sup3rSecretPw@127.0.0.1:{port}/test"
    done = subprocess.run(
        [*VIBE_JOBS, *command.split(), "--store", url],
        capture_output=True, text=True, timeout=60, check=False, input="",
        env={**os.environ, "VIBE_JOBS_LOG_LEVEL": "warning"},
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert f"port '{port}' is not a port number (1 to 65535" in lines[0], done.stderr
    assert "Sup3rSecretPw" not in done.stderr and "app:***@127.0.0.1" in done.stderr, done.stderr


@pytest.mark.parametrize("start", ["Sup3rSecretPw/", "/", "123/", "/a?b#"])
@pytest.mark.parametrize("command", ["serve", "jobs list"])
def test_a_postgresql_url_whose_password_holds_a_slash_is_refused_without_showing_it(command: str, start: str) -> None:
    """A password holding '/' (base64) unescaped: urlsplit reads its start as the port, which the refusal quoted
    ("the store URL's port 'Sup3rSecretPw' is not a port number"); a password starting with '/' or digits and '/'
    read as a port (none, or the digits) with the host `app`: the connection's failure showed the whole URL
    ("cannot open the job store at postgresql://app:/Sup3rSecretPw...: Name or service not known")."""
    url = f"postgresql://app:{start}Sup3rSecretPw+y=@127.0.0.1:5432/test"
    error = refused(*command.split(), "--store", url)
    assert "a password holding '/'" in error and "'postgresql://app:***@127.0.0.1:5432/test'" in error, error
    assert "Sup3rSecretPw" not in error, error


def test_call_to_a_url_where_no_server_listens_names_the_url() -> None:
    """`call --url` where nothing listens said only `ConnectError: All connection attempts failed`."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # free once closed: nothing listens there
    url = f"http://app:Sup3rSecretPw@127.0.0.1:{port}/mcp"
    error = refused("call", "echo", "--url", url)
    said = f"vibe-jobs: no server answers at http://app:***@127.0.0.1:{port}/mcp (is it running"
    assert error.startswith(said), error
    assert "Sup3rSecretPw" not in error


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "purge", "--older-than", "-1d"],
        ["jobs", "list", "--limit", "-1e3"],
        ["worker", "--concurrency", "-1e3"],
        ["worker", "--drain-seconds", "-inf"],
        ["serve", "--port", "-1e3"],
        ["proxy", "--port", "-1e3"],
        ["dashboard", "--port", "-1e3"],
        ["call", "echo", "--timeout", "-inf"],
        ["health", "--timeout", "-1.5e1"],
    ],
)
def test_a_negative_looking_value_after_its_flag_is_refused_as_the_flag_says(argv: list[str]) -> None:
    """`jobs purge --older-than -1d` said only argparse's "expected one argument": a word that starts with '-' and
    is not a plain negative number (-1d, -inf, -1e3) was taken for an option. Given as the flag's next word it is
    the flag's value, refused by the flag's own rule exactly as `--older-than=-1d` is: exit 2, naming both."""
    *head, flag, value = argv
    spaced = subprocess.run([*VIBE_JOBS, *argv], capture_output=True, text=True, timeout=60, check=False, input="")
    joined = subprocess.run(
        [*VIBE_JOBS, *head, f"{flag}={value}"], capture_output=True, text=True, timeout=60, check=False, input=""
    )
    assert spaced.returncode == joined.returncode == 2, (spaced.stderr, joined.stderr)
    assert spaced.stderr == joined.stderr, spaced.stderr
    assert flag in spaced.stderr and repr(value) in spaced.stderr, spaced.stderr


@pytest.mark.parametrize("number", ["-1", "-1.5", "-.5"])
def test_a_plain_negative_number_after_a_valueless_flag_stays_a_positional(number: str, tmp_path: Path) -> None:
    """argparse reads a plain negative number as a value itself: after `--json` (which takes none) it is the job id
    it was, not joined to `--json` ("ignored explicit argument")."""
    store = ["--store", f"sqlite:///{tmp_path / 'none.db'}"]
    after = subprocess.run([*VIBE_JOBS, "jobs", "show", "--json", number, *store], capture_output=True, text=True)
    before = subprocess.run([*VIBE_JOBS, "jobs", "show", number, "--json", *store], capture_output=True, text=True)
    assert (after.returncode, after.stderr) == (before.returncode, before.stderr), after.stderr
    assert "ignored explicit argument" not in after.stderr


def test_a_negative_age_to_purge_is_refused_as_negative() -> None:
    error = refused("jobs", "purge", "--store", "memory://", "--older-than", "-1d")
    assert "argument --older-than: not a duration: '-1d' is negative" in error, error
