"""Tests for the process-running logic behind the `run-command` tool: allowlist, environment, containment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from tests.process_groups import live_members

from vibe_jobs.errors import ConfigError
from vibe_jobs.tools.allowlist import Allowlist, CommandRefused, parse_names
from vibe_jobs.tools.command import CommandFailedToStart, CommandOutcome, _Stream, kill_leftovers, run_process
from vibe_jobs.tools.contain import MARKER, own_cgroup
from vibe_jobs.tools.peakmem import status_kib

PY = sys.executable
# Starts a background grandchild, prints the group id (the shell's pid), then waits.
GROUP_SCRIPT = "sleep 30 & echo $$; sleep 30"
# A grandchild in its own session (out of the shell's group), its pid printed: a daemonising helper.
ESCAPE_SCRIPT = "setsid sleep 30 & echo $!; sleep 30"
CONTAINMENTS = [
    pytest.param(True, id="cgroup", marks=pytest.mark.skipif(own_cgroup() is None, reason="no writable cgroup v2")),
    pytest.param(False, id="process"),
]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cgroup_left(record: dict[str, Any]) -> bool:
    return "cgroup" in record and os.path.exists(record["cgroup"])


async def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


# --- the allowlist ------------------------------------------------------------------------------------


def executable(path: Path, body: str = "exit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def bins(tmp_path: Path) -> Iterator[Path]:
    yield executable(tmp_path / "bin" / "tool").parent


def test_parse_names() -> None:
    assert parse_names(" git, make ,,pytest ") == ("git", "make", "pytest")
    assert parse_names(None) == parse_names("") == ()


def test_programs_are_resolved_once_at_start_up(tmp_path: Path, bins: Path) -> None:
    root = tmp_path / "root"
    executable(root / "scripts" / "build.sh")
    allowlist = Allowlist.build(
        "tool,./scripts/build.sh,missing", None, root=root, environ={"PATH": f"{tmp_path / 'empty'}:{bins}"}
    )
    assert allowlist.programs == {
        "tool": str(bins / "tool"),
        "./scripts/build.sh": str(root / "scripts" / "build.sh"),
        "missing": None,
    }
    assert allowlist.executable(["tool", "-x"]) == str(bins / "tool")
    with pytest.raises(CommandRefused, match="'missing' is allowed but was not found when the server started"):
        allowlist.executable(["missing"])


def test_what_the_allowlist_refuses(tmp_path: Path, bins: Path) -> None:
    allowlist = Allowlist.build("tool", None, root=tmp_path, environ={"PATH": str(bins)})
    with pytest.raises(CommandRefused, match="empty"):
        allowlist.executable([])
    with pytest.raises(CommandRefused, match=r"'rm' is not allowed \(allowed: tool\).*VIBE_JOBS_ALLOWED_COMMANDS"):
        allowlist.executable(["rm", "-rf", "/"])
    with pytest.raises(CommandRefused, match="not allowed"):
        allowlist.executable([str(bins / "tool")])  # the path of an allowed name is not the name
    with pytest.raises(CommandRefused, match="NUL"):
        allowlist.executable(["tool", "a\0b"])
    with pytest.raises(CommandRefused, match="lone surrogate"):
        allowlist.executable(["tool", "a\ud800b"])
    assert allowlist.executable(["tool", "\udcff"])  # an escaped byte of a non-UTF-8 name is a fine argument


def test_the_child_env_is_minimal_plus_allowed_names(tmp_path: Path) -> None:
    server = {"PATH": "/usr/bin", "HOME": "/home/s", "LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "s3cret"}
    allowlist = Allowlist.build("tool", "CI,GOFLAGS", root=tmp_path, environ=server)
    assert allowlist.child_env({"CI": "1"}, tmp_path) == {
        "PATH": "/usr/bin", "HOME": "/home/s", "LANG": "C.UTF-8", "PWD": str(tmp_path), "CI": "1",
    }  # fmt: skip
    with pytest.raises(CommandRefused) as refused:
        allowlist.child_env({"PATH": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so", "CI": "1"}, tmp_path)
    message = str(refused.value)
    assert message.startswith("env names not allowed: LD_PRELOAD, PATH;")
    assert "VIBE_JOBS_COMMAND_ENV" in message and "(now: CI, GOFLAGS)" in message
    assert "/tmp/evil" not in message, "values are never shown"
    with pytest.raises(CommandRefused, match="env value of CI contains a NUL"):
        allowlist.child_env({"CI": "a\0b"}, tmp_path)
    with pytest.raises(CommandRefused, match="env value of CI contains a NUL character or a lone surrogate"):
        allowlist.child_env({"CI": "\ud800"}, tmp_path)
    with pytest.raises(ConfigError, match="VIBE_JOBS_COMMAND_ENV"):
        Allowlist.build("tool", "OK,BAD=NAME", root=tmp_path, environ=server)


# --- running ------------------------------------------------------------------------------------------


async def test_empty_argv_refused_by_runner(tmp_path: Path) -> None:
    with pytest.raises(CommandRefused):
        await run_process([], cwd=tmp_path)


async def test_success_and_to_dict(tmp_path: Path) -> None:
    outcome = await run_process(["printf", "%s\\n", "hello"], cwd=tmp_path)
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (0, None, False)
    assert outcome.stdout_tail == "hello\n"
    assert outcome.to_dict() == {
        "exitCode": 0,
        "stdoutTail": "hello\n",
        "stderrTail": "",
        "stdoutTruncated": False,
        "stderrTruncated": False,
        "durationMs": outcome.duration_ms,
        "cpuSeconds": outcome.cpu_seconds,
        "peakMemoryMB": outcome.peak_memory_mb,
        "timedOut": False,
        "signal": None,
    }


async def test_nonzero_exit_and_stderr(tmp_path: Path) -> None:
    outcome = await run_process(["sh", "-c", "echo oops >&2; exit 3"], cwd=tmp_path)
    assert outcome.exit_code == 3
    assert outcome.stderr_tail == "oops\n"
    assert outcome.stdout_tail == ""


async def test_on_lines_in_order_sync_and_async(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    async def on_lines(stream: str, lines: list[str]) -> None:
        seen.extend((stream, line) for line in lines)

    script = "printf 'a\\nb\\r\\n'; printf 'e\\n' >&2; printf 'c\\r'"
    await run_process(["sh", "-c", script], cwd=tmp_path, on_lines=on_lines)
    assert [line for stream, line in seen if stream == "stdout"] == ["a", "b", "c"]
    assert [line for stream, line in seen if stream == "stderr"] == ["e"]
    plain: list[str] = []
    await run_process(["printf", "x\\ny\\n"], cwd=tmp_path, on_lines=lambda _s, lines: plain.extend(lines))
    assert plain == ["x", "y"]


async def test_a_carriage_return_ends_a_line_and_a_crlf_split_across_reads_ends_one(tmp_path: Path) -> None:
    """Progress redrawn with `\\r` is a line per redraw; a CRLF cut between two reads is one line end, not two."""
    seen: list[str] = []
    stream = _Stream("stdout", 1024, lambda _s, lines: seen.extend(lines))
    for chunk in (b"one\r", b"\ntwo\r", b"three\r", b"\r\n", b"four\rfive"):
        await stream.feed(chunk)
    assert seen == ["one", "two", "three", "", "four"]
    await stream.feed(b"", final=True)
    assert seen == ["one", "two", "three", "", "four", "five"]
    assert stream.text() == "one\r\ntwo\rthree\r\r\nfour\rfive"


async def test_a_lone_line_feed_completing_a_split_crlf_leaves_the_next_line_feed_a_line_end(tmp_path: Path) -> None:
    """A read of just the LF of a CR|LF split across reads completed that CRLF but left the stream thinking the
    text still ended with a CR: the next read's LF was swallowed too, and an empty line lost."""
    seen: list[str] = []
    stream = _Stream("stdout", 1024, lambda _s, lines: seen.extend(lines))
    for chunk in (b"one\r", b"\n", b"\n", b"two\n"):
        await stream.feed(chunk)
    assert seen == ["one", "", "two"]


