"""ScheduleRecord <-> database row, shared by the SQL stores (columns in ScheduleRecord field order)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vibe_jobs.firing import Overlap
from vibe_jobs.schedules import SCHEDULE_FIELDS, ScheduleRecord
from vibe_jobs.states import ACTIVE
from vibe_jobs.store.codec import loads

COLUMNS = SCHEDULE_FIELDS
_JSON = "arguments"
_BOOL = "paused"
_I_JSON, _I_BOOL = COLUMNS.index(_JSON), COLUMNS.index(_BOOL)


_ACTIVE_IN = ", ".join(sorted(f"'{status.value}'" for status in ACTIVE))
# `due_schedules` leaves out a schedule its previous job holds (overlap queue, that job pending or running):
# `firing.plan` would hold it anyway, and reading it (up to 1 MiB of arguments) and its job on every pass kept a
# server busy.
NOT_HELD_SQL = (
    f"NOT (overlap = '{Overlap.QUEUE.value}' AND EXISTS (SELECT 1 FROM jobs"
    f" WHERE jobs.id = schedules.last_job_id AND jobs.status IN ({_ACTIVE_IN})))"
)


def list_sql(arguments: bool, where: str, limit: str) -> str:
    """The listing of schedules, oldest first (`where`: its condition, or ""; `limit`: the placeholder of its
    LIMIT); without `arguments`, {} is read in their place (the SQL stores' `list_schedules`)."""
    columns = ", ".join(f"'{{}}' AS {name}" if name == _JSON and not arguments else name for name in COLUMNS)
    return f"SELECT {columns} FROM schedules{where} ORDER BY created_at, schedule_id LIMIT {limit}"


def _value(name: str, value: Any) -> Any:
    if name == _JSON:
        return canonical(value)
    if name == _BOOL:
        return bool(value)
    return value


def canonical(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def encode(rec: ScheduleRecord) -> list[Any]:
    return [_value(name, getattr(rec, name)) for name in COLUMNS]


def decode(row: Sequence[Any]) -> ScheduleRecord:
    r = list(row)
    r[_I_JSON] = loads(r[_I_JSON])
    r[_I_BOOL] = bool(r[_I_BOOL])
    return ScheduleRecord(*r)


def change_values(changes: Mapping[str, Any]) -> list[Any]:
    return [_value(name, value) for name, value in changes.items()]


def check_changes(changes: Mapping[str, Any]) -> None:
    bad = [name for name in changes if name not in COLUMNS or name in ("schedule_id", "version")]
    if bad:
        raise ValueError(f"a schedule has no updatable field {bad[0]!r}")
