"""What the store saw: an audit trigger on the job table, installed by the harness (never by the product).

Every insert, and every update that changes a job's status, attempt, owner, result, progress message
or cancel request, adds a row to `fault_audit` in the same transaction, stamped with the database
clock (microseconds since the epoch: comparable with the execution log and the history on one
machine). So the audit holds every state change the store committed, in commit-consistent order, even
across a crash of the database: a change and its audit row commit together or not at all.

`dump_*` write the audit and the final job table as JSON lines (JSON columns parsed).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

AUDIT_COLUMNS = (
    "seq", "at_us", "op", "id", "old_status", "new_status", "old_attempt", "new_attempt", "old_owner",
    "new_owner", "had_result", "result", "progress", "cancel",
)  # fmt: skip
JSON_COLUMNS = ("params", "result", "task", "diagnostics", "detail_metadata")

_CHANGED = (
    "OLD.status IS DISTINCT FROM NEW.status OR OLD.attempt IS DISTINCT FROM NEW.attempt"
    " OR OLD.owner IS DISTINCT FROM NEW.owner OR OLD.result::TEXT IS DISTINCT FROM NEW.result::TEXT"
    " OR OLD.progress_message IS DISTINCT FROM NEW.progress_message"
    " OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested"
)

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS fault_audit (
        seq BIGSERIAL PRIMARY KEY, at_us BIGINT NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL,
        old_status TEXT, new_status TEXT, old_attempt BIGINT, new_attempt BIGINT, old_owner TEXT, new_owner TEXT,
        had_result BOOLEAN, result TEXT, progress TEXT, cancel TEXT)""",
    """CREATE OR REPLACE FUNCTION fault_audit_row() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO fault_audit (at_us, op, id, new_status, new_attempt, new_owner, had_result, result,
                progress, cancel)
            VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT, 'insert', NEW.id, NEW.status,
                NEW.attempt, NEW.owner, FALSE, NEW.result::TEXT, NEW.progress_message, NEW.cancel_requested);
        ELSE
            INSERT INTO fault_audit (at_us, op, id, old_status, new_status, old_attempt, new_attempt, old_owner,
                new_owner, had_result, result, progress, cancel)
            VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT, 'update', NEW.id, OLD.status,
                NEW.status, OLD.attempt, NEW.attempt, OLD.owner, NEW.owner, OLD.result IS NOT NULL,
                CASE WHEN OLD.result::TEXT IS DISTINCT FROM NEW.result::TEXT THEN NEW.result::TEXT END,
                CASE WHEN OLD.progress_message IS DISTINCT FROM NEW.progress_message THEN NEW.progress_message END,
                NEW.cancel_requested);
        END IF;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS fault_audit_insert ON jobs",
    "CREATE TRIGGER fault_audit_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION fault_audit_row()",
    "DROP TRIGGER IF EXISTS fault_audit_update ON jobs",
    f"""CREATE TRIGGER fault_audit_update AFTER UPDATE ON jobs FOR EACH ROW WHEN ({_CHANGED})
        EXECUTE FUNCTION fault_audit_row()""",
]

_SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
SQLITE = [
    """CREATE TABLE IF NOT EXISTS fault_audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at_us INTEGER NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL,
        old_status TEXT, new_status TEXT, old_attempt INTEGER, new_attempt INTEGER, old_owner TEXT,
        new_owner TEXT, had_result INTEGER, result TEXT, progress TEXT, cancel TEXT)""",
    f"""CREATE TRIGGER IF NOT EXISTS fault_audit_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO fault_audit (at_us, op, id, new_status, new_attempt, new_owner, had_result, result, progress,
            cancel)
        VALUES ({_SQLITE_NOW}, 'insert', NEW.id, NEW.status, NEW.attempt, NEW.owner, 0, NEW.result,
            NEW.progress_message, NEW.cancel_requested);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS fault_audit_update AFTER UPDATE ON jobs
    WHEN ({_CHANGED.replace("::TEXT", "").replace("IS DISTINCT FROM", "IS NOT")}) BEGIN
        INSERT INTO fault_audit (at_us, op, id, old_status, new_status, old_attempt, new_attempt, old_owner,
            new_owner, had_result, result, progress, cancel)
        VALUES ({_SQLITE_NOW}, 'update', NEW.id, OLD.status, NEW.status, OLD.attempt, NEW.attempt, OLD.owner,
            NEW.owner, OLD.result IS NOT NULL,
            CASE WHEN OLD.result IS NOT NEW.result THEN NEW.result END,
            CASE WHEN OLD.progress_message IS NOT NEW.progress_message THEN NEW.progress_message END,
            NEW.cancel_requested);
    END""",
]


async def install_postgres(conn: Any) -> None:
    """Install the audit on an asyncpg connection whose search_path names the job schema."""
    for statement in POSTGRES:
        await conn.execute(statement)


def install_sqlite(db: Path) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        for statement in SQLITE:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def parse_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A job row with its JSON columns as values (SQLite and asyncpg hand them over as text)."""
    for key in JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


async def dump_postgres(conn: Any, out: Path) -> None:
    audit = [dict(r) for r in await conn.fetch(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM fault_audit ORDER BY seq")]
    _write_lines(out / "audit.jsonl", audit)
    jobs = [parse_json_columns(dict(r)) for r in await conn.fetch("SELECT * FROM jobs ORDER BY seq")]
    for job in jobs:
        job.pop("deps", None)  # the task holds them; asyncpg gives TEXT[] as a list anyway
    _write_lines(out / "jobs.jsonl", jobs)


def dump_sqlite(db: Path, out: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        audit = [dict(r) for r in conn.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM fault_audit ORDER BY seq")]
        for row in audit:
            row["had_result"] = None if row["had_result"] is None else bool(row["had_result"])
        jobs = [parse_json_columns(dict(r)) for r in conn.execute("SELECT * FROM jobs ORDER BY rowid")]
    finally:
        conn.close()
    _write_lines(out / "audit.jsonl", audit)
    _write_lines(out / "jobs.jsonl", jobs)
