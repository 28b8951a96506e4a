"""The SQLite store: SQL runs in a server process of its own (`server`), reached over a socket (`link`)."""

from __future__ import annotations

from vibe_jobs.store.sqlite.store import SQLiteStore, parse_url

__all__ = ["SQLiteStore", "parse_url"]
