"""Process running for the built-in `run-command` tool (no MCP here).

A program is executed directly (never through a shell), by the absolute path the allowlist
resolved at start-up (`allowlist.py`), with the environment it built. Everything it starts is
contained (`contain.py`: a cgroup, else its session plus a marked environment) and ended as a
whole on exit, time-out or cancellation; what a crash of the server leaves behind is ended at
recovery by `kill_leftovers` with the record `on_start` received.

How the child is reaped (for its rusage): it is started with `subprocess.Popen`, which asyncio's
child watcher never sees, so nothing else will `waitpid` it. Its exit is awaited on a pidfd
(`os.pidfd_open`, readable once the child exits; a short poll where pidfds are missing) and it is
then reaped with `os.wait4(pid, WNOHANG)`, whose rusage covers exactly this child (and whatever
it reaped) - unlike `getrusage(RUSAGE_CHILDREN)`, which mixes in concurrent jobs.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import inspect
import os
import resource
import shutil
import signal as signals
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from vibe_jobs.tools.allowlist import CommandRefused, minimal_env
from vibe_jobs.tools.contain import (
    Containment,
    adopts_orphans,
    kill_cgroup,
    leftovers,
    reap_orphans,
    remove_cgroup,
    running,
)
from vibe_jobs.tools.peakmem import PeakMemory, own_hwm_kib

LinesCallback = Callable[[str, list[str]], Awaitable[None] | None]
StartCallback = Callable[[dict[str, Any]], Awaitable[None]]

_POLL = 0.02
_READ_SIZE = 65536
_MAX_LINE = 65536
_LEFTOVER_WAIT = 2.0
_REAP_EVERY = 1.0


class CommandFailedToStart(RuntimeError):
    """The program could not be started (not found, not executable, bad cwd, ...)."""

    def __init__(self, program: str, reason: str, limit: str | None = None) -> None:
        super().__init__(f"could not start '{program}': {reason}")
        self.program = program
        self.reason = reason
        self.limit = limit  # the limit of the server's process reached (RLIMIT_NOFILE, ...), if that was why


@dataclass(frozen=True)
class CommandOutcome:
    """What a finished (or timed-out) process did."""

    exit_code: int | None
    stdout_tail: str
    stderr_tail: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: int
    cpu_seconds: float
    peak_memory_mb: float
    timed_out: bool
    signal: int | None

    def to_dict(self) -> dict[str, Any]:
        """The outcome with camelCase keys, for tool results."""
        return {
            "exitCode": self.exit_code,
            "stdoutTail": self.stdout_tail,
            "stderrTail": self.stderr_tail,
            "stdoutTruncated": self.stdout_truncated,
            "stderrTruncated": self.stderr_truncated,
            "durationMs": self.duration_ms,
            "cpuSeconds": self.cpu_seconds,
            "peakMemoryMB": self.peak_memory_mb,
            "timedOut": self.timed_out,
            "signal": self.signal,
        }


class _Stream:
    """One output stream: splits it into lines for `on_lines` and keeps a bounded byte tail.

    A chunk's complete lines go out in one call (split in C, with no Python step per line): a
    program printing short lines as fast as it can (`yes`) would otherwise cost the event loop a
    call per line, some 32,000 per 64 KiB read, and slow every other client of the server.
    """

    def __init__(self, name: str, tail_bytes: int, on_lines: LinesCallback | None) -> None:
        self.name = name
        self.tail = bytearray()
        self.truncated = False
        self._limit = max(tail_bytes, 0)
        self._on_lines = on_lines
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._after_cr = False  # the text so far ended with a carriage return

    async def feed(self, chunk: bytes, *, final: bool = False) -> None:
        """Add a chunk (or flush at EOF with `final`), handing on its complete lines, line endings removed.

        A carriage return alone ends a line too: progress drawn in place (`git`, `pip`, `curl`) is a line per
        redraw, the newest last. A chunk that ends with one ends its line at once (a progress bar then waits),
        and a line feed that starts the next chunk completes that CRLF: it ends no second line."""
        self._keep(chunk)
        text = self._pending + self._decoder.decode(chunk, final=final)
        if self._after_cr and text.startswith("\n"):
            text, self._after_cr = text[1:], False  # that CRLF is complete: a read of its LF alone ends here
        if text:
            self._after_cr = text.endswith("\r")
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop()
        if (final and self._pending) or len(self._pending) > _MAX_LINE:
            lines.append(self._pending)
            self._pending = ""
        if lines:
            await self._emit(lines)

    def _keep(self, chunk: bytes) -> None:
        self.tail += chunk
        if len(self.tail) > self._limit:
            del self.tail[: len(self.tail) - self._limit]
            self.truncated = True

    async def _emit(self, lines: list[str]) -> None:
        if self._on_lines is None:
            return
        result = self._on_lines(self.name, lines)
        if inspect.isawaitable(result):
            await result

    def text(self) -> str:
        """The kept tail, decoded; a multi-byte character cut by truncation is dropped."""
        data = bytes(self.tail)
        if self.truncated:
            data = data.lstrip(bytes(range(0x80, 0xC0)))
        return data.decode("utf-8", errors="replace")


def find_program(program: str, cwd: Path) -> str:
    """For library callers without an allowlist: a name on the server's PATH, a path relative to `cwd`."""
    if os.sep in program:
        found, where = shutil.which(str(cwd / program)), f"in {cwd}"
    else:
        found, where = shutil.which(program, path=os.environ.get("PATH", os.defpath)), "on PATH"
    if found is None:
        raise CommandFailedToStart(program, f"no executable file of that name {where}")
    return found


