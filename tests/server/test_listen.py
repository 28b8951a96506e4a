"""The HTTP listener's own limits (the deadlines are tested against the real server in tests/e2e)."""

from __future__ import annotations

import resource
import subprocess
import sys

from vibe_jobs.server.listen import RESERVED_FILES, open_files_limit


def test_the_open_files_limit_is_raised_to_the_hard_one_and_connections_leave_files_for_jobs() -> None:
    """With the usual soft limit of 1,024, a few hundred idle connections took every file descriptor and a
    running job failed with "Too many open files"."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = 256 if hard == resource.RLIM_INFINITY else min(256, hard)

    def lowered() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    code = "from vibe_jobs.server.listen import open_files_limit; print(open_files_limit())"
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=lowered, capture_output=True, text=True, check=True, timeout=60
    )
    expected = hard if hard != resource.RLIM_INFINITY else low
    assert int(done.stdout) == expected
    assert open_files_limit() > RESERVED_FILES
