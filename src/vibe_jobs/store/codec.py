"""JobRecord <-> database row, shared by the SQL stores (SQLite and PostgreSQL).

Rows are selected in `JobRecord` field order (`COLUMNS`) so decoding is positional; JSON columns (params,
result, diagnostics, detail_metadata) and the TaskSpec (`task`) are stored as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import make_scanner
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from vibe_jobs.errors import StoreError
from vibe_jobs.models import JobRecord, TaskSpec
from vibe_jobs.results import json_safe, readable
from vibe_jobs.states import JobStatus

if TYPE_CHECKING:
    from vibe_jobs.store.base import JobQuery

# Columns in `JobRecord` field order, so a row maps onto the dataclass positionally.
COLUMNS = (
    "id", "tool_name", "params", "status", "created_at", "updated_at", "version", "progress_message",
    "progress_percentage", "result", "current_stage", "sub_progress", "diagnostics", "detail_metadata",
    "last_access_time", "access_count", "next_check_time", "task", "priority", "dedupe_key", "owner",
    "attempt", "retry_count", "error_count", "run_after", "started_at", "finished_at", "cancel_requested",
    "cpu_seconds", "peak_memory_mb", "trace_context", "principal", "schedule_id", "tick", "waiting_for",
    "stage_history",
)  # fmt: skip

Row = Sequence[Any]

# Dedupe is one step: at most one active job per dedupe key, which the insert keeps (`DEDUPE_CONFLICT`). Equal
# calls at once, in one process or several, each found no job and each inserted one (review helper-60 F4).
# Schema step 13 of both SQL stores (released: never edited); duplicates a database holds already keep their
# newest job's key.
_ACTIVE_KEY = "dedupe_key IS NOT NULL AND status IN ('pending', 'running')"
ONE_ACTIVE_PER_DEDUPE_KEY = [
    f"""UPDATE jobs SET dedupe_key = NULL WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (
        PARTITION BY dedupe_key ORDER BY created_at DESC, id DESC) AS n FROM jobs WHERE {_ACTIVE_KEY}) AS ranked
        WHERE n > 1)""",
    "DROP INDEX jobs_dedupe",
    f"CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE {_ACTIVE_KEY}",
]
# A principal's active jobs, its own index: a quota's count (`JobStore.counts(principal, active=True)`) and
# `active(principal=...)` read them, not every job the principal ever had (a create of a principal with 10,000
# retained jobs took 3.7 ms on SQLite; with 100,000, creates waiting in line for its quota were refused).
# Schema step 14 of both SQL stores.
ACTIVE_BY_PRINCIPAL = [
    "CREATE INDEX jobs_active_by ON jobs (principal, created_at, id) WHERE status IN ('pending', 'running')"
]
# What an insert of a job does when an active job holds its dedupe key: nothing (store/base.py: JobStore.insert).
DEDUPE_CONFLICT = f" ON CONFLICT (dedupe_key) WHERE {_ACTIVE_KEY} DO NOTHING"


def select_list(with_result: bool = True, table: str = "", with_params: bool = True) -> str:
    """The columns a SELECT of whole records names (`table.`-qualified when given); without the result,
    NULL in its place (the row still decodes positionally, its `result` None); without the params, `'{}'`."""
    left_out = {c: v for c, v, out in (("result", "NULL", not with_result), ("params", "'{}'", not with_params)) if out}
    return ", ".join(left_out.get(c) or f"{table}{c}" for c in COLUMNS)


WHOLE = select_list()  # every column


def columns_of(query: JobQuery) -> str:
    """The columns a `query` reads (`select_list`): whole records, or views without results or params."""
    return view_columns(query.with_result, query.with_params)


@lru_cache(maxsize=4)
def view_columns(with_result: bool, with_params: bool) -> str:
    """The columns a read of records (`query`, `get_many`) names: whole, or views without results or params."""
    return select_list(with_result, with_params=with_params)


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
    C scanner, without `json.loads`'s wrapper; anything else goes the usual way."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)
    return value if end == len(text) else _decoder.decode(text)


def loads_safe(text: str | bytes) -> Any:
    """`loads`, then made JSON-safe (`results.json_safe`) when the text holds what could not be answered:
    a lone surrogate, NaN or an infinity, bytes that are not UTF-8 (never written by this store, but a
    database is a file)."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace")
    value = loads(text)
    if "\\ud" in text or "NaN" in text or "Infinity" in text or not text.isascii():
        return json_safe(value)
    return readable(value, text)


_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
# A member hashes and compares as its value, so this maps members and plain strings alike to the
# stored text without the (slow, Python-level) `.value` property of an enum member.
_STATUS_TEXT: dict[str, str] = {s.value: s.value for s in JobStatus}

_fields = attrgetter(*COLUMNS)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _task_json(task: TaskSpec | None) -> str | None:
    return None if task is None else task.model_dump_json(by_alias=True)


def status_text(status: JobStatus | str) -> str:
    try:
        return _STATUS_TEXT[status]
    except KeyError:
        raise StoreError(f"unknown job status {status!r}") from None


# Per-column converters to the stored form (columns not listed are stored as they are).
ENCODE: dict[str, Callable[[Any], Any]] = {
    "params": _dumps, "status": status_text, "result": _json_or_none,
    "diagnostics": _json_or_none, "detail_metadata": _json_or_none, "task": _task_json,
    "waiting_for": _json_or_none,
    "stage_history": _json_or_none,
}  # fmt: skip
_ENCODE_AT = [(COLUMNS.index(name), fn) for name, fn in ENCODE.items()]
_I_PARAMS, _I_STATUS, _I_RESULT, _I_DIAG, _I_META, _I_TASK, _I_WAIT, _I_STAGES = (
    COLUMNS.index(c)
    for c in ("params", "status", "result", "diagnostics", "detail_metadata", "task", "waiting_for", "stage_history")
)


def encode(rec: JobRecord) -> list[Any]:
    """The INSERT parameters of a record."""
    row = list(_fields(rec))
    for i, fn in _ENCODE_AT:
        row[i] = fn(row[i])
    return row


def decode(row: Row) -> JobRecord:
    r = list(row)
    r[_I_PARAMS] = loads_safe(r[_I_PARAMS])
    r[_I_STATUS] = _STATUS[r[_I_STATUS]]
    for i in (_I_RESULT, _I_DIAG, _I_META, _I_WAIT, _I_STAGES):
        if r[i] is not None:
            r[i] = loads_safe(r[i])
    if r[_I_TASK] is not None:
        r[_I_TASK] = TaskSpec.model_validate_json(r[_I_TASK])
    return JobRecord(*r)


def change_values(changes: Mapping[str, Any]) -> list[Any]:
    get = ENCODE.get
    return [v if (fn := get(k)) is None else fn(v) for k, v in changes.items()]


def query_args(query: JobQuery) -> list[Any]:
    """The parameters of a `JobQuery`'s statement (each dialect's `query_sql`), in its order: the status, the
    tool name, the principal, the page's (created_at, id), the limit; a filter not given has none."""
    args: list[Any] = [] if query.status is None else [ENCODE["status"](query.status)]
    if query.tool_name is not None:
        args.append(query.tool_name)
    if query.principal is not None:
        args.append(query.principal)
    if query.before is not None:
        args += query.before
    args.append(query.limit)
    return args
