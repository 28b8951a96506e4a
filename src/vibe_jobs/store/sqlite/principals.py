"""A principal's lock across the processes that share one SQLite file (`PrincipalLocking`): what a quota counts
and the job it admits are stored as one step in all of them at once.

The lock is one byte of a lock file beside the database, `<database>-quota` (beside the file a symbolic link
names, as SQLite puts its `-wal` and `-shm`), at an offset hashed from the principal; two principals whose bytes
collide only wait for each other. It is an open-file-description lock (Linux's F_OFD_SETLK), on a descriptor each
holder opens for it:

- not a POSIX record lock (`fcntl.lockf`): that belongs to the process, so two holders in one process (two stores
  on one file, two principals whose bytes collide) would not exclude each other, and closing any descriptor of the
  file in that process would drop every lock it holds on it. A holder's own description excludes every other
  holder, in this process or another, and only its own close releases it;
- not on the database file: the database's locks are SQLite's (its server process holds them, at fixed offsets),
  and a lock file leaves them alone.

Released by closing the descriptor: on leaving, and by the kernel when the holder's process dies (killed, out of
memory), so a crashed holder never blocks the others. A child forked meanwhile closes its copy at once (a copy
would keep it held for as long as the child lived). The file is empty and stays (deleting a lock file others
may hold is how two holders end up on two files).

Waiting: polling, in turn. Non-blocking attempts, the first at once, then after pauses doubling from 1 ms up to 16
ms. A holder that has waited LINE_AFTER (50 ms) gets in line: it takes a ticket, a byte of the principal's line in
the lock file (past the principals' bytes) at this microsecond of CLOCK_MONOTONIC, one clock for every process of
the machine, and from then on attempts every 1 ms; it takes the lock only when nobody holds a ticket before its own,
and a holder out of line only when nobody is in line. So nobody who came after a holder in line takes the lock
before it: before, a process whose creates followed each other took it again at once each time, and another
process's wait for it, pauses of 16 ms between attempts, reached seconds (bench/quota_lock.py). The ticket goes with
the lock taken, or with the descriptor. Lines are 2**22 (principals whose lines collide wait in turn with each
other) and the microseconds wrap every 12.7 days (a line is read as a ring, from half the bound ago: the order holds
across that moment). A holder in line that stalled would hold up those behind it: at half of PRINCIPAL_LOCK_WAIT_MS
a waiter leaves the line and takes the lock whenever it is free, as if there were no line; and a ticket older than
half of a waiter's bound counts for nothing to it (a holder that runs has left the line by then: that one stopped,
or hangs), so a stopped process's ticket costs only those who came within half the bound after it, not every later
call as long as it stays stopped (2.5 s each, one after the other in a process). Past PRINCIPAL_LOCK_WAIT_MS the
holder has stalled (a stopped or hung process) and the call is refused (StoreLocked, "try again"). A blocking wait
(F_OFD_SETLKW) could not be given up on: it would keep its thread until the stalled holder went on, then take the
lock for nobody (a signal could interrupt it only through a handler the main thread installs for the whole process,
and `fcntl.fcntl` tries again after EINTR in any other thread). The first attempt runs on a worker thread (it opens
the file), the others on the event loop (a non-blocking fcntl on an open file: microseconds), the pauses there too
(no thread waits).

Where there is no open-file-description lock (not Linux), the whole file is locked (`flock`, also held by the open
description): every principal shares the one lock there, and there is no line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator, Callable

import anyio

from vibe_jobs.errors import StoreError
from vibe_jobs.store.base import PRINCIPAL_LOCK_WAIT_MS, principal_lock_refused

SUFFIX = "-quota"
FIRST_PAUSE, LONGEST_PAUSE = 0.001, 0.016  # seconds between attempts (in line: FIRST_PAUSE)
LINE_AFTER = 0.05  # seconds of waiting after which a holder gets in line
_OFFSETS = 1 << 62  # a byte in [0, 2**62): a lock's start and end stay within off_t
_LINES, _TICKETS = 1 << 62, 1 << 40  # lines from byte 2**62 on, 2**40 bytes each: 2**22 lines up to 2**63
_LATE = 1_000_000  # µs past the clock a ticket's byte may be (taken by a holder whose clock was read just after)
_BUSY = (errno.EAGAIN, errno.EACCES)
BYTE_RANGES = hasattr(fcntl, "F_OFD_SETLK")  # Linux


def lock_path(db_path: str) -> str:
    """The lock file of the database at `db_path` (beside the file itself, whatever links name it)."""
    return os.path.realpath(db_path) + SUFFIX


def offset_of(principal: str) -> int:
    return (
        int.from_bytes(hashlib.blake2b(principal.encode(errors="surrogatepass"), digest_size=8).digest(), "big")
        % _OFFSETS
    )


class _Attempts:
    """One holder's descriptor, its ticket in the principal's line while it has one, and its attempts."""

    __slots__ = ("byte_ranges", "fd", "fresh", "in_turn", "line", "offset", "path", "ticket")

    def __init__(self, path: str, offset: int, byte_ranges: bool, fresh: float) -> None:
        self.path, self.offset, self.byte_ranges = path, offset, byte_ranges
        self.fresh = min(int(fresh * 1_000_000), _TICKETS // 4)  # µs: an older ticket's holder has stalled
        self.line = _LINES + offset - offset % _TICKETS  # principals whose lines collide share one
        self.fd = -1
        self.ticket: int | None = None
        self.in_turn = byte_ranges  # whether it lets those in line go first (no line without byte ranges)

    def first(self) -> bool:
        """Open the lock file (on a worker thread), then `take`."""
        if self.fd < 0:  # kept here at once: whoever gave up waiting for this thread still closes it
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a link planted there is not followed
            _OPEN.add(self)
            self.fd = os.open(lock_path(self.path), flags, 0o600)
        return self.take()

    def take(self) -> bool:
        """Take the lock if nobody holds it and nobody waits in line before this holder: True when taken."""
        if self.in_turn and self._waiting():
            return False
        taken = self._set(fcntl.F_WRLCK, self.offset) if self.byte_ranges else self._flock()
        if taken:
            self.leave_line()
        return taken

    def get_in_line(self) -> None:
        """Take a ticket, the byte of the line at this microsecond of CLOCK_MONOTONIC (one clock for every
        process) or the next one free: the tickets before it are those who got in line first."""
        if self.in_turn and self.ticket is None:
            at = time.monotonic_ns() // 1000
            while not self._set(fcntl.F_WRLCK, self.line + at % _TICKETS):
                at += 1
            self.ticket = self.line + at % _TICKETS

    def out_of_turn(self) -> None:
        """Leave the line and take the lock whenever it is free, as if there were no line."""
        self.leave_line()
        self.in_turn = False

    def leave_line(self) -> None:
        if self.ticket is not None:
            self._set(fcntl.F_UNLCK, self.ticket)
            self.ticket = None

    def _waiting(self) -> bool:
        """Whether another holder has a ticket taken in the last `fresh` µs before this holder's ticket (anywhere
        in the line, for a holder out of line): the tickets of the line as a ring, from `fresh` µs ago on."""
        start = (time.monotonic_ns() // 1000 - self.fresh) % _TICKETS
        span = self.fresh + _LATE  # a ticket is never taken later than now, give or take a thread's delay
        length = span if self.ticket is None else (self.ticket - self.line - start) % _TICKETS
        if length > span:  # this holder's own ticket is older than that: nobody fresh is before it
            return False
        first = min(length, _TICKETS - start)  # up to the end of the line, then on from its start
        return self._held(start, first) or self._held(0, length - first)

    def _held(self, start: int, length: int) -> bool:
        """Whether another holder has a ticket among `length` bytes of the line from its byte `start`."""
        if length <= 0:
            return False
        asked = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, self.line + start, length, 0)
        got = fcntl.fcntl(self.fd, fcntl.F_OFD_GETLK, asked)
        return bool(struct.unpack("hhqqi", got)[0] != fcntl.F_UNLCK)

    def _set(self, kind: int, start: int) -> bool:
        """Lock (or unlock) byte `start`, as struct flock lays it out on Linux (l_pid 0, as an OFD lock needs)."""
        asked = struct.pack("hhqqi", kind, os.SEEK_SET, start, 1, 0)
        return _unless_busy(fcntl.fcntl, self.fd, fcntl.F_OFD_SETLK, asked)

    def _flock(self) -> bool:
        return _unless_busy(fcntl.flock, self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Release the lock and the ticket (closing the only descriptor of its open description)."""
        fd, self.fd = self.fd, -1
        _OPEN.discard(self)
        if fd >= 0:
            os.close(fd)


