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
memory), so a crashed holder never blocks the others. The file is empty and stays (deleting a lock file others
may hold is how two holders end up on two files).

Waiting: non-blocking attempts, the first at once, then after pauses doubling from 1 ms up to 16 ms, for at most
PRINCIPAL_LOCK_WAIT_MS; a holder that keeps it longer has stalled (a stopped or hung process) and the call is
refused (StoreLocked, "try again"). A blocking wait (F_OFD_SETLKW) could not be given up on: it would keep its
thread until the stalled holder went on, then take the lock for nobody. The attempts run on a worker thread (they
open a file), the pauses on the event loop (no thread waits).

Where there is no open-file-description lock (not Linux), the whole file is locked (`flock`, also held by the open
description): every principal shares the one lock there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import struct
from collections.abc import AsyncIterator

import anyio

from vibe_jobs.errors import StoreError
from vibe_jobs.store.base import PRINCIPAL_LOCK_WAIT_MS, principal_lock_refused

SUFFIX = "-quota"
FIRST_PAUSE, LONGEST_PAUSE = 0.001, 0.016  # seconds between attempts
_OFFSETS = 1 << 62  # a byte in [0, 2**62): a lock's start and end stay within off_t
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
    """One holder's descriptor and its attempts to take the lock (each on a worker thread)."""

    __slots__ = ("byte_ranges", "fd", "offset", "path")

    def __init__(self, path: str, offset: int, byte_ranges: bool) -> None:
        self.path, self.offset, self.byte_ranges = path, offset, byte_ranges
        self.fd: int | None = None

    def take(self) -> bool:
        """Take the lock if nobody holds it: True when taken."""
        if self.fd is None:  # kept here at once: whoever gave up waiting for this thread still closes it
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a link planted there is not followed
            self.fd = os.open(lock_path(self.path), flags, 0o600)
        try:
            if self.byte_ranges:  # struct flock as Linux lays it out (l_pid 0, as an OFD lock needs)
                asked = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, self.offset, 1, 0)
                fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, asked)
            else:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            raise
        return True

    def close(self) -> None:
        """Release the lock (closing the only descriptor of its open description)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


@contextlib.asynccontextmanager
async def principal_held(
    db_path: str, principal: str, *, byte_ranges: bool = BYTE_RANGES, wait_ms: int = PRINCIPAL_LOCK_WAIT_MS
) -> AsyncIterator[bool]:
    """Hold `principal`'s lock of the database at `db_path` (see the module docstring): StoreLocked after waiting
    `wait_ms`, StoreError when the lock file cannot be opened or locked."""
    attempts = _Attempts(db_path, offset_of(principal), byte_ranges)
    try:
        deadline = anyio.current_time() + wait_ms / 1000
        pause = FIRST_PAUSE
        try:
            while not await anyio.to_thread.run_sync(attempts.take):
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise principal_lock_refused(db_path)
                await anyio.sleep(min(pause, left))
                pause = min(2 * pause, LONGEST_PAUSE)
        except OSError as exc:
            raise StoreError(f"the quota lock file {lock_path(db_path)} cannot be locked: {exc}") from None
        yield True
    finally:
        attempts.close()  # a local file's close: at once, and nothing to await (a cancel cannot cut it short)
