"""The PostgreSQL store: many servers and workers share one job table (needs `vibe-jobs[postgres]`)."""

from __future__ import annotations

from vibe_jobs.store.base import ClaimLimits, JobChange
from vibe_jobs.store.postgres.store import PostgresStore, parse_url, redact

__all__ = ["ClaimLimits", "JobChange", "PostgresStore", "parse_url", "redact"]
