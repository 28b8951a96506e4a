"""Stores that count the jobs they read, for tests and benchmarks that measure how often a path reads the store
(instrumentation only: every call goes to the real store). Not loaded by default."""

from __future__ import annotations

from typing import cast

from vibe_jobs.models import JobRecord
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore


class CountingReads:
    """Put before a store class (`class Counted(CountingReads, PostgresStore)`): `reads` counts its `get` calls."""

    reads = 0

    async def get(self, job_id: str) -> JobRecord | None:
        self.reads += 1
        return await cast(JobStore, super()).get(job_id)


class CountingMemory(CountingReads, MemoryStore):
    """The memory store, counting the jobs read."""


class CountingSQLite(CountingReads, SQLiteStore):
    """The SQLite store, counting the jobs read."""
