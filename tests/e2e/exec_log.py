"""The execution logs that the test tools write as they run (`crash_tools`, `cluster_tools`, the fault run's
`fault_tools`) and the tests read, across the processes of a test."""

from __future__ import annotations

import os


def append_line(env: str, line: str) -> None:
    """`line` to the file named by the environment variable `env` (nothing when it is unset), in one `write` on an
    O_APPEND descriptor: lines of many processes never interleave, and a line is whole even when its process is
    killed right after it."""
    path = os.environ.get(env)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
