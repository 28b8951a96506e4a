"""Before a SQLite store is upgraded: the servers of the older version that still use it (`store.upgrades`).

Read by the opening process itself (the server process migrates; it imports nothing of vibe_jobs, and which
process has ended is `store.liveness`'s rule): the database's schema step and its live leases, with one read-only
look that changes nothing. A lease is live until it expires or, on this machine, until its process has ended.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from vibe_jobs.store.liveness import ProcessId, has_ended

Live = list[tuple[str, int]]  # (owner id, ms until its lease ends)


def older_servers(path: str, steps: int) -> tuple[int, Live]:
    """(the schema step of the database at `path`, the servers whose live lease holds it) when it has a schema
    step before `steps` (this version's); else (its step, [])."""
    if path == ":memory:" or not os.path.isfile(path) or os.path.getsize(path) == 0:
        return 0, []
    try:
        with contextlib.closing(sqlite3.connect(_read_only(path), uri=True, isolation_level=None)) as conn:
            conn.execute("BEGIN")  # one snapshot: a new server's upgrade and its lease in between are not read apart
            step = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if not 0 < step < steps:
                return step, []
            return step, _live(conn, int(time.time() * 1000))
    except sqlite3.Error:  # unreadable now: the server process says why as it opens the file
        return 0, []


def _read_only(path: str) -> str:
    """The URI that opens `path` read-only: its name escaped ('#' or '%' in it named another file)."""
    return f"{Path(path).absolute().as_uri()}?mode=ro"


def _live(conn: sqlite3.Connection, now: int) -> Live:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(leases)")}
    proc = ", host, pid, started" if {"host", "pid", "started"} <= columns else ", NULL, NULL, NULL"
    rows = conn.execute(f"SELECT owner, expires_at{proc} FROM leases WHERE expires_at > ? ORDER BY owner", (now,))
    return [
        (str(owner), int(expires) - now)
        for owner, expires, host, pid, started in rows.fetchall()
        if host is None or pid is None or not has_ended(ProcessId(str(host), int(pid), started))
    ]
