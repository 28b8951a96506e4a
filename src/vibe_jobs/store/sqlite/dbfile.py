"""The database file under an open store: what SQLite cannot see through its open connection.

A connection keeps working on its file after the file was deleted or replaced: its writes then go to a
file nobody can open again, and the jobs are gone when the server stops. It also keeps working when
nobody else could open the file any more (its mode, a directory made read-only, the file overwritten).
`problem` says which, for health and /readyz (`JobStore.problem`).

The shared-memory index (`-shm`) is how the processes that have a database open in WAL mode agree on what
the write-ahead log holds. Deleted while one has it open, a second opener makes a new one, and the two
overwrite each other's writes: the file is corrupt. `unsafe_to_open` refuses that second opening.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
from dataclasses import dataclass

MAGIC = b"SQLite format 3\x00"
FileId = tuple[int, int]  # (device, inode): the file itself, whatever its name


@dataclass(frozen=True, slots=True)
class Opened:
    """The files a store opened: the database and its write-ahead log (which holds the newest writes until a
    checkpoint copies them over), and whether the database had its header then."""

    db: FileId | None
    wal: FileId | None
    had_header: bool
    shm: FileId | None = None


def file_id(path: str) -> FileId | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def opened(path: str) -> Opened:
    """What `problem` compares with later: taken once the store has opened `path`."""
    try:
        had_header = os.path.getsize(path) > 0
    except OSError:
        had_header = False
    return Opened(file_id(path), file_id(path + "-wal"), had_header, file_id(path + "-shm"))


# What is lost and what helps: the open file still holds every job (also those written before it went), and a
# restart does not bring them back (it starts on the file now at the path, or on none).
LOST = "every job in it is lost when this server stops, and a restart does not bring them back"


def moved(path: str, was: Opened | None) -> str | None:
    """Whether the file at `path` is gone or another one than the store opened (`was`)."""
    now = file_id(path)
    if now is None and not os.path.lexists(path):
        return f"the database file {path} was deleted while the store had it open: {LOST}"
    if was is not None and was.db is not None and now is not None and now != was.db:
        return f"the database file {path} was replaced while the store had it open: {LOST}"
    return None


def problem(path: str, was: Opened | None) -> str | None:
    """What is wrong with the file at `path` for a store that opened it as `was`; None: nothing."""
    if (gone := moved(path, was)) is not None:
        return gone
    if was is not None and was.wal is not None and file_id(path + "-wal") != was.wal:
        return (
            f"the write-ahead log {path}-wal (the writes since the last checkpoint) was deleted or replaced while "
            "open: every job written since then, before and after it went, is lost when this server stops"
        )
    if was is not None and was.shm is not None and file_id(path + "-shm") != was.shm:
        return (
            f"the shared-memory index {path}-shm was deleted or replaced while open: another program that opens "
            "the database now would corrupt it (vibe-jobs refuses to); restart this server, which keeps its jobs"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        return f"the database file cannot be opened: {exc}"
    if not head and was is not None and was.had_header:
        return f"the database file {path} was emptied while the store had it open: {LOST}"
    if head and head != MAGIC:
        return f"{path} is not a SQLite database any more"
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return f"the directory of {path} is not writable"
    return None


WAL_MODE = 2  # header bytes 18 and 19 (read and write format versions) of a database in WAL mode
_SHARED_LOCKS = (0x40000000, 512)  # SQLite's lock bytes: an open connection holds a lock among them


def unsafe_to_open(path: str) -> str | None:
    """Why opening the database at `path` now would corrupt it, or None: it is in WAL mode, its `-shm` is gone,
    and another process has it open (that process still uses the index that was deleted)."""
    if not sys.platform.startswith("linux") or os.path.exists(path + "-shm"):  # struct flock as Linux lays it out
        return None
    head = _header(path, 20)
    if head is None or head[: len(MAGIC)] != MAGIC or head[18] != WAL_MODE:
        return None
    holder = lock_holder(path)
    if holder is None:
        return None
    return (
        f"the database {path} is open in process {holder}, whose shared-memory index ({path}-shm) was deleted: "
        "opening it now would corrupt it; stop that process first (it keeps its jobs), then try again"
    )


def lock_holder(path: str) -> int | None:
    """The pid of another process holding a lock on the database file (an open SQLite connection), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        start, length = _SHARED_LOCKS
        asked = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, asked))
    except OSError:
        return None
    finally:
        os.close(fd)
    return pid if kind != fcntl.F_UNLCK else None


def holds_no_store(path: str) -> bool:
    """Whether the file at `path` is a SQLite database no vibe-jobs server made (its migrations never ran: the
    header's `user_version` is 0; an empty file too), read from its header, with no connection of its own (a
    second opener is what `unsafe_to_open` guards against). Unsure is False, left to the store's own opening: a
    write-ahead log beside it (its newest writes, migrations too, may be there and not yet in the header), a file
    that is no SQLite database, one that cannot be read."""
    if os.path.exists(f"{path}-wal") or (head := _header(path, 64)) is None:
        return False
    if not head:
        return True
    return len(head) == 64 and head.startswith(MAGIC) and struct.unpack(">I", head[60:64])[0] == 0


def _header(path: str, size: int) -> bytes | None:
    """The first `size` bytes of the database file (fewer when it is shorter), None when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError:
        return None
