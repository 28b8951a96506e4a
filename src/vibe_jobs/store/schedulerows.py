"""ScheduleRecord <-> database row, shared by the SQL stores (columns in ScheduleRecord field order)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vibe_jobs.schedules import SCHEDULE_FIELDS, ScheduleRecord
from vibe_jobs.store.codec import loads

COLUMNS = SCHEDULE_FIELDS
_JSON = "arguments"
_BOOL = "paused"
_I_JSON, _I_BOOL = COLUMNS.index(_JSON), COLUMNS.index(_BOOL)


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