async def test_a_flood_of_lines_arrives_a_read_at_a_time_every_line_in_order(tmp_path: Path) -> None:
    """`yes` wrote 32,768 lines per 64 KiB read and each went through a Python call on the event loop (other
    clients waited 0.3-1.8 s): now the lines of a read come in one call, none lost, none reordered."""
    batches: list[int] = []
    seen: list[str] = []

    def on_lines(_stream: str, lines: list[str]) -> None:
        batches.append(len(lines))
        seen.extend(lines)

    await run_process(["seq", "200000"], cwd=tmp_path, on_lines=on_lines)
    assert seen == [str(n) for n in range(1, 200_001)]
    assert len(batches) <= 1_288_895 // 1024, f"{len(batches)} calls for 1.3 MB of output"  # seq writes 4 KiB


async def test_tail_is_bounded_and_flagged(tmp_path: Path) -> None:
    code = "for i in range(20000): print(f'line {i}')"
    outcome = await run_process([PY, "-c", code], cwd=tmp_path, tail_bytes=1000)
    assert outcome.stdout_truncated and not outcome.stderr_truncated
    assert len(outcome.stdout_tail.encode()) <= 1000
    assert outcome.stdout_tail.endswith("line 19999\n")


async def test_env_is_the_whole_environment(tmp_path: Path) -> None:
    outcome = await run_process(["/usr/bin/env"], cwd=tmp_path, env={"ONLY": "this", "PATH": "/usr/bin:/bin"})
    seen = dict(line.split("=", 1) for line in outcome.stdout_tail.splitlines())
    assert seen.pop(MARKER)  # the run's marker (contain.py)
    assert seen == {"ONLY": "this", "PATH": "/usr/bin:/bin"}


