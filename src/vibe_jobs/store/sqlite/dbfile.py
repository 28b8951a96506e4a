"""The database file under an open store: what SQLite cannot see through its open connection.

A connection keeps working on its file after the file was deleted or replaced: its writes then go to a
file nobody can open again, and the jobs are gone when the server stops. It also keeps working when
nobody else could open the file any more (its mode, a directory made read-only, the file overwritten).
`problem` says which, for health and /readyz (`JobStore.problem`).
"""

from __future__ import annotations

import os
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
    return Opened(file_id(path), file_id(path + "-wal"), had_header)


def problem(path: str, was: Opened | None) -> str | None:
    """What is wrong with the file at `path` for a store that opened it as `was`; None: nothing."""
    lost = "jobs written now are lost when the server stops; restore the file or restart the server"
    now = file_id(path)
    if now is None and not os.path.lexists(path):
        return f"the database file {path} was deleted while the store had it open: {lost}"
    if was is not None and was.db is not None and now is not None and now != was.db:
        return f"the database file {path} was replaced while the store had it open: {lost}"
    if was is not None and was.wal is not None and file_id(path + "-wal") != was.wal:
        return f"the write-ahead log {path}-wal (the newest writes) was deleted or replaced while open: {lost}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        return f"the database file cannot be opened: {exc}"
    if not head and was is not None and was.had_header:
        return f"the database file {path} was emptied while the store had it open: {lost}"
    if head and head != MAGIC:
        return f"{path} is not a SQLite database any more"
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return f"the directory of {path} is not writable"
    return None
