"""Job stores behind one protocol, chosen by URL (`memory://`, `sqlite:///path`, `postgresql://...`)."""

from __future__ import annotations

import os

from vibe_jobs.errors import ConfigError
from vibe_jobs.redact import redact_url
from vibe_jobs.store.base import Guard, JobQuery, JobStore
from vibe_jobs.store.memory import MemoryStore

__all__ = ["Guard", "JobQuery", "JobStore", "MemoryStore", "missing_database", "open_store"]


def open_store(url: str) -> JobStore:
    """Build (not yet open) the store a URL names; drivers are imported only when needed."""
    if url.startswith("memory://"):
        return MemoryStore(url)
    if url.startswith("sqlite://"):
        from vibe_jobs.store.sqlite import SQLiteStore

        store: JobStore = SQLiteStore(url)
        return store
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from vibe_jobs.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs its driver: pip install 'vibe-jobs[postgres]' ({exc})"
            ) from None
        pg: JobStore = PostgresStore(url)
        return pg
    raise ConfigError(f"unknown store URL {redact_url(url)!r}: use memory://, sqlite:///path or postgresql://...")


def missing_database(store: JobStore) -> str | None:
    """What is missing when `store` is a SQLite file that does not exist, else None: the operator's commands
    (`jobs`, `schedules`, `health`, `dashboard`) refuse it rather than create an empty database for a mistyped path."""
    path = getattr(store, "path", None)
    if store.url.startswith("sqlite:") and isinstance(path, str) and path != ":memory:" and not os.path.exists(path):
        return (
            f"no SQLite database at {path}: no job store at that path; check --store, or start `vibe-jobs serve` "
            "on it first (a server creates its store when it first starts)"
        )
    return None
