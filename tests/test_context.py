"""JobContext: what a running job hands the engine."""

from __future__ import annotations

from vibe_jobs import JobManager, Settings
from vibe_jobs.context import JobContext
from vibe_jobs.manager import MAX_DIAGNOSTICS
from vibe_jobs.store import MemoryStore


def test_diagnostics_waiting_to_be_stored_keep_the_last_lines_not_every_line() -> None:
    """A job stores at most its last MAX_DIAGNOSTICS lines; the ones waiting for its next update were all kept
    (a proxied upstream's 200,000 log messages during one job took the proxy from 81 MB to 298 MB)."""
    job = JobContext(JobManager(MemoryStore(), Settings()), "job", 1, "tool")
    for i in range(200_000):
        job.diagnostic(f"line {i}")
    kept = job.take_diagnostics()
    assert kept == [f"line {i}" for i in range(200_000 - MAX_DIAGNOSTICS, 200_000)]
    assert job.take_diagnostics() == []