def _unless_busy(call: Callable[..., object], *args: object) -> bool:
    """Make a non-blocking lock call: True when it took (or let go), False when another holder has it."""
    try:
        call(*args)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


_OPEN: set[_Attempts] = set()  # the holders whose descriptor is open in this process


def _close_in_child() -> None:
    """In a child forked from this process (a job's `multiprocessing` pool, `os.fork`): its copies of the holders'
    descriptors, closed. A copy is a descriptor of the same open description: the child would keep the lock, or a
    ticket, held once the parent let it go, for as long as it lived (every call of that principal refused)."""
    for attempts in list(_OPEN):
        attempts.close()


os.register_at_fork(after_in_child=_close_in_child)


@contextlib.asynccontextmanager
async def principal_held(
    db_path: str, principal: str, *, byte_ranges: bool = BYTE_RANGES, wait_ms: int = PRINCIPAL_LOCK_WAIT_MS
) -> AsyncIterator[bool]:
    """Hold `principal`'s lock of the database at `db_path` (see the module docstring): StoreLocked after waiting
    `wait_ms`, StoreError when the lock file cannot be opened or locked."""
    attempts = _Attempts(db_path, offset_of(principal), byte_ranges, fresh=wait_ms / 2000)
    try:
        try:
            await _wait_turn(attempts, db_path, wait_ms / 1000)
        except OSError as exc:
            raise StoreError(f"the quota lock file {lock_path(db_path)} cannot be locked: {exc}") from None
        yield True
    finally:
        attempts.close()  # a local file's close: at once, and nothing to await (a cancel cannot cut it short)


async def _wait_turn(attempts: _Attempts, db_path: str, bound: float) -> None:
    """Attempt until the lock is taken: in line after LINE_AFTER, out of turn after half the bound (`bound` s),
    refused after the bound."""
    start, pause = anyio.current_time(), FIRST_PAUSE
    if await anyio.to_thread.run_sync(attempts.first):
        return
    while not attempts.take():
        waited = anyio.current_time() - start
        if waited >= bound:
            raise principal_lock_refused(db_path)
        if waited >= bound / 2:  # one of those before may have stalled
            attempts.out_of_turn()
        elif waited >= LINE_AFTER:
            attempts.get_in_line()
        await anyio.sleep(min(FIRST_PAUSE if attempts.ticket is not None else pause, bound - waited))
        pause = min(2 * pause, LONGEST_PAUSE)
