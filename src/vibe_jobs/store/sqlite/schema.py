"""The SQLite schema: connection pragmas and the versioned, forward-only migrations.

`PRAGMA user_version` holds how many steps of `MIGRATIONS` a database has had. A step is a list of
statements run in one transaction; steps are never edited once released, only appended. The
SQLite server process (`sqlite.server.connect`) applies them.
"""

from __future__ import annotations

from vibe_jobs.store import codec

ACTIVE_SQL = "status IN ('pending', 'running')"
# Finished, as the partial indexes of schema 2 spell it: SQLite tests a two-value list with two
# comparisons but builds a temporary b-tree for a longer one, at every evaluation: an UPDATE that
# changes `status` evaluates each partial index's condition on the old and the new row, so schema 1's
# three-value `IN` built that b-tree at every status change (bench/MEASUREMENTS.md).
# A query uses a partial index only when its WHERE repeats the index's condition word for word.
FINAL_SQL = "status NOT IN ('pending', 'running')"
_FINAL_V1 = "status IN ('completed', 'failed', 'cancelled')"  # schema 1's spelling (released: unchanged)

_V1 = [
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL, tool_name TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL,
        progress_message TEXT, progress_percentage REAL, result TEXT, current_stage TEXT,
        sub_progress REAL, diagnostics TEXT, detail_metadata TEXT, last_access_time INTEGER,
        access_count INTEGER NOT NULL, next_check_time INTEGER, task TEXT, priority INTEGER NOT NULL,
        dedupe_key TEXT, owner TEXT, attempt INTEGER NOT NULL, retry_count INTEGER NOT NULL,
        error_count INTEGER NOT NULL, run_after INTEGER, started_at INTEGER, finished_at INTEGER,
        cancel_requested TEXT, cpu_seconds REAL, peak_memory_mb REAL)""",
    # list newest first: all jobs / by tool / by status (the id tie-break makes cursors stable).
    # Status lives in partial indexes (active, finished) so a transition touches few index entries.
    "CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC)",
    "CREATE INDEX jobs_tool ON jobs (tool_name, created_at DESC, id DESC)",
    # active jobs, oldest first, with owner and status to filter and count without reading rows
    f"CREATE INDEX jobs_active ON jobs (created_at, id, owner, status) WHERE {ACTIVE_SQL}",
    f"CREATE INDEX jobs_final ON jobs (status, created_at DESC, id DESC) WHERE {_FINAL_V1}",
    f"CREATE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND {ACTIVE_SQL}",
    f"CREATE INDEX jobs_expiry ON jobs (coalesce(finished_at, updated_at)) WHERE {_FINAL_V1}",
    "CREATE TABLE leases (owner TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID",
]

# The finished-job indexes with the cheap condition (see FINAL_SQL); same columns, same use.
# jobs_expiry keeps coalesce(finished_at, updated_at): a job finished without `finished_at`
# (set through the store directly, or by an older writer) expires by its last update.
_V2 = [
    "DROP INDEX jobs_final",
    f"CREATE INDEX jobs_final ON jobs (status, created_at DESC, id DESC) WHERE {FINAL_SQL}",
    "DROP INDEX jobs_expiry",
    f"CREATE INDEX jobs_expiry ON jobs (coalesce(finished_at, updated_at)) WHERE {FINAL_SQL}",
]

# The process behind each lease (see store.liveness): a restart on the same machine recovers the jobs
# of a process that has ended at once, instead of after its lease expires.
_V3 = [
    "ALTER TABLE leases ADD COLUMN host TEXT",
    "ALTER TABLE leases ADD COLUMN pid INTEGER",
    "ALTER TABLE leases ADD COLUMN started INTEGER",
]

# i17-dashboard: learned durations per tool (and tool|operation type), see vibe_jobs.durations.
_V4 = [
    "CREATE TABLE durations (key TEXT PRIMARY KEY NOT NULL, runs INTEGER NOT NULL, ewma_ms REAL NOT NULL,"
    " recent TEXT NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID",
]

# i17-dashboard: the traceparent of the tool call that created a job (attempt spans link to it).
_V5 = ["ALTER TABLE jobs ADD COLUMN trace_context TEXT"]

# i15-identity: the principal that created each job (jobs from before belong to the local principal);
# lists and counts of one principal read its own index.
_V6 = [
    "ALTER TABLE jobs ADD COLUMN principal TEXT NOT NULL DEFAULT 'local'",
    "CREATE INDEX jobs_principal ON jobs (principal, created_at DESC, id DESC)",
]

# i18-schedules: schedules as data, and the key that lets each (schedule, tick) fire once. The key is
# written by a trigger in the very statement that inserts the fired job, so the two commit together.
_V7 = [
    "ALTER TABLE jobs ADD COLUMN schedule_id TEXT",
    "ALTER TABLE jobs ADD COLUMN tick INTEGER",
    """CREATE TABLE schedules (
        schedule_id TEXT PRIMARY KEY NOT NULL, tool TEXT NOT NULL, arguments TEXT NOT NULL, cron TEXT,
        every_seconds REAL, timezone TEXT NOT NULL, start_at INTEGER, end_at INTEGER, paused INTEGER NOT NULL,
        misfire TEXT NOT NULL, max_catch_up INTEGER NOT NULL, overlap TEXT NOT NULL, priority TEXT NOT NULL,
        operation_type TEXT, last_fired_at INTEGER, next_fire_at INTEGER, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, version INTEGER NOT NULL, last_job_id TEXT, last_tick INTEGER,
        skipped INTEGER NOT NULL)""",
    """CREATE TABLE schedule_ticks (schedule_id TEXT NOT NULL, tick INTEGER NOT NULL, job_id TEXT NOT NULL,
        fired_at INTEGER NOT NULL, PRIMARY KEY (schedule_id, tick)) WITHOUT ROWID""",
    """CREATE TRIGGER jobs_schedule_tick AFTER INSERT ON jobs WHEN NEW.schedule_id IS NOT NULL BEGIN
        INSERT INTO schedule_ticks (schedule_id, tick, job_id, fired_at)
        VALUES (NEW.schedule_id, NEW.tick, NEW.id, NEW.created_at);
    END""",
]

# i19-talkback: the question a running job waits on (elicitation, sampling), kept across restarts.
_V8 = ["ALTER TABLE jobs ADD COLUMN waiting_for TEXT"]

# i18-schedules: the principal a schedule belongs to (schedules from before belong to the local principal).
_V9 = ["ALTER TABLE schedules ADD COLUMN principal TEXT NOT NULL DEFAULT 'local'"]

# i17-dashboard: the stages a job went through (the dashboard's job page).
_V10 = ["ALTER TABLE jobs ADD COLUMN stage_history TEXT"]

# Schedules, again: a firing writes its (schedule, tick) key through a view instead of a trigger on `jobs`.
# Any AFTER INSERT trigger on the 36-column jobs table, even one whose WHEN is false, made every insert
# build the NEW row for it, nearly doubling an insert's cost (bench/MEASUREMENTS.md), for the few jobs a schedule
# fires. A firing inserts into `fired_jobs`, whose INSTEAD OF trigger writes the key and the job in that one
# statement (they commit together, or neither does); a plain insert into `jobs` runs no trigger.
# FIRED_COLUMNS: the job columns the trigger copies, as of this step. A column added later must be added
# here by a step that recreates the trigger (tests/store/test_sqlite_schema.py checks that none is missing).
FIRED_COLUMNS_V11 = (
    "id", "tool_name", "params", "status", "created_at", "updated_at", "version", "progress_message",
    "progress_percentage", "result", "current_stage", "sub_progress", "diagnostics", "detail_metadata",
    "last_access_time", "access_count", "next_check_time", "task", "priority", "dedupe_key", "owner", "attempt",
    "retry_count", "error_count", "run_after", "started_at", "finished_at", "cancel_requested", "cpu_seconds",
    "peak_memory_mb", "trace_context", "principal", "schedule_id", "tick", "waiting_for", "stage_history",
)  # fmt: skip
_V11 = [
    "DROP TRIGGER jobs_schedule_tick",
    "CREATE VIEW fired_jobs AS SELECT * FROM jobs",
    f"""CREATE TRIGGER fired_jobs_insert INSTEAD OF INSERT ON fired_jobs BEGIN
        INSERT INTO schedule_ticks (schedule_id, tick, job_id, fired_at)
        VALUES (NEW.schedule_id, NEW.tick, NEW.id, NEW.created_at);
        INSERT INTO jobs ({", ".join(FIRED_COLUMNS_V11)}) VALUES ({", ".join(f"NEW.{c}" for c in FIRED_COLUMNS_V11)});
    END""",
]

# Schedules, again: a ticker pass reads the schedules due (and the next firing), not every schedule.
_V12 = ["CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0"]

# Dedupe is one step: one active job per dedupe key (`codec.ONE_ACTIVE_PER_DEDUPE_KEY`, the same in both stores).
_V13 = codec.ONE_ACTIVE_PER_DEDUPE_KEY

# A principal's active jobs, an index of their own (`codec.ACTIVE_BY_PRINCIPAL`, the same in both stores).
_V14 = codec.ACTIVE_BY_PRINCIPAL

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14]
SCHEMA_VERSION = len(MIGRATIONS)


def pragmas(synchronous: str, busy_timeout_ms: int) -> list[str]:
    """Pragmas every connection runs after WAL mode is set (`auto_vacuum` is set before it, and
    takes effect only before the first table exists)."""
    return [
        # WAL + NORMAL: a commit is appended to the WAL before COMMIT returns, so it survives a crash
        # or kill of this process; only an OS crash / power cut can lose the last commits (never
        # corrupt). FULL (`?synchronous=full`) also fsyncs each group commit, for power-loss durability.
        f"PRAGMA synchronous = {synchronous}",
        f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
        "PRAGMA journal_size_limit = 8388608",  # WAL truncated back to 8 MiB on reset
        "PRAGMA cache_size = -16384",  # 16 MiB page cache
    ]
