"""The SQL text of each statement shape of the SQLite store (built once, then cached)."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Any

from vibe_jobs.states import ACTIVE, JobStatus
from vibe_jobs.store.codec import COLUMNS, DEDUPE_CONFLICT, WHOLE, select_list, status_text
from vibe_jobs.store.sqlite.schema import ACTIVE_SQL, FINAL_SQL

SELECT = f"SELECT {select_list()} FROM jobs"
INSERT = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}){DEDUPE_CONFLICT}"
_RETURNING = f" RETURNING {select_list()}"


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
        values.extend(status_text(s) for s in statuses)
    return version is not None, attempt is not None, -1 if statuses is None else len(statuses), values


@lru_cache(maxsize=64)
def query_sql(
    status: JobStatus | None, by_tool: bool, paged: bool, by_principal: bool = False, columns: str = WHOLE
) -> str:
    """Newest first; the status filter repeats its partial index's condition so SQLite uses it.
    Parameters in the order `codec.query_args` gives them."""
    select = f"SELECT {columns} FROM jobs"
    if status is not None and status in ACTIVE and not by_principal:
        return _query_sql(f"{select} INDEXED BY jobs_active", ["status = ?", ACTIVE_SQL], by_tool, paged, by_principal)
    where = [] if status is None else ["status = ?", ACTIVE_SQL if status in ACTIVE else FINAL_SQL]
    return _query_sql(select, where, by_tool, paged, by_principal)


def _query_sql(select: str, where: list[str], by_tool: bool, paged: bool, by_principal: bool) -> str:
    if by_tool:
        where.append("tool_name = ?")
    if by_principal:
        where.append("principal = ?")
    if paged:
        where.append("(created_at, id) < (?, ?)")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"{select}{clause} ORDER BY created_at DESC, id DESC LIMIT ?"


@lru_cache(maxsize=8)
def get_many_sql(by_principal: bool, columns: str = WHOLE) -> str:
    """The jobs whose ids a JSON array names (one parameter however many: `json_each`, each a lookup by id), then
    of the principal when given: `+principal` keeps SQLite from reading the principal's index instead, every job
    the principal ever had for a page of ids."""
    where = "id IN (SELECT value FROM json_each(?))" + (" AND +principal = ?" if by_principal else "")
    return f"SELECT {columns} FROM jobs WHERE {where}"
