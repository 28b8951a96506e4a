"""Job stores behind one protocol, chosen by URL (`memory://`, `sqlite:///path`, `postgresql://...`)."""

from __future__ import annotations

from vibe_jobs.errors import ConfigError
from vibe_jobs.redact import redact_url
from vibe_jobs.store.base import Guard, JobQuery, JobStore
from vibe_jobs.store.memory import MemoryStore

__all__ = ["Guard", "JobQuery", "JobStore", "MemoryStore", "open_store"]


def open_store(url: str, *, existing: bool = False) -> JobStore:
    """Build (not yet open) the store a URL names; drivers are imported only when needed. `existing`: its `open()`
    refuses a store no server made (a SQLite file or a PostgreSQL schema that is not there), naming it: the
    operator's commands (`jobs`, `schedules`, `health`, `dashboard`) must not make an empty store for a mistyped
    --store and answer "no jobs"."""
    if url.startswith("memory://"):
        return MemoryStore(url)
    if url.startswith("sqlite://"):
        from vibe_jobs.store.sqlite import SQLiteStore

        store: JobStore = SQLiteStore(url, existing=existing)
        return store
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from vibe_jobs.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs its driver: pip install 'vibe-jobs[postgres]' ({exc})"
            ) from None
        pg: JobStore = PostgresStore(url, existing=existing)
        return pg
    raise ConfigError(f"unknown store URL {redact_url(url)!r}: use memory://, sqlite:///path or postgresql://...")
