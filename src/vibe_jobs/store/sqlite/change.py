"""One `update` of the SQLite store: its values encoded once, its UPDATE statement by shape, and
the record it makes of the one it changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vibe_jobs.models import JobRecord
from vibe_jobs.store import codec
from vibe_jobs.store.base import Guard
from vibe_jobs.store.sqlite import sql
from vibe_jobs.store.sqlite.link import Statement, statement

_SHAPES: dict[tuple[tuple[str, ...], bool, bool, int, bool], Statement] = {}


class Change:
    __slots__ = ("changes", "job_id", "keys", "values")

    def __init__(self, job_id: str, changes: Mapping[str, Any]) -> None:
        self.job_id, self.changes = job_id, dict(changes)
        self.keys = tuple(self.changes)
        self.values = codec.change_values(self.changes)

    def statement(self, guard: Guard, returning: bool) -> tuple[Statement, list[Any]]:
        """`UPDATE ... WHERE id = ? AND <guard> [RETURNING ...]` and its parameters."""
        by_version, by_attempt, n_statuses, guard_args = sql.guard_values(guard.version, guard.attempt, guard.statuses)
        shape = (self.keys, by_version, by_attempt, n_statuses, returning)
        st = _SHAPES.get(shape)
        if st is None:
            st = _SHAPES[shape] = statement(sql.update_sql(*shape), True)
        return st, [*self.values, self.job_id, *guard_args]

    def apply(self, rec: JobRecord) -> JobRecord:
        """The record with the changes applied and the next version (a new record). The values are
        the caller's, as the memory store keeps them; `get` reads back their stored form."""
        return rec.changed(self.changes)