async def test_the_default_env_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    outcome = await run_process(["/usr/bin/env"], cwd=tmp_path)
    names = {line.split("=", 1)[0] for line in outcome.stdout_tail.splitlines()}
    assert names <= {"PATH", "HOME", "LANG", "TERM", MARKER} and "PATH" in names


async def test_the_given_executable_runs_whatever_argv0_says(tmp_path: Path) -> None:
    outcome = await run_process(["shown-name", "-c", 'echo "ran as $0"'], cwd=tmp_path, executable="/bin/sh")
    assert outcome.stdout_tail == "ran as shown-name\n"


async def test_cwd_is_honoured(tmp_path: Path) -> None:
    real = await anyio.Path(tmp_path).resolve()
    outcome = await run_process([PY, "-c", "import os; print(os.getcwd())"], cwd=tmp_path)
    assert outcome.stdout_tail.strip() == str(real)
    shell = await run_process(["sh", "-c", "pwd"], cwd=tmp_path)
    assert await anyio.Path(shell.stdout_tail.strip()).resolve() == real


async def test_missing_program_fails_to_start(tmp_path: Path) -> None:
    with pytest.raises(CommandFailedToStart, match=r"'vibe-jobs-no-such-program'.*PATH"):
        await run_process(["vibe-jobs-no-such-program"], cwd=tmp_path)
    with pytest.raises(CommandFailedToStart, match=r"'\./missing\.sh'"):
        await run_process(["./missing.sh"], cwd=tmp_path)
    with pytest.raises(CommandFailedToStart, match="No such file or directory"):
        await run_process(["true"], cwd=tmp_path / "absent")


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    groups: dict[int, list[int]] = {}

    def on_lines(_stream: str, lines: list[str]) -> None:
        groups.update((int(line), live_members(int(line))) for line in lines)

    outcome = await run_process(["sh", "-c", GROUP_SCRIPT], cwd=tmp_path, timeout=0.5, grace=1.0, on_lines=on_lines)
    assert outcome.timed_out and outcome.signal == signal.SIGTERM and outcome.exit_code is None
    ((pgid, members),) = groups.items()
    assert len(members) >= 2, "the shell and its background sleep were running"
    assert live_members(pgid) == []


@pytest.mark.parametrize("prefix", ["", "trap '' TERM; "], ids=["plain", "ignores-term"])
async def test_cancellation_kills_the_whole_group(tmp_path: Path, prefix: str) -> None:
    pgids: list[int] = []
    with anyio.CancelScope() as scope:

        def on_lines(_stream: str, lines: list[str]) -> None:
            pgids.extend(map(int, lines))
            scope.cancel()

        await run_process(["sh", "-c", prefix + GROUP_SCRIPT], cwd=tmp_path, grace=0.3, on_lines=on_lines)
    assert scope.cancelled_caught
    assert live_members(pgids[0]) == []


