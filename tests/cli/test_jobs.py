"""`vibe-jobs jobs ...` run in-process against a SQLite store filled through the JobManager."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from vibe_jobs.cli import main
from vibe_jobs.cli.jobs import format_age, format_table, jobs_table, parse_duration
from vibe_jobs.manager import JobManager
from vibe_jobs.models import Job
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import open_store

HAVE_SQLITE = importlib.util.find_spec("vibe_jobs.store.sqlite") is not None
HOUR = 3600.0


@dataclass
class Filled:
    url: str
    pending: str
    running: str
    failed: str
    old_done: str


# -- pure parts (no store) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("250ms", 0.25),
        ("5", 5),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "x", "10y", "-5s", "1 2s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ms", "text"), [(-5, "0s"), (999, "0s"), (42_000, "42s"), (600_000, "10m"), (7_200_000, "2h")]
)
def test_format_age(ms: int, text: str) -> None:
    assert format_age(ms) == text


def test_format_table_aligns_columns() -> None:
    table = format_table(("A", "LONG HEADER", "C"), [["xxxx", "y", "last"], ["z", "w", ""]])
    lines = table.splitlines()
    assert lines[0] == "A     LONG HEADER  C"
    assert lines[1] == "xxxx  y            last"
    assert lines[2] == "z     w"  # trailing padding stripped


def test_jobs_table_shortens_long_messages() -> None:
    job = Job(id="j1", tool_name="t", params={}, status=JobStatus.RUNNING, created_at=0, updated_at=0,
              progress_message="word " * 40, progress_percentage=42.4)  # fmt: skip
    row = jobs_table([job], 61_000).splitlines()[1]
    assert row.split()[:5] == ["j1", "t", "running", "42%", "1m"]
    assert row.endswith("…") and len(row) < 120


def test_memory_store_lists_no_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list", "--store", "memory://", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"jobs": [], "more": False}


def test_bad_store_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "stats", "--store", "bogus://x"]) == 1
    err = capsys.readouterr().err
    assert "unknown store URL" in err and "Traceback" not in err


def test_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["jobs", "purge", "--store", "memory://", "--older-than", "soon"])
    assert exc.value.code == 2
    assert "not a duration" in capsys.readouterr().err


# -- against a filled SQLite store ---------------------------------------------------------


async def _fill(url: str) -> Filled:
    now = [time.time() - 0.1]  # a little in the past: "older than 0s" must include every finished job
    store = open_store(url)
    await store.open()
    try:
        m = JobManager(store, Settings(), clock=lambda: now[0], owner="another-server")
        now[0] -= 2 * HOUR
        old_done = await m.create_job("echo", {"text": "old"})
        await m.update_job_status(old_done, JobStatus.RUNNING)
        await m.set_job_result(old_done, {"content": [{"type": "text", "text": "old result"}]})
        now[0] += 2 * HOUR
        pending = await m.create_job("sleepy", {"seconds": 1})
        now[0] += 0.01  # distinct creation times give a fixed newest-first order
        running = await m.create_job("sleepy", {"seconds": 9})
        await m.update_job_status(running, JobStatus.RUNNING)
        await m.update_progress(running, 40, "step 2 of 5", stage="sleep")
        now[0] += 0.01
        failed = await m.create_job("explode", {"message": "boom"})
        await m.update_job_status(failed, JobStatus.RUNNING)
        await m.add_diagnostic(failed, "about to explode")
        await m.fail_job(failed, "ValueError: boom")
    finally:
        await store.close()
    return Filled(url, pending, running, failed, old_done)


@pytest.fixture
def filled(tmp_path: Path) -> Filled:
    if not HAVE_SQLITE:
        pytest.skip("the SQLite store (vibe_jobs.store.sqlite) is not there yet")
    return anyio.run(_fill, f"sqlite:///{tmp_path / 'jobs.db'}")


def run(filled: Filled, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    sub, rest = argv[0], argv[1:]
    code = main(["jobs", sub, "--store", filled.url, *rest])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(filled: Filled, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, _ = run(filled, capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


def test_list_table(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(filled, capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TOOL", "STATUS", "PROGRESS", "AGE", "MESSAGE"]
    assert [line.split()[0] for line in lines[1:]] == [filled.failed, filled.running, filled.pending, filled.old_done]
    running = next(line for line in lines if line.startswith(filled.running))
    assert running.split()[1:4] == ["sleepy", "running", "40%"] and running.endswith("step 2 of 5")
    assert re.fullmatch(r"\d{1,2}s", running.split()[4])  # made seconds ago (0s unless the machine is slow)
    assert lines[-1].split()[4] == "2h"


def test_list_filters_and_json(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(filled, capsys, "list", "--tool", "sleepy", "--status", "pending")
    assert [j["id"] for j in data["jobs"]] == [filled.pending]
    assert data["jobs"][0]["toolName"] == "sleepy" and data["more"] is False
    data = run_json(filled, capsys, "list", "--limit", "1")
    assert len(data["jobs"]) == 1 and data["more"] is True


@pytest.mark.parametrize("sub", ["list", "stats"])
def test_store_and_json_may_come_before_the_subcommand(
    filled: Filled, capsys: pytest.CaptureFixture[str], sub: str
) -> None:
    assert main(["jobs", sub, "--store", filled.url, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert main(["jobs", "--store", filled.url, "--json", sub]) == 0
    assert json.loads(capsys.readouterr().out) == after
    assert main(["jobs", "--json", sub, "--store", filled.url]) == 0
    assert json.loads(capsys.readouterr().out) == after


def test_show_human_and_json(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(filled, capsys, "show", filled.failed)
    assert code == 0
    assert "status:    failed" in out and "about to explode" in out and "ValueError: boom" in out
    data = run_json(filled, capsys, "show", filled.running)
    assert data["status"] == "running" and data["progressPercentage"] == 40
    assert data["details"]["currentStage"] == "sleep"


def test_unknown_id_is_a_clear_error(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("show", "cancel"):
        code, out, err = run(filled, capsys, sub, "no-such-job")
        assert (code, out) == (1, "")
        assert "No job with id 'no-such-job'" in err and "Traceback" not in err


def test_cancel_pending_job(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(filled, capsys, "cancel", filled.pending, "--reason", "not needed")
    assert data["status"] == "cancelled" and data["cancelRequested"] == "not needed"
    shown = run_json(filled, capsys, "show", filled.pending)
    assert shown["status"] == "cancelled" and "not needed" in shown["progressMessage"]


def test_cancel_job_running_elsewhere_requests_it(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(filled, capsys, "cancel", filled.running)
    assert code == 0 and "cancel requested" in out
    assert run_json(filled, capsys, "show", filled.running)["status"] == "running"

    async def cancel_requested() -> str | None:
        store = open_store(filled.url)
        await store.open()
        try:
            rec = await store.get(filled.running)
            return rec.cancel_requested if rec else None
        finally:
            await store.close()

    assert anyio.run(cancel_requested) == "cancelled from the command line"


def test_cancel_finished_job_fails(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(filled, capsys, "cancel", filled.failed)
    assert code == 1 and "the job is finished" in err


def test_stats(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(filled, capsys, "stats")
    assert code == 0
    rows = dict(line.split() for line in out.splitlines()[1:])
    assert rows == {"pending": "1", "running": "1", "completed": "1", "failed": "1", "cancelled": "0", "total": "4"}
    data = run_json(filled, capsys, "stats")
    assert data["counts"]["failed"] == 1 and data["total"] == 4 and data["queueDepth"] == 1


def test_purge_deletes_only_old_finished_jobs(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(filled, capsys, "purge", "--older-than", "1h") == {"deleted": 1}
    remaining = {j["id"] for j in run_json(filled, capsys, "list")["jobs"]}
    assert remaining == {filled.pending, filled.running, filled.failed}
    code, out, _ = run(filled, capsys, "purge", "--older-than", "0s")
    assert code == 0 and out.strip() == "deleted 1 finished job"
    remaining = {j["id"] for j in run_json(filled, capsys, "list")["jobs"]}
    assert remaining == {filled.pending, filled.running}


async def _with_secrets(url: str) -> str:
    async with JobManager(open_store(url), Settings()) as m:
        return await m.create_job("deploy", {"name": "web", "api_key": "TOPSECRET", "env": {"DB_PASS": "ENVSECRET"}})


def test_json_output_hides_secrets_as_the_text_does(tmp_path: Path) -> None:
    """`jobs show` masked secret-named arguments and env values; `--json` (list and show) printed them."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job_id = anyio.run(_with_secrets, url)
    base = [sys.executable, "-m", "vibe_jobs", "jobs"]
    outputs = []
    for argv in (["list", "--json"], ["show", job_id, "--json"], ["show", job_id], ["list"]):
        done = subprocess.run([*base, *argv, "--store", url], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    shown = json.loads(outputs[1])["params"]
    assert shown == {"name": "web", "api_key": "***", "env": {"DB_PASS": "***"}}
    assert json.loads(outputs[0])["jobs"][0]["params"] == shown
    for out in outputs:
        assert "TOPSECRET" not in out and "ENVSECRET" not in out


async def _many(url: str, n: int) -> None:
    async with JobManager(open_store(url), Settings()) as m:
        for i in range(n):
            await m.create_job("noop", {"i": i})


def test_stats_on_a_damaged_store_is_an_error_not_zeros(tmp_path: Path) -> None:
    """`jobs stats` printed every count as 0 and exit status 0 for a damaged file (list and purge said why)."""
    db = tmp_path / "jobs.db"
    anyio.run(_many, f"sqlite:///{db}", 300)
    data = bytearray(db.read_bytes())
    data[24576 : 24576 + 8192] = b"\xaa" * 8192  # two pages the counts read (the file opens: its first page is whole)
    db.write_bytes(bytes(data))
    cmd = [sys.executable, "-m", "vibe_jobs", "jobs", "stats", "--store", f"sqlite:///{db}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "corrupt" in done.stderr and done.stdout == "", done.stderr


def test_the_store_flag_wins_over_a_bad_store_variable(tmp_path: Path) -> None:
    """`VIBE_JOBS_STORE=bogus jobs list --store sqlite:///...` failed on the variable the flag replaces."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    anyio.run(_many, url, 1)
    env = {**os.environ, "VIBE_JOBS_STORE": "bogus"}
    cmd = [sys.executable, "-m", "vibe_jobs", "jobs", "list", "--json"]
    flagged = subprocess.run([*cmd, "--store", url], env=env, capture_output=True, text=True, timeout=60)
    assert flagged.returncode == 0 and len(json.loads(flagged.stdout)["jobs"]) == 1, flagged.stderr
    # README: `--store` may come before the subcommand too; there the bad variable still failed it (helper-111)
    before = [sys.executable, "-m", "vibe_jobs", "jobs", "--store", url, "list", "--json"]
    flagged = subprocess.run(before, env=env, capture_output=True, text=True, timeout=60)
    assert flagged.returncode == 0 and len(json.loads(flagged.stdout)["jobs"]) == 1, flagged.stderr
    alone = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 2 and "VIBE_JOBS_STORE='bogus' is invalid" in alone.stderr, alone.stderr


def test_the_store_flag_is_read_as_the_variable_is_without_the_whitespace_around_it(tmp_path: Path) -> None:
    """VIBE_JOBS_STORE drops the spaces around its value; `--store` did not: `serve --store 'sqlite:///.../jobs.db '`
    made a file named `jobs.db ` and `jobs list --store ' sqlite:///...'` was an unknown store URL (review
    helper-111)."""
    path = tmp_path / "jobs.db"
    serve = [sys.executable, "-m", "vibe_jobs", "serve", "--store", f"sqlite:///{path} "]
    done = subprocess.run(serve, capture_output=True, text=True, timeout=60, input="", env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert path.exists() and not (tmp_path / "jobs.db ").exists()
    padded = f" sqlite:///{path}\t"
    for argv in (["jobs", "list", "--store", padded], ["jobs", "--store", padded, "list"]):
        listed = subprocess.run([sys.executable, "-m", "vibe_jobs", *argv], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "no jobs" in listed.stderr, listed.stderr


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mRED"  # set the window title, clear the screen, red


async def _with_escapes(url: str) -> str:
    async with JobManager(open_store(url), Settings()) as m:
        job_id = await m.create_job("run-command", {"command": "echo"})
        await m.update_job_status(job_id, JobStatus.RUNNING, message=f"working {ESCAPES}")
        await m.add_diagnostic(job_id, f"said {ESCAPES}")
        await m.set_job_result(job_id, {"content": [{"type": "text", "text": f"line one\nline {ESCAPES}"}]})
        running = await m.create_job("run-command", {"command": "echo"})  # `jobs list` shows its message
        await m.update_job_status(running, JobStatus.RUNNING, message=f"working {ESCAPES}")
        return job_id


def test_what_a_job_wrote_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """A job's message, diagnostics and result (what an agent's arguments can make a tool print) went to the
    operator's terminal raw: its escape sequences cleared the screen and set the window title (review helper-56)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job_id = anyio.run(_with_escapes, url)
    base = [sys.executable, "-m", "vibe_jobs", "jobs"]
    shown = {}
    for argv in (["show", job_id], ["list"]):
        done = subprocess.run([*base, *argv, "--store", url], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, done.stdout
        assert "\\x1b[2J" in done.stdout, done.stdout
        shown[argv[0]] = done.stdout
    assert "\n  line one\n" in shown["show"], shown["show"]  # the result's lines stay lines


async def _with_text(url: str, text: str) -> str:
    async with JobManager(open_store(url), Settings()) as m:
        job_id = await m.create_job("map-codebase", {"path": "src"})
        await m.update_job_status(job_id, JobStatus.RUNNING)
        await m.set_job_result(job_id, {"content": [{"type": "text", "text": text}]})
        return job_id


def test_a_job_s_text_reaches_a_terminal_whose_locale_cannot_hold_it_escaped(tmp_path: Path) -> None:
    """In a locale that cannot encode a job's text (LC_ALL=C with Python's UTF-8 mode off) `jobs show` printed
    only `vibe-jobs: UnicodeEncodeError: 'ascii' codec can't encode character ...` and exited 1."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job_id = anyio.run(_with_text, url, "def héllo() ✓")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0")
    cmd = [sys.executable, "-m", "vibe_jobs", "jobs", "show", job_id, "--store", url]
    done = subprocess.run(cmd, capture_output=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert b"  def h\\xe9llo() \\u2713\n" in done.stdout, done.stdout


@pytest.mark.parametrize("command", [["jobs", "show"], ["jobs", "cancel"], ["schedules", "pause"]])
def test_an_id_given_with_escape_sequences_is_echoed_escaped(tmp_path: Path, command: list[str]) -> None:
    """`jobs show ID` of an id pasted with a terminal's escape sequences in it wrote them raw to the terminal in
    `No job with id '...'` (clear the screen, set the window title)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    anyio.run(_many, url, 1)
    cmd = [sys.executable, "-m", "vibe_jobs", *command, f"x{ESCAPES}", "--store", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "with id 'x\\x1b]0;owned" in done.stderr, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr


@pytest.mark.parametrize("age", ["-0", "-0s", "-0.0d"])
def test_purge_refuses_a_minus_zero_age_and_deletes_nothing(
    filled: Filled, capsys: pytest.CaptureFixture[str], age: str
) -> None:
    """`--older-than -0` was refused (no duration had a sign); once a sign was read, for negative ages to be named
    as negative, -0 was 0 and purged every finished job: an age given with a minus sign is refused, whatever its
    number."""
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "purge", "--store", filled.url, "--older-than", age])
    assert exited.value.code == 2 and f"not a duration: {age!r} is negative" in capsys.readouterr().err
    assert len(run_json(filled, capsys, "list")["jobs"]) == 4
