"""Containing every process a command starts, so that all of them end with the job.

A process group is not enough: `setsid` (or a daemonising build tool) leaves it. So each command
runs in its own cgroup v2 when the server may create one below its own (Linux, a writable cgroup
tree: as root, or a delegated subtree); everything the command starts stays in it, and
`cgroup.kill` ends them all at once. Without cgroups, the members are the command's process group
plus every process whose environment carries the run's marker (`VIBE_JOBS_RUN_ID`), which
`setsid` keeps; a program that clears its environment and leaves the group escapes that fallback.

The command's own process also gets a parent-death signal (SIGKILL when the server dies, even by
SIGKILL). What a crash leaves behind (grandchildren) is killed at recovery with the record this
module writes into the job's detail metadata (`record()`, read back by `kill_leftovers`).

The child is moved into its cgroup and given its parent-death signal between fork and exec
(`preexec`): nothing it starts can be outside. That code touches only a descriptor opened
beforehand and a libc function resolved beforehand (no lock, no import, no allocation of note).
The parent-death signal fires when the *thread* that forked exits: commands are started from the
event loop's thread, which lives as long as the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

MARKER = "VIBE_JOBS_RUN_ID"
CGROUP_PREFIX = "vibe-jobs-run-"
_PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1
_HEX = re.compile(r"[0-9a-f]{32}\Z")


def _libc_prctl() -> Callable[[int, int], int] | None:
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


_PRCTL = _libc_prctl()
_PR_SET_DUMPABLE = 4
_PR_GET_CHILD_SUBREAPER = 37


def hide_from_children() -> bool:
    """Make this process's /proc entries (environ, fds, memory, maps) unreadable by the commands it starts.

    They run as the server's user, and a process may read a same-user process's /proc/PID/environ: an allowed
    `cat` read the server's tokens and keys from its parent's, the environment run-command never passes on.
    Not dumpable, the server's entries belong to root (no core dumps either; a same-user debugger cannot attach).
    No defence against root, which reads them anyway. False where prctl is missing (not Linux)."""
    return _PRCTL is not None and _PRCTL(_PR_SET_DUMPABLE, 0) == 0


# --- cgroups ----------------------------------------------------------------------------------------


def cgroup2_mounts() -> list[Path]:
    """Where cgroup v2 is mounted (from /proc/self/mountinfo)."""
    try:
        lines = (_PROC / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[4]) for line in lines if " - cgroup2 " in line]


def own_cgroup() -> Path | None:
    """The server's own cgroup v2 directory when new cgroups can be made below it, else None."""
    try:
        lines = (_PROC / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    for mount in cgroup2_mounts() if relative is not None else ():
        base = mount / str(relative).lstrip("/")
        if (base / "cgroup.procs").is_file() and os.access(base, os.W_OK):
            return base
    return None


def _make_cgroup(marker: str) -> Path | None:
    base = own_cgroup()
    if base is None:
        return None
    path = base / f"{CGROUP_PREFIX}{marker}"
    try:
        path.mkdir()
    except OSError:
        return None
    return path


def cgroup_members(path: Path) -> list[int]:
    """The live processes of a cgroup (exited ones are not listed, reaped or not)."""
    try:
        return [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(path: Path) -> int:
    """SIGKILL everything in the cgroup (`cgroup.kill`, or one by one on kernels before 5.14)."""
    members = cgroup_members(path)
    try:
        (path / "cgroup.kill").write_text("1")
    except OSError:
        for pid in members:
            _kill(pid, signal.SIGKILL)
    return len(members)


def remove_cgroup(path: Path) -> bool:
    """Remove an emptied cgroup directory; False while processes remain (or it is gone already)."""
    try:
        path.rmdir()
    except OSError:
        return False
    return True


# --- processes ----------------------------------------------------------------------------------------


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) of a process, None when gone."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[2]), int(fields[19])


def running(pid: int) -> bool:
    """Whether process `pid` has not exited (a zombie has: only its parent's wait is left)."""
    stat = process_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def adopts_orphans() -> bool:
    """Whether the processes a command leaves behind become this process's children when their parent ends:
    it is the init of a PID namespace (`docker run` without `--init` makes the server PID 1) or a child
    subreaper (a supervisor's child may be one)."""
    if os.getpid() == 1:
        return True
    flag = ctypes.c_int(0)
    try:
        asked = ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return False
    return asked == 0 and flag.value != 0


def reap_orphans() -> int:
    """Reap the zombies among this process's children that it did not start (the orphans it adopted, see
    `adopts_orphans`): nothing else ever waits for them. A child this process started is in its session or
    leads one of its own (run-command's, an upstream's), so a zombie that does neither was adopted, and reaping
    it takes nobody's exit status. The count reaped."""
    if not adopts_orphans():
        return 0
    me, session, reaped = os.getpid(), os.getsid(0), 0
    for pid in _pids():
        try:
            fields = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me and int(fields[3]) not in (session, pid):
            with contextlib.suppress(ChildProcessError):
                reaped += os.waitpid(pid, os.WNOHANG)[0] == pid
    return reaped


def boot_id() -> str:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def _pids() -> Iterator[int]:
    for entry in _PROC.glob("[0-9]*"):
        with contextlib.suppress(ValueError):
            yield int(entry.name)


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        return marker in (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def marked_or_grouped(marker: str, pgid: int | None) -> list[int]:
    """Live processes in group `pgid` or whose environment carries `marker` (never this process)."""
    tag = f"{MARKER}={marker}".encode()
    found = []
    for pid in _pids():
        stat = process_stat(pid)
        if pid == os.getpid() or stat is None or stat[0] in ("Z", "X"):
            continue
        if stat[1] == pgid or _has_marker(pid, tag):
            found.append(pid)
    return found


# --- one run --------------------------------------------------------------------------------------------


class Containment:
    """The processes of one command: its cgroup when there is one, else its group and marked environment."""

    def __init__(self, *, cgroups: bool = True) -> None:
        self.marker = uuid.uuid4().hex
        self.cgroup = _make_cgroup(self.marker) if cgroups else None
        self._procs_fd = self._open_procs()
        self.pid: int | None = None
        self.started: int | None = None

    def _open_procs(self) -> int | None:
        if self.cgroup is None:
            return None
        try:
            return os.open(self.cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._drop_cgroup()
            return None

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The child's environment with the run's marker."""
        return {**env, MARKER: self.marker}

    def preexec(self) -> Callable[[], None]:
        """What the child does between fork and exec: join the cgroup, die with the server."""
        procs_fd, parent, prctl = self._procs_fd, os.getpid(), _PRCTL

        def setup() -> None:
            if procs_fd is not None:
                with contextlib.suppress(OSError):  # checked by the parent in `attach`
                    os.write(procs_fd, b"0")
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the server died before the signal was armed
                os._exit(127)

        return setup

    def attach(self, pid: int) -> None:
        """Note the started child (the leader of its own session); fall back when it is not in the cgroup."""
        self.pid = pid
        stat = process_stat(pid)
        self.started = stat[2] if stat is not None else None
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        if self.cgroup is not None and not self._in_cgroup(pid):
            self._drop_cgroup()

    def _in_cgroup(self, pid: int) -> bool:
        try:
            lines = (_PROC / str(pid) / "cgroup").read_text().splitlines()
        except OSError:
            return True  # already gone: nothing of it can be outside
        return any(line.startswith("0::") and line.endswith(f"/{CGROUP_PREFIX}{self.marker}") for line in lines)

    def _drop_cgroup(self) -> None:
        if self.cgroup is not None:
            remove_cgroup(self.cgroup)
        self.cgroup = None

    def record(self) -> dict[str, Any]:
        """What recovery needs to end this run's processes after a crash (`kill_leftovers`)."""
        record: dict[str, Any] = {"pid": self.pid, "started": self.started, "marker": self.marker, "boot": boot_id()}
        if self.cgroup is not None:
            record["cgroup"] = str(self.cgroup)
        return record

    def members(self) -> list[int]:
        """The run's live processes."""
        if self.cgroup is not None:
            return cgroup_members(self.cgroup)
        return marked_or_grouped(self.marker, self.pid)

    def alive(self) -> bool:
        return bool(self.members())

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the run."""
        if self.cgroup is not None and sig == signal.SIGKILL:
            kill_cgroup(self.cgroup)
            return
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        for pid in self.members():
            _kill(pid, sig)

    def close(self) -> None:
        """Release the cgroup (it stays, for recovery, if processes could not be ended)."""
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        if self.cgroup is not None and remove_cgroup(self.cgroup):
            self.cgroup = None


def leftovers(record: Mapping[str, Any]) -> tuple[Path | None, list[int]]:
    """The cgroup and the processes that a run's `record` says belong to it, as far as they still exist.

    A record is checked before anything is killed: a cgroup path must be one of ours below a
    cgroup v2 mount, and processes count only on the same boot (by marker, or in the group of a
    leader that is still the same process: same pid and start time).
    """
    group = _recorded_cgroup(record.get("cgroup"))
    marker, pid, started = record.get("marker"), record.get("pid"), record.get("started")
    if not isinstance(marker, str) or not _HEX.match(marker) or record.get("boot") != boot_id():
        return group, []
    stat = process_stat(pid) if isinstance(pid, int) and pid > 1 else None
    leader = pid if stat is not None and stat[2] == started else None
    return group, marked_or_grouped(marker, leader)


def _recorded_cgroup(value: object) -> Path | None:
    if not isinstance(value, str):
        return None
    path = Path(value)
    if not path.is_absolute() or ".." in path.parts or not path.name.startswith(CGROUP_PREFIX):
        return None
    if not any(path.is_relative_to(mount) for mount in cgroup2_mounts()) or not path.is_dir():
        return None
    return path
