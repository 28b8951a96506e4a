"""One `update` of the SQLite store: its values encoded once, its UPDATE statement by shape, and
the record it makes of the one it changes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from vibe_jobs.models import JobRecord
from vibe_jobs.states import JobStatus
from vibe_jobs.store import sqlite_codec as codec
from vibe_jobs.store._sqlite_link import Statement, _plain_value, statement
from vibe_jobs.store.base import Guard
from vibe_jobs.store.sqlite_schema import COLUMNS

_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
_fields = attrgetter(*COLUMNS)
_SHAPES: dict[tuple[tuple[str, ...], bool, bool, int, bool], Statement] = {}


class Change:
    __slots__ = ("changes", "job_id", "keys", "values")

    def __init__(self, job_id: str, changes: Mapping[str, Any]) -> None:
        self.job_id, self.changes = job_id, dict(changes)
        self.keys = tuple(self.changes)
        self.values = codec.change_values(self.changes)

    def statement(self, guard: Guard, returning: bool) -> tuple[Statement, list[Any]]:
        """`UPDATE ... WHERE id = ? AND <guard> [RETURNING ...]` and its parameters."""
        by_version, by_attempt, n_statuses, guard_args = codec.guard_values(
            guard.version, guard.attempt, guard.statuses
        )
        shape = (self.keys, by_version, by_attempt, n_statuses, returning)
        st = _SHAPES.get(shape)
        if st is None:
            st = _SHAPES[shape] = statement(codec.update_sql(*shape), True)
        return st, [*self.values, self.job_id, *guard_args]

    def apply(self, rec: JobRecord) -> JobRecord:
        """The record with the changes applied and the next version (a new record), made from the
        values as stored: what `get` would read back, sharing nothing with the caller's values."""
        new = JobRecord(*_fields(rec))
        read = _READ.get
        for key, stored in zip(self.keys, self.values, strict=True):
            fn = read(key)
            if fn is not None:
                stored = fn(stored)
            elif type(stored) not in _EXACT:
                stored = _plain(stored)
            setattr(new, key, stored)
        new.version = rec.version + 1
        return new


def _json(text: str | None) -> Any:
    return None if text is None else _loads(text)


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


def _plain(value: Any) -> Any:
    """A str or int subclass (an enum) as the plain value the database stores."""
    for plain in (str, int, float):
        if isinstance(value, plain):
            return _plain_value(value, plain)
    return value


_loads = json.JSONDecoder().decode
_EXACT = frozenset({str, int, float, type(None)})
# columns whose stored form reads back differently from the value given (JSON text, REAL affinity, status text)
_READ: dict[str, Callable[[Any], Any]] = {
    "status": _STATUS.__getitem__, "result": _json, "diagnostics": _json, "detail_metadata": _json,
    "progress_percentage": _real, "sub_progress": _real, "cpu_seconds": _real, "peak_memory_mb": _real,
}  # fmt: skip
