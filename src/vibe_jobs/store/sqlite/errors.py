"""SQLite failures as `StoreError`s whose message names the condition and the database file.

The SQLite server process reports a failure as `(kind, name, message)` (see `sqlite.server`):
kind "sqlite" with the result-code name (SQLITE_FULL, ...), "python" with an exception class name,
or "newer" with the schema version of a database written by a newer vibe-jobs.
"""

from __future__ import annotations

import builtins

from vibe_jobs.errors import StoreError
from vibe_jobs.store.sqlite.schema import SCHEMA_VERSION
from vibe_jobs.store.sqlite.server import Failure

_CONDITIONS = {
    "FULL": "the disk is full; free some space (the store stays usable once there is room)",
    "BUSY": "the database is locked by another process (gave up after the busy timeout)",
    "LOCKED": "the database is locked by another connection",
    "NOTADB": "it is not a SQLite database or is corrupt",
    "CORRUPT": "it is not a SQLite database or is corrupt",
    "IOERR": "a disk I/O error occurred",
    "READONLY": "the database file or its directory is read-only",
    "CANTOPEN": "the file cannot be opened or created",
    "PERM": "permission denied",
}


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
    if kind == "python":
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:  # e.g. UnicodeEncodeError takes five arguments
                pass
        return StoreError(f"the job store at {where} failed: {name}: {message}")
    return sqlite_error(condition(name), message, where)


def sqlite_error(cond: str, message: str, where: str) -> StoreError:
    if cond in ("NOTADB", "CORRUPT"):
        return StoreError(f"the job store at {where} is not a SQLite database or is corrupt ({message})")
    if cond in ("CANTOPEN", "PERM", "READONLY"):
        return open_error(where, f"{_CONDITIONS[cond]} ({message})")
    text = _CONDITIONS.get(cond, "the database failed")
    return StoreError(f"the job store at {where} failed: {text} (SQLITE_{cond}: {message})", condition=cond)


def open_error(where: str, why: object) -> StoreError:
    return StoreError(f"cannot open the job store at {where}: {why}")