def _spawn(
    argv: Sequence[str], executable: str, cwd: Path, env: dict[str, str], contain: Containment
) -> subprocess.Popen[bytes]:
    """Start the program directly (no shell) in a new session, contained, with piped stdout/stderr."""
    try:
        return subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=contain.env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=contain.preexec(),  # safe here: see contain.py (no lock, no import between fork and exec)
        )
    except OSError as exc:
        detail = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
        limit = _LIMITS.get(exc.errno or 0)
        raise CommandFailedToStart(argv[0], detail + _limit_reached(exc), limit and limit[0]) from exc


# errno of a start that found a limit of the server's process reached -> that limit, as setrlimit names it
_LIMITS = {
    errno.EMFILE: ("RLIMIT_NOFILE", "open files", "ulimit -n"),
    errno.EAGAIN: ("RLIMIT_NPROC", "processes of its user", "ulimit -u"),
    errno.ENOMEM: ("RLIMIT_AS", "bytes of address space", "ulimit -v"),
}


def _limit_reached(exc: OSError) -> str:
    """For a start that failed on a limit of this process (open files for the pipes, processes for the fork,
    memory): the limit and its value; it frees up as other commands end. Else ""."""
    if exc.errno not in _LIMITS:
        return ""
    name, what, ulimit = _LIMITS[exc.errno]
    soft = resource.getrlimit(getattr(resource, name))[0]
    value = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft:,}"
    return f" (the server's limit of {what}, {name} / {ulimit}, is {value}; commands running now hold some)"


class _Hurry:
    """Whether this process hurries its stop (`hurry_commands`): each command's grace between SIGTERM and
    SIGKILL then ends at once, the graces being waited out and those to come."""

    def __init__(self) -> None:
        self.now = False
        self._graces: set[anyio.CancelScope] = set()

    def __call__(self) -> None:
        self.now = True
        for scope in list(self._graces):
            scope.cancel()

    @contextlib.contextmanager
    def grace(self, seconds: float) -> Iterator[None]:
        with anyio.move_on_after(0 if self.now else seconds) as scope:
            self._graces.add(scope)
            try:
                yield
            finally:
                self._graces.discard(scope)


_HURRY = _Hurry()


def hurry_commands() -> None:
    """From now on, a command ended (by a cancel: a stopping server cancels its jobs) gets SIGKILL, with all it
    started, right after its SIGTERM, instead of after its grace; so do those in their grace now. For a stop that
    was told to hurry (a signal while stopping): call it on the event loop's thread."""
    _HURRY()


