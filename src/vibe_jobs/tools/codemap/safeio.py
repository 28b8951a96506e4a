"""Opening what the walk found, safely: only inside the roots, only regular files, never blocking.

The tree can change between the walk and the read: a directory swapped for a symbolic link to
`/etc`, a file swapped for a FIFO. So what was found is never trusted. Each directory and file is
opened non-blocking (a FIFO or a device cannot hang the worker), and the real path of the open
descriptor (`/proc/self/fd/N`, the kernel's answer, not a second lookup that could race) must lie
inside the roots; a file must then be a regular file (`fstat`). A file whose size is 0 is not
read at all: that is what `/proc` files report, and reading some of them (`/proc/kmsg`) blocks or
consumes data.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vibe_jobs.tools.roots import is_within

FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC
_FD_LINKS = Path("/proc/self/fd")
_READ_CHUNK = 1 << 20


class Refused(Exception):
    """What was found is not served: `reason` is the skip counter it counts under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def real_path_of(fd: int, opened_as: str) -> str:
    """Where the open descriptor `fd` really is (falls back to resolving `opened_as` without /proc)."""
    try:
        return os.readlink(_FD_LINKS / str(fd))
    except OSError:
        return os.path.realpath(opened_as)  # no /proc: a second lookup, which a swap could race


@contextmanager
def opened(path: str, roots: Sequence[Path], flags: int) -> Iterator[int]:
    """`path` opened with `flags`, refused ("symlink-outside-roots") unless it really is inside the roots."""
    fd = os.open(path, flags)
    try:
        if not is_within(Path(real_path_of(fd, path)), roots):
            raise Refused("symlink-outside-roots")
        yield fd
    finally:
        os.close(fd)


def read_regular(path: str, roots: Sequence[Path], limit: int) -> bytes:
    """The content of a regular file inside the roots, at most `limit` bytes.

    Raises Refused ("special", "too-large", "symlink-outside-roots") or OSError.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # do not even open a FIFO or a device found here
        raise Refused("special")
    with opened(path, roots, FILE_FLAGS) as fd:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped in after the check above
            raise Refused("special")
        if info.st_size > limit:
            raise Refused("too-large")
        data = _read(fd, limit + 1) if info.st_size else b""
    if len(data) > limit:  # it grew while read
        raise Refused("too-large")
    return data


def _read(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := os.read(fd, min(size, _READ_CHUNK))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
