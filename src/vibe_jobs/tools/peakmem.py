"""The peak resident memory of a command and of what it starts (run-command's `peakMemoryMB`).

wait4's `ru_maxrss` alone cannot give it: Linux starts a child's figure at the size of the process that
forked it (the memory it forked, or shared under vfork, is recorded when the child execs), so a command
the server starts reports at least the server's own high-water mark (measured: `/bin/true` started by a
300 MB process reports 297 MB, forked or vforked). Its descendants fork from the command, so theirs are
right, and wait4 answers one maximum over the command and them. Hence:

- a `ru_maxrss` above the server's own high-water mark when the command started is the command's (the
  inherited part cannot exceed that mark): it is exact and used as it is;
- otherwise the figure is the one read from /proc while the command ran: the larger of the command's
  own high-water mark (`VmHWM`: its peak since its exec, as of the last read) and the sum of the resident
  memory (`VmRSS`) of its process tree at one sample. Samples are taken as it starts, then at growing
  intervals (SAMPLE_FIRST up to SAMPLE_MOST seconds): a peak reached after the last sample before the
  command exits is missed, and a command that ends before the first read reports 0. Where /proc is
  missing (not Linux), `ru_maxrss` is all there is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import anyio

SAMPLE_FIRST = 0.05  # seconds: short commands are read early
SAMPLE_MOST = 1.0  # and long ones once a second (a sample reads a file per process of the tree)
_PROC = Path("/proc")
MAX_TREE = 4096  # processes read per sample, at most (a fork bomb does not make sampling one)


def status_kib(pid: int, field: str) -> int | None:
    """A `kB` figure of /proc/<pid>/status (`VmHWM`, `VmRSS`), None when the process (or its memory) is gone."""
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    head = f"\n{field}:"
    at = text.find(head)
    if at < 0:  # a zombie has no memory lines
        return None
    return int(text[at + len(head) :].split(None, 1)[0])


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (from each thread's /proc children list)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < MAX_TREE:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in (_PROC / str(current) / "task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def own_hwm_kib() -> int | None:
    """This process's own high-water mark."""
    return status_kib(os.getpid(), "VmHWM")


class PeakMemory:
    """The peak of one command (`pid`), sampled from /proc while it runs; `mb(ru_maxrss)` at the end."""

    def __init__(self, pid: int, server_hwm_kib: int | None) -> None:
        self.pid = pid
        self.server_hwm_kib = server_hwm_kib
        self.sampled_kib = 0
        self.available = _PROC.joinpath(str(pid)).exists()

    def sample(self) -> None:
        tree = process_tree(self.pid)
        total = sum(status_kib(p, "VmRSS") or 0 for p in tree)
        own = status_kib(self.pid, "VmHWM") or 0
        self.sampled_kib = max(self.sampled_kib, own, total)

    async def follow(self, running: Callable[[], bool]) -> None:
        """Sample while `running()` (the command is not reaped: its pid is still its own), until cancelled."""
        interval = SAMPLE_FIRST
        while running():
            self.sample()
            await anyio.sleep(interval)
            interval = min(SAMPLE_MOST, interval * 2)

    def mb(self, ru_maxrss: int | None) -> float:
        """The peak in MB, given wait4's `ru_maxrss` of the command (None: it was not reaped)."""
        reported = _maxrss_kib(ru_maxrss) if ru_maxrss is not None else 0
        if not self.available:
            return reported / 1024
        if self.server_hwm_kib is not None and reported > self.server_hwm_kib:
            return reported / 1024  # above anything it could have inherited: the command's own peak
        return self.sampled_kib / 1024


def _maxrss_kib(maxrss: int) -> int:
    """ru_maxrss in KiB: bytes on macOS, KiB on Linux and most POSIX systems."""
    return maxrss // 1024 if sys.platform == "darwin" else maxrss