class _Child:
    """The started process: waiting for it, reaping it with wait4, ending everything it started."""

    def __init__(self, proc: subprocess.Popen[bytes], contain: Containment) -> None:
        self.proc = proc
        self.contain = contain
        self.reaped = False
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self._pidfd = self._open_pidfd()

    def _open_pidfd(self) -> int | None:
        try:
            return os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            return None

    def _try_reap(self) -> None:
        try:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: status and rusage are lost
            self.reaped, self.proc.returncode = True, -1
            return
        if pid:
            self.reaped, self.status, self.rusage = True, status, rusage
            self.proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again

    async def wait(self) -> None:
        """Wait for the child to exit and reap it."""
        self._try_reap()
        while not self.reaped:
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)
            else:
                await anyio.sleep(_POLL)
            self._try_reap()

    async def wait_gone(self) -> None:
        """Wait until the child is reaped and nothing it started is running."""
        await self.wait()
        while self.contain.alive():  # noqa: ASYNC110 - nothing signals "all of them ended"
            await anyio.sleep(_POLL)

    async def terminate(self, grace: float) -> None:
        """SIGTERM everything, then SIGKILL after `grace` seconds whatever still runs (again while it forks)."""
        if self.reaped and not self.contain.alive():
            return
        self.contain.signal(signals.SIGTERM)
        with _HURRY.grace(grace):
            await self.wait_gone()
        with anyio.move_on_after(grace):
            while not self.reaped or self.contain.alive():
                self.contain.signal(signals.SIGKILL)
                self._try_reap()
                await anyio.sleep(_POLL)
        await self.wait()

    def close(self) -> None:
        """Release the pidfd, the pipes and the containment."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.contain.close()


async def _pump(fd: int, stream: _Stream) -> None:
    """Read a non-blocking pipe until EOF, feeding `stream` a chunk at a time.

    `wait_readable` returns through the event loop even when the pipe is already full: the other
    tasks run between two chunks, however fast the program writes.
    """
    os.set_blocking(fd, False)
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            continue
        if not chunk:
            break
        await stream.feed(chunk)
    await stream.feed(b"", final=True)


class _Run:
    """One run_process call: the child, its two streams, and the timeout flag."""

    def __init__(
        self, child: _Child, started: float, tail_bytes: int, on_lines: LinesCallback | None, memory: PeakMemory
    ) -> None:
        self.child = child
        self.memory = memory
        self.started = started
        self.out = _Stream("stdout", tail_bytes, on_lines)
        self.err = _Stream("stderr", tail_bytes, on_lines)
        self.timed_out = False
        self.pumps_done = anyio.Event()

    async def pumps(self) -> None:
        """Read stdout and stderr concurrently until both reach EOF."""
        assert self.child.proc.stdout is not None and self.child.proc.stderr is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, self.child.proc.stdout.fileno(), self.out)
            tg.start_soon(_pump, self.child.proc.stderr.fileno(), self.err)
        self.pumps_done.set()

    async def supervise(self, limit: float | None, grace: float) -> None:
        """Wait for exit (terminating after `limit` seconds), then give the pipes `grace` to drain."""
        with anyio.move_on_after(limit):
            await self.child.wait()
        if not self.child.reaped:
            self.timed_out = True
            await self.child.terminate(grace)
        with anyio.move_on_after(grace):
            await self.pumps_done.wait()

    def outcome(self) -> CommandOutcome:
        """Build the result from the reaped status and rusage."""
        status, usage = self.child.status, self.child.rusage
        return CommandOutcome(
            exit_code=os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None,
            stdout_tail=self.out.text(),
            stderr_tail=self.err.text(),
            stdout_truncated=self.out.truncated,
            stderr_truncated=self.err.truncated,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            cpu_seconds=usage.ru_utime + usage.ru_stime if usage is not None else 0.0,
            peak_memory_mb=self.memory.mb(usage.ru_maxrss if usage is not None else None),
            timed_out=self.timed_out,
            signal=os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None,
        )


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the tool's own time limit, reported as timedOut
    grace: float = 2.0,
    tail_bytes: int = 16384,
    on_lines: LinesCallback | None = None,
    on_start: StartCallback | None = None,
    cgroups: bool = True,
) -> CommandOutcome:
    """Run `argv` in `cwd` and report how it went.

    `executable` is the file that runs (default: `argv[0]` found by `find_program`); `env` is the
    child's whole environment (default: the server's PATH, HOME, LANG and TERM). Lines of
    stdout/stderr go to `on_lines(stream, lines)` as they arrive, the lines of one read in one
    call; `on_start(record)` receives what `kill_leftovers` needs after a crash. On timeout or
    cancellation every process of the run gets SIGTERM, then SIGKILL after `grace` seconds; a
    cancellation propagates once all are gone.
    `cgroups=False` uses the fallback containment even where cgroups work. Raises CommandFailedToStart.
    """
    if not argv:
        raise CommandRefused("empty command")
    started = time.monotonic()
    program = executable or find_program(argv[0], cwd)
    contain = Containment(cgroups=cgroups)
    try:
        proc = _spawn(argv, program, cwd, dict(minimal_env(os.environ) if env is None else env), contain)
    except BaseException:
        contain.close()
        raise
    contain.attach(proc.pid)
    child = _Child(proc, contain)
    memory = PeakMemory(proc.pid, own_hwm_kib())  # read after the exec: what its ru_maxrss may have inherited
    memory.sample()  # Popen returns once the program is executing: read before a short one ends
    run = _Run(child, started, tail_bytes, on_lines, memory)
    try:
        if on_start is not None:
            await on_start(contain.record())
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.pumps)
            tg.start_soon(memory.follow, lambda: not child.reaped)
            tg.start_soon(_reap_orphans_while, lambda: not child.reaped)
            await run.supervise(timeout, grace)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await child.terminate(grace)
            child.close()
        reap_orphans()  # what it left behind, ended with it, when they came to this process (PID 1)
    return run.outcome()


async def _reap_orphans_while(running: Callable[[], bool]) -> None:
    """Where this process adopts orphans (PID 1), those the command leaves behind while it runs (`(cmd &)` in a
    script) are reaped once a second, not only when it ends."""
    if not adopts_orphans():
        return
    while running():
        reap_orphans()
        await anyio.sleep(_REAP_EVERY)


async def kill_leftovers(metadata: Mapping[str, Any] | None) -> int:
    """End what an interrupted run left behind, from the job's detail metadata; the count signalled.

    Recovery calls this for a `run-command` job whose server died while it ran: the record under
    `metadata["process"]` (written when the command started) names its cgroup, or its session and
    environment marker. A record that is missing, malformed or from an earlier boot ends nothing.
    """
    record = (metadata or {}).get("process")
    if not isinstance(record, Mapping):
        return 0
    group, pids = leftovers(record)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signals.SIGKILL)
    count = len(pids) + (kill_cgroup(group) if group is not None else 0)
    with anyio.move_on_after(_LEFTOVER_WAIT):  # gone when this returns: a second look finds none still exiting
        while (group is not None and group.is_dir() and not remove_cgroup(group)) or any(map(running, pids)):  # noqa: ASYNC110 - no event
            await anyio.sleep(_POLL)
    return count
