"""JobRecord <-> SQLite row, and the SQL text of each statement shape (built once, then cached).

Rows are selected in `JobRecord` field order so decoding is positional; JSON columns (params,
result, diagnostics, detail_metadata) and the TaskSpec (`task`) are stored as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import make_scanner
from operator import attrgetter
from typing import Any

from vibe_jobs.errors import StoreError
from vibe_jobs.models import JobRecord, TaskSpec
from vibe_jobs.states import ACTIVE, JobStatus
from vibe_jobs.store.sqlite_schema import ACTIVE_SQL, COLUMNS, FINAL_SQL

Row = Sequence[Any]


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder built once (json.dumps builds one per call); ASCII output, so lone surrogates are safe.
_encoder = c_make_encoder(None, _unserialisable, encode_basestring_ascii, None, ":", ",", False, False, False)


def _dumps(value: Any) -> str:
    return "".join(_encoder(value, 0))


_decoder = json.JSONDecoder()
_scan = make_scanner(_decoder)  # type: ignore[arg-type]  # typeshed: it takes the decoder


def loads(text: str) -> Any:
    """Parse stored JSON. What this store writes (compact, nothing around it) takes one call into json's
    C scanner, half the cost of `json.loads`; anything else goes the usual way."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)
    return value if end == len(text) else _decoder.decode(text)


_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
# A member hashes and compares as its value, so this maps members and plain strings alike to the
# stored text without the (slow, Python-level) `.value` property of an enum member.
_STATUS_TEXT: dict[str, str] = {s.value: s.value for s in JobStatus}

SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
INSERT = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_RETURNING = f" RETURNING {', '.join(COLUMNS)}"
_fields = attrgetter(*COLUMNS)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _task_json(task: TaskSpec | None) -> str | None:
    return None if task is None else task.model_dump_json(by_alias=True)


def _status_text(status: JobStatus | str) -> str:
    try:
        return _STATUS_TEXT[status]
    except KeyError:
        raise StoreError(f"unknown job status {status!r}") from None


# Per-column converters to the stored form (columns not listed are stored as they are).
ENCODE: dict[str, Callable[[Any], Any]] = {
    "params": _dumps, "status": _status_text, "result": _json_or_none,
    "diagnostics": _json_or_none, "detail_metadata": _json_or_none, "task": _task_json,
}  # fmt: skip
_ENCODE_AT = [(COLUMNS.index(name), fn) for name, fn in ENCODE.items()]
_I_PARAMS, _I_STATUS, _I_RESULT, _I_DIAG, _I_META, _I_TASK = (
    COLUMNS.index(c) for c in ("params", "status", "result", "diagnostics", "detail_metadata", "task")
)


def encode(rec: JobRecord) -> list[Any]:
    """The INSERT parameters of a record."""
    row = list(_fields(rec))
    for i, fn in _ENCODE_AT:
        row[i] = fn(row[i])
    return row


def decode(row: Row) -> JobRecord:
    r = list(row)
    r[_I_PARAMS] = loads(r[_I_PARAMS])
    r[_I_STATUS] = _STATUS[r[_I_STATUS]]
    for i in (_I_RESULT, _I_DIAG, _I_META):
        if r[i] is not None:
            r[i] = loads(r[i])
    if r[_I_TASK] is not None:
        r[_I_TASK] = TaskSpec.model_validate_json(r[_I_TASK])
    return JobRecord(*r)


def change_values(changes: Mapping[str, Any]) -> list[Any]:
    get = ENCODE.get
    return [v if (fn := get(k)) is None else fn(v) for k, v in changes.items()]


@lru_cache(maxsize=512)
def update_sql(
    keys: tuple[str, ...], by_version: bool, by_attempt: bool, n_statuses: int, returning: bool = True
) -> str:
    """`UPDATE ... WHERE id = ? AND <guards> [RETURNING *]`; n_statuses < 0: no status guard."""
    sets = "".join(f"{k} = ?, " for k in keys)
    where = "id = ?" + (" AND version = ?" if by_version else "") + (" AND attempt = ?" if by_attempt else "")
    if n_statuses >= 0:
        where += f" AND status IN ({', '.join('?' * n_statuses)})"
    return f"UPDATE jobs SET {sets}version = version + 1 WHERE {where}{_RETURNING if returning else ''}"


def guard_values(
    version: int | None, attempt: int | None, statuses: Collection[JobStatus] | None
) -> tuple[bool, bool, int, list[Any]]:
    """The guard's shape (for `update_sql`) and its parameters, in WHERE order."""
    values: list[Any] = [] if version is None else [version]
    if attempt is not None:
        values.append(attempt)
    if statuses is not None:
        values.extend(_status_text(s) for s in statuses)
    return version is not None, attempt is not None, -1 if statuses is None else len(statuses), values


@lru_cache(maxsize=64)
def query_sql(status: JobStatus | None, by_tool: bool, paged: bool) -> str:
    """Newest first; the status filter repeats its partial index's condition so SQLite uses it."""
    if status is not None and status in ACTIVE:
        return _query_sql(" INDEXED BY jobs_active", ["status = ?", ACTIVE_SQL], by_tool, paged)
    return _query_sql("", [] if status is None else ["status = ?", FINAL_SQL], by_tool, paged)


def _query_sql(index: str, where: list[str], by_tool: bool, paged: bool) -> str:
    if by_tool:
        where.append("tool_name = ?")
    if paged:
        where.append("(created_at, id) < (?, ?)")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"{SELECT}{index}{clause} ORDER BY created_at DESC, id DESC LIMIT ?"
