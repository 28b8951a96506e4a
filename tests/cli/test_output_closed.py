"""A command whose reader went away (`vibe-jobs jobs show ID | head`) ends quietly, as a Unix tool does: exit 141
(what a shell shows for a command a SIGPIPE ended), nothing on stderr. It printed `vibe-jobs: BrokenPipeError:
[Errno 32] Broken pipe` (jobs, schedules; `call` with the server's log under it), and `health` a traceback.

Each command's stdout is a pipe whose read end is closed before it starts: its first write fails, whatever the
size of its output and however fast a reader would have been. And a reader that takes the first bytes and goes
away while the rest is being written (`| head -1` of a job whose text is more than a pipe holds)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from vibe_jobs.manager import JobManager
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus
from vibe_jobs.store import open_store

ROOT = Path(__file__).resolve().parents[2]
VIBE_JOBS = [sys.executable, "-m", "vibe_jobs"]
SERVER = [*VIBE_JOBS, "serve", "--store", "memory://", "--tools", "tests.e2e.sample_tools"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_LEVEL": "warning"}


def closed_reader(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `vibe-jobs *argv` with stdout a pipe no one reads any more."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*VIBE_JOBS, *argv], stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, timeout=60, check=False, cwd=ROOT, env=ENV,
        )  # fmt: skip
    finally:
        os.close(write)


async def _one_job(url: str) -> str:
    async with JobManager(open_store(url), Settings()) as m:
        job_id = await m.create_job("noop", {})
        await m.update_job_status(job_id, JobStatus.RUNNING)
        await m.set_job_result(job_id, {"content": [{"type": "text", "text": "done\n" * 200_000}]})
        return job_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('closed') / 'jobs.db'}"
    return url, anyio.run(_one_job, url)


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "show", "{id}"],
        ["jobs", "list"],
        ["jobs", "stats", "--json"],
        ["schedules", "list", "--json"],
        ["health"],
    ],
)
def test_a_store_command_whose_reader_went_away_ends_quietly(store: tuple[str, str], argv: list[str]) -> None:
    url, job_id = store
    done = closed_reader([*(arg.format(id=job_id) for arg in argv), "--store", url])
    assert (done.returncode, done.stderr) == (141, ""), done.stderr


def test_a_reader_that_leaves_while_the_output_is_written_ends_the_command_quietly(store: tuple[str, str]) -> None:
    """`vibe-jobs jobs show ID | head -1` of a job of 1 MB of text: the write that is under way when the reader
    leaves comes back short (the bytes the pipe took), and Python's buffered stdout dropped the rest without a
    word, so the command exited 0 with its output cut, not 141."""
    url, job_id = store
    argv = [*VIBE_JOBS, "jobs", "show", job_id, "--store", url]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ENV) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert os.read(proc.stdout.fileno(), 10) == b"id:       "  # the command is inside its one long write
        proc.stdout.close()
        assert (proc.wait(timeout=60), proc.stderr.read()) == (141, b"")


def test_call_whose_reader_went_away_ends_quietly() -> None:
    done = closed_reader(["call", "echo", "--arg", "text=hi", "--server-cmd", shlex.join(SERVER)])
    assert (done.returncode, done.stderr) == (141, ""), done.stderr
