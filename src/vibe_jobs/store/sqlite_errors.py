"""SQLite failures as `StoreError`s whose message names the condition and the database file."""

from __future__ import annotations

import sqlite3

from vibe_jobs.errors import StoreError

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


def condition(exc: sqlite3.Error) -> str:
    """The primary result-code name without its prefix: FULL, BUSY, CONSTRAINT, ..."""
    name = getattr(exc, "sqlite_errorname", None) or "ERROR"
    parts = name.split("_")
    return parts[1] if len(parts) > 1 else parts[0]


def store_error(exc: sqlite3.Error, where: str) -> StoreError:
    cond = condition(exc)
    if cond in ("NOTADB", "CORRUPT"):
        return StoreError(f"the job store at {where} is not a SQLite database or is corrupt ({exc})")
    if cond in ("CANTOPEN", "PERM", "READONLY"):
        return open_error(where, f"{_CONDITIONS[cond]} ({exc})")
    text = _CONDITIONS.get(cond, "the database failed")
    return StoreError(f"the job store at {where} failed: {text} (SQLITE_{cond}: {exc})", condition=cond)


def open_error(where: str, why: object) -> StoreError:
    return StoreError(f"cannot open the job store at {where}: {why}")