async def test_asyncio_task_cancel_kills_the_group_and_propagates(tmp_path: Path) -> None:
    pgids: list[int] = []
    ready = asyncio.Event()

    def on_lines(_stream: str, lines: list[str]) -> None:
        pgids.extend(map(int, lines))
        ready.set()

    task = asyncio.create_task(run_process(["sh", "-c", GROUP_SCRIPT], cwd=tmp_path, on_lines=on_lines))
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_members(pgids[0]) == []


async def test_term_ignored_is_killed_after_grace(tmp_path: Path) -> None:
    pgids: list[int] = []
    script = f"trap '' TERM; {GROUP_SCRIPT}"
    outcome = await run_process(
        ["sh", "-c", script],
        cwd=tmp_path,
        timeout=0.5,
        grace=0.3,
        on_lines=lambda _s, lines: pgids.extend(map(int, lines)),
    )
    assert outcome.timed_out and outcome.signal == signal.SIGKILL
    assert outcome.duration_ms >= 800
    assert live_members(pgids[0]) == []


async def test_leftover_background_processes_are_cleaned_up(tmp_path: Path) -> None:
    outcome = await run_process(["sh", "-c", "sleep 30 & echo $$"], cwd=tmp_path, grace=0.3)
    assert (outcome.exit_code, outcome.timed_out) == (0, False)
    assert live_members(int(outcome.stdout_tail)) == []


async def test_cpu_seconds_are_per_child(tmp_path: Path) -> None:
    burn = "import time\nwhile time.process_time() < 0.25: pass"
    results: dict[str, CommandOutcome] = {}

    async def run(name: str, argv: list[str]) -> None:
        results[name] = await run_process(argv, cwd=tmp_path)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "burn", [PY, "-c", burn])
        tg.start_soon(run, "idle", ["sleep", "0.3"])
    assert results["burn"].cpu_seconds >= 0.2
    assert results["idle"].cpu_seconds < 0.1


def _own_hwm_mb() -> float:
    hwm = status_kib(os.getpid(), "VmHWM")
    assert hwm is not None
    return hwm / 1024


async def test_peak_memory_is_the_commands_not_the_servers(tmp_path: Path) -> None:
    # Linux starts a child's ru_maxrss at its parent's size: a small command must not report the server's
    ballast = bytearray(200 * 1024 * 1024)
    ballast[::4096] = b"x" * len(range(0, len(ballast), 4096))  # resident, not just reserved
    assert _own_hwm_mb() >= 200
    small = await run_process(["sh", "-c", "sleep 0.3"], cwd=tmp_path)
    code = "import time; data = b'x' * (50 * 1024 * 1024); time.sleep(1.5); print(len(data))"  # > a sample gap
    fifty = await run_process([PY, "-c", code], cwd=tmp_path)
    del ballast
    assert small.exit_code == 0 and fifty.exit_code == 0
    assert 0 < small.peak_memory_mb < 20, small.peak_memory_mb
    assert 50 <= fifty.peak_memory_mb < 120, fifty.peak_memory_mb


async def test_a_peak_above_the_servers_is_exact_even_when_the_command_ends_at_once(tmp_path: Path) -> None:
    # too short to be sampled: wait4's figure is above anything inherited, so it is the command's own
    size = int(_own_hwm_mb()) + 64
    code = f"data = b'x' * ({size} * 1024 * 1024)"
    outcome = await run_process([PY, "-c", code], cwd=tmp_path)
    assert outcome.exit_code == 0
    assert size <= outcome.peak_memory_mb < size + 60, (size, outcome.peak_memory_mb)


async def test_a_child_of_the_command_counts(tmp_path: Path) -> None:
    code = "import time; data = b'x' * (80 * 1024 * 1024); time.sleep(1.5)"  # longer than a sample gap
    outcome = await run_process(["sh", "-c", f'"{PY}" -c "{code}"; true'], cwd=tmp_path)
    assert outcome.exit_code == 0
    assert 80 <= outcome.peak_memory_mb < 160, outcome.peak_memory_mb


