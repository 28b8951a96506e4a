"""Processes the bench starts: each leads a session (process group) of its own and is killed whole on time-out.

Every process started here carries the bench run's id in its environment (VIBE_JOBS_BENCH_RUN), so that
bench/suite.py can find anything that outlived its parent: a process with the mark, a descendant of one (a
child given a clean environment, like FastMCP's stdio server in a session of its own), or an orphan adopted
by the suite (it makes itself the child subreaper, so an orphan that left mark and group behind comes back to
it). Nothing is found by a stored process or group id: on this machine pid_max is 32768 and ids come round.
On time-out a process is killed with its whole tree: every descendant and the group of each.
A figure run by the suite gets a deadline (VIBE_JOBS_BENCH_DEADLINE, epoch seconds); `budget` keeps the
time-out of each peer run within it, so a stuck peer costs its own time-out and never the figure.

Linux only (/proc); elsewhere `leftovers` finds nothing.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_LIVE: set[subprocess.Popen[str]] = set()
RUN_ENV = "VIBE_JOBS_BENCH_RUN"
DEADLINE_ENV = "VIBE_JOBS_BENCH_DEADLINE"
ROOT = Path(__file__).resolve().parents[1]


class TimedOut(subprocess.TimeoutExpired):
    """A process did not finish within its time-out; it was killed with its whole tree."""

    def __init__(self, cmd: list[str], seconds: float, stderr: str) -> None:
        super().__init__(cmd, seconds, stderr=stderr)
        self.seconds, self.tail = seconds, stderr

    def __str__(self) -> str:
        return f"{' '.join(self.cmd[:3])} timed out after {self.seconds:.0f} s (process tree killed)"


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def run_id() -> str:
    """This bench run's id: inherited from bench/suite.py, or a new one for a figure run on its own."""
    if not os.environ.get(RUN_ENV):
        os.environ[RUN_ENV] = secrets.token_hex(4)
    return os.environ[RUN_ENV]


def budget(seconds: float, margin: float = 20.0) -> float:
    """`seconds`, cut to what is left before the figure's deadline less `margin` (may be <= 0)."""
    deadline = os.environ.get(DEADLINE_ENV)
    if not deadline:
        return seconds
    return min(seconds, float(deadline) - time.time() - margin)


def guard() -> None:
    """When this process ends (return, exception, Ctrl-C, SIGTERM, SIGHUP), kill every process tree it started
    that is still running: they lead sessions of their own, so no terminal or group signal reaches them."""
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def kill_all() -> None:
    for proc in list(_LIVE):
        kill_tree(proc.pid)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass  # SIGKILL was sent; the end check reports it if it is still there


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `cmd` as the leader of a new session, marked with the run id."""
    full_env = {**os.environ, RUN_ENV: run_id(), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    _LIVE.add(proc)
    return proc


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> Done:
    """Run `cmd` to its end or its time-out; either way nothing of its process group survives the call."""
    proc = start(cmd, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        raise TimedOut(cmd, timeout, _drain(proc)) from None
    except BaseException:  # interrupted: the tree goes with us
        kill_tree(proc.pid)
        raise
    finally:
        kill_group(proc.pid)  # members left in its group keep the id taken, so it cannot name another group
        _LIVE.discard(proc)
    return Done(proc.returncode, out, err)


def _drain(proc: subprocess.Popen[str]) -> str:
    """What a killed process wrote to stderr (a process outside its group may still hold the pipe: 5 s)."""
    try:
        return proc.communicate(timeout=5)[1] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return ""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    cmdline: str


def _proc(pid: str) -> Proc | None:
    """A live process from /proc; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in "ZX" or not cmdline.strip():
        return None  # a zombie, or exiting (its memory, with the command line, is gone already)
    return Proc(int(pid), int(fields[1]), int(fields[2]), cmdline.strip()[:160])


def processes() -> list[Proc]:
    return [p for p in (_proc(e.name) for e in Path("/proc").glob("[0-9]*")) if p is not None]


def descendants(pid: int, everyone: list[Proc] | None = None) -> list[Proc]:
    """Every live descendant of `pid` (children first)."""
    children: dict[int, list[Proc]] = {}
    for p in processes() if everyone is None else everyone:
        children.setdefault(p.ppid, []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def kill_tree(pid: int) -> None:
    """Kill `pid`, its group, and every descendant with its group (some start sessions of their own)."""
    tree = descendants(pid)
    ours = os.getpgrp()
    for group in {pid} | {p.pgid for p in tree}:
        if group != ours:
            kill_group(group)
    for p in tree:
        _kill(p.pid)
    _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def become_subreaper() -> bool:
    """Orphans of everything below this process become its children (Linux PR_SET_CHILD_SUBREAPER)."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap() -> None:
    """Collect adopted orphans that have exited (call only once no subprocess of ours is running)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _marked(pid: str, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def leftovers(rid: str) -> dict[int, str]:
    """Live processes (pid -> command line) marked with run `rid`, adopted by this process, or below either."""
    needle, me, everyone = f"{RUN_ENV}={rid}".encode(), os.getpid(), processes()
    roots = [p for p in everyone if p.pid != me and (p.ppid == me or _marked(str(p.pid), needle))]
    found = {p.pid: p.cmdline for p in roots}
    for root in roots:
        found.update((p.pid, p.cmdline) for p in descendants(root.pid, everyone))
    return found


def kill_leftovers(rid: str) -> dict[int, str]:
    """Kill whatever `leftovers` finds, each with its tree; return what it found."""
    found = leftovers(rid)
    for pid in found:
        kill_tree(pid)
    return found
