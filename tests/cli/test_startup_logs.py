"""What a command logs while it starts (tool modules imported, built-in tools registered) follows
VIBE_JOBS_LOG_LEVEL and VIBE_JOBS_LOG_FORMAT and goes to stderr, as everything it logs later does (README:
"structlog to stderr"). Logging was configured only when the server began to run, so a warning of the start-up
(`run_command.program_not_found`) was written to stdout in the console format, whatever the settings said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VIBE_JOBS = [sys.executable, "-m", "vibe_jobs"]
WARNING = "run_command.program_not_found"
ROOT = Path(__file__).resolve().parents[2]


def started(**env: str) -> subprocess.CompletedProcess[str]:
    """`vibe-jobs worker` on a memory store: it builds the server (and logs what its start-up logs), then stops
    at once (a worker needs a shared store)."""
    return subprocess.run(
        [*VIBE_JOBS, "worker", "--store", "memory://"],
        capture_output=True, text=True, timeout=60, check=False, input="", cwd=ROOT,
        env={**os.environ, "VIBE_JOBS_ALLOWED_COMMANDS": "no-such-program-h111", **env},
    )  # fmt: skip


def test_a_start_up_warning_goes_to_stderr_in_the_format_asked_for() -> None:
    done = started(VIBE_JOBS_LOG_FORMAT="json")
    assert WARNING not in done.stdout, done.stdout
    lines = [line for line in done.stderr.splitlines() if WARNING in line]
    assert len(lines) == 1, done.stderr
    event = json.loads(lines[0])
    assert event["event"] == WARNING and event["level"] == "warning" and event["program"] == "no-such-program-h111"


def test_a_start_up_warning_is_left_out_below_the_level_asked_for() -> None:
    done = started(VIBE_JOBS_LOG_LEVEL="error")
    assert WARNING not in done.stdout + done.stderr, (done.stdout, done.stderr)


def test_a_tools_module_that_registers_nothing_is_warned_of_naming_the_file_imported() -> None:
    """`--tools sched` (a sched.py in the working directory) imported the standard library's `sched`, which
    registers nothing, and the server started without the tools and without a word (review helper-111)."""
    done = subprocess.run(
        [*VIBE_JOBS, "worker", "--store", "memory://", "--tools", "sched"],
        capture_output=True, text=True, timeout=60, check=False, input="", cwd=ROOT,
        env={**os.environ, "VIBE_JOBS_LOG_FORMAT": "json"},
    )  # fmt: skip
    said = [json.loads(line) for line in done.stderr.splitlines() if "tools.module_registered_nothing" in line]
    assert len(said) == 1, done.stderr
    assert said[0]["module"] == "sched" and said[0]["file"].endswith("sched.py") and said[0]["setting"] == "--tools"


def test_a_tools_module_with_tools_is_not_warned_of() -> None:
    done = subprocess.run(
        [*VIBE_JOBS, "worker", "--store", "memory://", "--tools", "tests.e2e.sample_tools"],
        capture_output=True, text=True, timeout=60, check=False, input="", cwd=ROOT,
        env={**os.environ, "VIBE_JOBS_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert "needs a shared store" in done.stderr and "module_registered_nothing" not in done.stderr, done.stderr
