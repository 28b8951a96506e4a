"""Which process holds a lease, and whether that process has ended.

A store on one machine (SQLite) records the process behind each lease, so a restart recovers a
killed server's jobs at once instead of waiting for its lease to expire. A process is named by:
- `host`: this machine and its pid namespace (the node name, plus on Linux the kernel's boot id and
  the pid namespace), so a pid is only looked up where it names the same process. Containers that
  share a volume but not a pid namespace are different hosts: they keep lease expiry;
- `pid`, and `started`: the process's start time (clock ticks after boot, field 22 of
  /proc/<pid>/stat), so a pid the system gave to a new process is not taken for the old one.

Only certainty counts as ended: a pid that is gone, a zombie, or a pid now held by a process that
started at another time. Anything unsure (another host, no /proc and a pid that exists) counts as
alive, and that lease ends by expiry, as every lease did before.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_ENDED_STATES = ("Z", "X")  # a zombie (exited, not reaped yet) or dead


@dataclass(frozen=True, slots=True)
class ProcessId:
    host: str
    pid: int
    started: int | None  # None where /proc is not available


def _host() -> str:
    parts = [os.uname().nodename]
    with contextlib.suppress(OSError):
        parts.append((_PROC / "sys/kernel/random/boot_id").read_text().strip())
        parts.append(str((_PROC / "self/ns/pid").stat().st_ino))
    return "/".join(parts)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from /proc, or None when /proc has no such process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces and ")"
    return fields[0], int(fields[19])


_current: ProcessId | None = None


def this_process() -> ProcessId:
    """The calling process (worked out once per process: a forked child works it out again)."""
    global _current
    pid = os.getpid()
    if _current is None or _current.pid != pid:
        stat = _stat(pid) if _PROC.joinpath("self").exists() else None
        _current = ProcessId(_host(), pid, stat[1] if stat is not None else None)
    return _current


def has_ended(proc: ProcessId) -> bool:
    """True when `proc` certainly no longer runs (it must be on this host to tell; see the module doc)."""
    me = this_process()
    if proc.host != me.host or os.name != "posix" or proc.pid <= 0:
        return False
    if me.started is None:  # no /proc: only a pid that does not exist is certain
        return not _pid_exists(proc.pid)
    try:
        stat = _stat(proc.pid)
    except (OSError, ValueError, IndexError):
        return False  # unreadable: unsure
    if stat is None:
        return True
    state, started = stat
    return state in _ENDED_STATES or (proc.started is not None and started != proc.started)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's, say)
    return True
