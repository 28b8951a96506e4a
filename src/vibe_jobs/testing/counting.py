"""Stores that count the jobs they read, for tests and benchmarks that measure how often a path reads the store
(instrumentation only: every call goes to the real store). Not loaded by default."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from vibe_jobs.models import JobRecord
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore


class CountingReads:
    """Put before a store class (`class Counted(CountingReads, PostgresStore)`): `reads` counts the jobs it reads by
    id: one a `get` call, and each id a `get_many` call asks for; `calls` counts the calls (a round trip each)."""

    reads = 0
    calls = 0

    async def get(self, job_id: str) -> JobRecord | None:
        self.reads += 1
        self.calls += 1
        return await cast(JobStore, super()).get(job_id)

    async def get_many(
        self, job_ids: Collection[str], principal: str | None = None, *, whole: bool = True
    ) -> dict[str, JobRecord]:
        self.reads += len(job_ids)
        self.calls += 1
        return await cast(JobStore, super()).get_many(job_ids, principal, whole=whole)


class CountingMemory(CountingReads, MemoryStore):
    """The memory store, counting the jobs read."""


class CountingSQLite(CountingReads, SQLiteStore):
    """The SQLite store, counting the jobs read."""
