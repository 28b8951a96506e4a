"""Tests for the process-running logic behind the `run-command` tool."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from vibe_jobs.tools.command import (
    CommandFailedToStart,
    CommandOutcome,
    CommandRefused,
    check_command,
    parse_allowed,
    run_process,
)

PY = sys.executable
# Starts a background grandchild, prints the group id (the shell's pid), then waits.
GROUP_SCRIPT = "sleep 30 & echo $$; sleep 30"


def live_members(pgid: int) -> list[int]:
    """Pids of non-zombie processes in group `pgid` (orphaned zombies may never be reaped here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def test_parse_allowed() -> None:
    assert parse_allowed(" git, make ,,pytest ") == frozenset({"git", "make", "pytest"})
    assert parse_allowed(None) == frozenset()
    assert parse_allowed("") == frozenset()


def test_check_command() -> None:
    allowed = frozenset({"git"})
    check_command(["git", "status"], allowed)
    with pytest.raises(CommandRefused, match="empty"):
        check_command([], allowed)
    with pytest.raises(CommandRefused, match=r"'rm' is not allowed.*VIBE_JOBS_ALLOWED_COMMANDS"):
        check_command(["rm", "-rf", "/"], allowed)
    with pytest.raises(CommandRefused, match="not allowed"):
        check_command(["/usr/bin/git"], allowed)


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


async def test_on_line_in_order_sync_and_async(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    async def on_line(stream: str, line: str) -> None:
        seen.append((stream, line))

    script = "printf 'a\\nb\\r\\n'; printf 'e\\n' >&2; printf 'c'"
    await run_process(["sh", "-c", script], cwd=tmp_path, on_line=on_line)
    assert [line for stream, line in seen if stream == "stdout"] == ["a", "b", "c"]
    assert [line for stream, line in seen if stream == "stderr"] == ["e"]
    plain: list[str] = []
    await run_process(["printf", "x\\ny\\n"], cwd=tmp_path, on_line=lambda _s, line: plain.append(line))
    assert plain == ["x", "y"]


async def test_tail_is_bounded_and_flagged(tmp_path: Path) -> None:
    code = "for i in range(20000): print(f'line {i}')"
    outcome = await run_process([PY, "-c", code], cwd=tmp_path, tail_bytes=1000)
    assert outcome.stdout_truncated and not outcome.stderr_truncated
    assert len(outcome.stdout_tail.encode()) <= 1000
    assert outcome.stdout_tail.endswith("line 19999\n")


async def test_env_is_merged(tmp_path: Path) -> None:
    script = 'printf "%s|%s" "$VJ_TEST_VALUE" "$PATH"'
    outcome = await run_process(["sh", "-c", script], cwd=tmp_path, env={"VJ_TEST_VALUE": "hello"})
    value, path = outcome.stdout_tail.split("|")
    assert value == "hello"
    assert path == os.environ["PATH"]


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

    def on_line(_stream: str, line: str) -> None:
        groups[int(line)] = live_members(int(line))

    outcome = await run_process(["sh", "-c", GROUP_SCRIPT], cwd=tmp_path, timeout=0.5, grace=1.0, on_line=on_line)
    assert outcome.timed_out and outcome.signal == signal.SIGTERM and outcome.exit_code is None
    ((pgid, members),) = groups.items()
    assert len(members) >= 2, "the shell and its background sleep were running"
    assert live_members(pgid) == []


@pytest.mark.parametrize("prefix", ["", "trap '' TERM; "], ids=["plain", "ignores-term"])
async def test_cancellation_kills_the_whole_group(tmp_path: Path, prefix: str) -> None:
    pgids: list[int] = []
    with anyio.CancelScope() as scope:

        def on_line(_stream: str, line: str) -> None:
            pgids.append(int(line))
            scope.cancel()

        await run_process(["sh", "-c", prefix + GROUP_SCRIPT], cwd=tmp_path, grace=0.3, on_line=on_line)
    assert scope.cancelled_caught
    assert live_members(pgids[0]) == []


async def test_asyncio_task_cancel_kills_the_group_and_propagates(tmp_path: Path) -> None:
    pgids: list[int] = []
    ready = asyncio.Event()

    def on_line(_stream: str, line: str) -> None:
        pgids.append(int(line))
        ready.set()

    task = asyncio.create_task(run_process(["sh", "-c", GROUP_SCRIPT], cwd=tmp_path, on_line=on_line))
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
        on_line=lambda _s, ln: pgids.append(int(ln)),
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


async def test_peak_memory_is_reported(tmp_path: Path) -> None:
    code = "data = b'x' * (50 * 1024 * 1024); print(len(data))"
    outcome = await run_process([PY, "-c", code], cwd=tmp_path)
    assert outcome.exit_code == 0
    assert 40 <= outcome.peak_memory_mb < 1000


async def test_works_without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(_pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    outcome = await run_process(["sh", "-c", "echo hi; exit 4"], cwd=tmp_path)
    assert (outcome.exit_code, outcome.stdout_tail) == (4, "hi\n")
