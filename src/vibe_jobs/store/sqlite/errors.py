"""SQLite failures as `StoreError`s of their condition, with a message naming it and the database file.

The SQLite server process reports a failure as `(kind, name, message)` (see `sqlite.server`):
kind "sqlite" with the extended result-code name (SQLITE_FULL, SQLITE_CONSTRAINT_PRIMARYKEY, ...),
"python" with an exception class name, or "newer" with the schema version of a database written by a
newer vibe-jobs. The condition comes from the result code, never from the message text.
"""

from __future__ import annotations

import builtins
import resource

from vibe_jobs.errors import ConfigError, DuplicateJob, StoreCorrupt, StoreError, StoreFull, StoreLocked
from vibe_jobs.store.sqlite.schema import SCHEMA_VERSION
from vibe_jobs.store.sqlite.server import Failure

# primary result code -> (the error class, what it means to the user)
_CONDITIONS: dict[str, tuple[type[StoreError], str]] = {
    "FULL": (StoreFull, "the disk is full; free some space (the store stays usable once there is room)"),
    "BUSY": (StoreLocked, "the database is locked by another process (gave up after the busy timeout)"),
    "LOCKED": (StoreLocked, "the database is locked by another connection"),
    "IOERR": (StoreError, "a disk I/O error occurred"),
}
_CORRUPT = frozenset({"NOTADB", "CORRUPT"})
_CANNOT_OPEN = {
    "READONLY": "the database file or its directory is read-only",
    "CANTOPEN": "the file cannot be opened or created",
    "PERM": "permission denied",
}
# the extended codes of a second row with the same key (the only keys are the primary keys)
_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


def condition(name: str) -> str:
    """The primary result code without its prefix: SQLITE_FULL -> FULL, SQLITE_CONSTRAINT_UNIQUE -> CONSTRAINT."""
    parts = name.split("_")
    return parts[1] if len(parts) > 1 else parts[0]


def failure_error(failure: Failure, where: str) -> Exception:
    kind, name, message = failure
    if kind == "newer":
        return StoreError(
            f"the job store at {where} was written by a newer vibe-jobs "
            f"(schema {message} > {SCHEMA_VERSION}); upgrade vibe-jobs to open it"
        )
    if kind == "foreign":
        return ConfigError(
            f"{where} is another program's database, not a vibe-jobs job store (it holds the tables {message} and "
            "no vibe-jobs schema); it was left as it was: name another file"
        )
    if kind == "python":
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:  # e.g. UnicodeEncodeError takes five arguments
                pass
        return StoreError(f"the job store at {where} failed: {name}: {message}")
    return sqlite_error(name, message, where)


def sqlite_error(name: str, message: str, where: str) -> StoreError:
    """The error of SQLite's (extended) result code `name`, e.g. SQLITE_BUSY."""
    if name in _DUPLICATE:
        return DuplicateJob(f"the job store at {where} holds a row with that key already ({message})")
    cond = condition(name)
    if name == "SQLITE_IOERR_WRITE" and _file_size_limit() is not None:
        cond = "FULL"  # most likely EFBIG: a file at the limit (SQLite reports ENOSPC alone as SQLITE_FULL)
    if cond in _CORRUPT:
        return StoreCorrupt(f"the job store at {where} is not a SQLite database or is corrupt ({message})")
    if cond in _CANNOT_OPEN:
        return open_error(where, f"{_CANNOT_OPEN[cond]} ({message})")
    cls, text = _CONDITIONS.get(cond, (StoreError, "the database failed"))
    return cls(f"the job store at {where} failed: {text} (SQLITE_{cond}: {message}){_size_limit(cond)}")


def _size_limit(cond: str) -> str:
    """A write that failed while this process may write files of a limited size names that limit: past it a
    write fails (EFBIG: SQLITE_IOERR_WRITE, taken for SQLITE_FULL) though the disk has room."""
    limit = _file_size_limit()
    if cond not in ("FULL", "IOERR") or limit is None:
        return ""
    return f"; this process may write files of at most {limit:,} bytes (RLIMIT_FSIZE, ulimit -f): raise the limit"


def _file_size_limit() -> int | None:
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def open_error(where: str, why: object) -> StoreError:
    return StoreError(f"cannot open the job store at {where}: {why}")