async def test_works_without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(_pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    outcome = await run_process(["sh", "-c", "echo hi; exit 4"], cwd=tmp_path)
    assert (outcome.exit_code, outcome.stdout_tail) == (4, "hi\n")


# --- containment: nothing a command starts outlives it ------------------------------------------------


@pytest.mark.parametrize("cgroups", CONTAINMENTS)
async def test_a_grandchild_in_its_own_session_ends_at_the_time_out(tmp_path: Path, cgroups: bool) -> None:
    escaped: list[int] = []
    outcome = await run_process(
        ["sh", "-c", ESCAPE_SCRIPT], cwd=tmp_path, timeout=0.5, grace=0.5, cgroups=cgroups,
        on_lines=lambda _s, lines: escaped.extend(map(int, lines)),
    )  # fmt: skip
    assert outcome.timed_out
    assert not alive(escaped[0]), "the setsid grandchild survived the time-out"


@pytest.mark.parametrize("cgroups", CONTAINMENTS)
async def test_a_grandchild_in_its_own_session_ends_at_cancellation(tmp_path: Path, cgroups: bool) -> None:
    escaped: list[int] = []
    with anyio.CancelScope() as scope:

        def on_lines(_stream: str, lines: list[str]) -> None:
            escaped.extend(map(int, lines))
            scope.cancel()

        await run_process(["sh", "-c", ESCAPE_SCRIPT], cwd=tmp_path, grace=0.5, cgroups=cgroups, on_lines=on_lines)
    assert scope.cancelled_caught
    assert not alive(escaped[0]), "the setsid grandchild survived the cancellation"


@pytest.mark.parametrize("cgroups", CONTAINMENTS)
async def test_what_a_finished_command_left_running_is_ended(tmp_path: Path, cgroups: bool) -> None:
    records: list[dict[str, Any]] = []

    async def started(record: dict[str, Any]) -> None:
        records.append(record)

    script = "setsid sleep 30 & echo $!"
    outcome = await run_process(["sh", "-c", script], cwd=tmp_path, grace=0.3, cgroups=cgroups, on_start=started)
    assert outcome.exit_code == 0
    assert not alive(int(outcome.stdout_tail))
    ((record,),) = [records]
    assert ("cgroup" in record) is cgroups
    assert not cgroup_left(record), "the run's cgroup is removed"


# A server in a subprocess that runs one command and says its record; the test SIGKILLs it.
CRASHING_SERVER = """
import json, sys
from pathlib import Path
import anyio
from vibe_jobs.tools.command import run_process

async def main() -> None:
    async def started(record):
        print(json.dumps(record), flush=True)

    def lines(stream, texts):
        print(*texts, sep="\\n", flush=True)

    await run_process(["sh", "-c", sys.argv[1]], cwd=Path("."), on_start=started, on_lines=lines,
                      cgroups=sys.argv[2] == "1")

anyio.run(main)
"""


@pytest.mark.parametrize("cgroups", CONTAINMENTS)
async def test_after_a_crash_the_command_dies_and_recovery_ends_the_rest(tmp_path: Path, cgroups: bool) -> None:
    argv = [PY, "-c", CRASHING_SERVER, ESCAPE_SCRIPT, "1" if cgroups else "0"]
    async with await anyio.open_process(argv, cwd=tmp_path, stderr=None) as server:
        assert server.stdout is not None
        lines = BufferedByteReceiveStream(server.stdout)
        record = json.loads(await lines.receive_until(b"\n", 65536))
        grandchild = int(await lines.receive_until(b"\n", 65536))
        server.send_signal(signal.SIGKILL)
        await server.wait()
    assert await gone(record["pid"]), "the command's own process outlived the server (parent-death signal)"
    assert alive(grandchild), "the grandchild waits for recovery"
    assert await kill_leftovers({"process": record}) >= 1
    assert await gone(grandchild)
    assert not cgroup_left(record)
    assert await kill_leftovers({"process": record}) == 0, "nothing is left the second time"


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {},
        {"process": "not a record"},
        {"process": {"cgroup": "/etc", "marker": "0" * 32, "boot": "x"}},
        {"process": {"cgroup": "/sys/fs/cgroup/../../etc", "pid": 1, "started": 0, "marker": "bad"}},
        {"process": {"pid": os.getpid(), "started": 1, "marker": "0" * 32, "boot": "another boot"}},
    ],
)
async def test_a_record_that_is_not_ours_ends_nothing(metadata: dict[str, Any] | None) -> None:
    assert await kill_leftovers(metadata) == 0
