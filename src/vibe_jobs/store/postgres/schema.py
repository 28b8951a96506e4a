"""The PostgreSQL schema: tables, triggers and the versioned, forward-only migrations.

`vibe_jobs_migrations` holds one row per applied step of `MIGRATIONS`. `migrate` runs in one
transaction under a transaction-level advisory lock (per schema), so replicas starting together
migrate once; steps are never edited once released, only appended.

Besides the job rows the schema keeps, maintained by triggers (so every writer, whatever its path,
keeps them exact):
- (up to step 1) `cluster_usage`: one row with the running count, the summed resource needs of running
  jobs and the running count per tool, locked by the claim. Step 2 dropped its triggers (the row lock
  serialised every start and finish of the cluster): a limited claim now sums the running jobs under
  a transaction-level advisory lock (`vj_claim_usage`), so cluster-wide limits still hold in the database;
- a NOTIFY on channel `vibe_jobs.<schema>` when a job is inserted (since step 2 the store itself
  announces status changes and cancel requests, after they committed).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import asyncpg

from vibe_jobs.errors import ConfigError, StoreError
from vibe_jobs.store import codec
from vibe_jobs.store.upgrades import older_servers_message

ACTIVE_SQL = "status IN ('pending', 'running')"
FINAL_SQL = "status IN ('completed', 'failed', 'cancelled')"
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def unmet(deps: str) -> str:
    """SQL: does a dependency of `deps` (a TEXT[] expression) not stand completed? (Absent counts as not.) The one
    test of a job's dependencies: the insert, the claim, the release of dependants and step 15 use it (a change
    here changes step 15's text: make it a new step)."""
    return (
        f"EXISTS (SELECT 1 FROM unnest({deps}) AS d(dep)"
        " WHERE NOT EXISTS (SELECT 1 FROM jobs x WHERE x.id = d.dep AND x.status = 'completed'))"
    )


_V1 = [
    """CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY, tool_name TEXT NOT NULL, params JSON NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, version BIGINT NOT NULL,
        progress_message TEXT, progress_percentage DOUBLE PRECISION, result JSON, current_stage TEXT,
        sub_progress DOUBLE PRECISION, diagnostics JSON, detail_metadata JSON, last_access_time BIGINT,
        access_count BIGINT NOT NULL, next_check_time BIGINT, task JSON, priority BIGINT NOT NULL,
        dedupe_key TEXT, owner TEXT, attempt BIGINT NOT NULL, retry_count BIGINT NOT NULL,
        error_count BIGINT NOT NULL, run_after BIGINT, started_at BIGINT, finished_at BIGINT,
        cancel_requested TEXT, cpu_seconds DOUBLE PRECISION, peak_memory_mb DOUBLE PRECISION,
        -- derived at insert (the task never changes): what the claim statement needs
        seq BIGINT GENERATED ALWAYS AS IDENTITY, deps TEXT[] NOT NULL DEFAULT '{}',
        need_memory_mb DOUBLE PRECISION NOT NULL DEFAULT 0, need_cpu_weight DOUBLE PRECISION NOT NULL DEFAULT 0,
        need_disk_mb DOUBLE PRECISION NOT NULL DEFAULT 0,
        lease_expires_at BIGINT  -- the running attempt's lease (set by claim/renew; NULL otherwise)
    ) WITH (fillfactor = 80)""",
    "CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC)",
    "CREATE INDEX jobs_tool ON jobs (tool_name, created_at DESC, id DESC)",
    "CREATE INDEX jobs_status ON jobs (status, created_at DESC, id DESC)",
    # the claim's scan: per priority level (clamped to low..critical), oldest first
    "CREATE INDEX jobs_claim ON jobs ((least(greatest(priority, 0), 3)), created_at, seq) WHERE status = 'pending'",
    f"CREATE INDEX jobs_active ON jobs (owner, created_at, id) WHERE {ACTIVE_SQL}",
    f"CREATE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND {ACTIVE_SQL}",
    f"CREATE INDEX jobs_expiry ON jobs ((coalesce(finished_at, updated_at))) WHERE {FINAL_SQL}",
    "CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE TABLE leases (owner TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
    """CREATE TABLE cluster_usage (
        id INT PRIMARY KEY CHECK (id = 1), running BIGINT NOT NULL, memory_mb DOUBLE PRECISION NOT NULL,
        cpu_weight DOUBLE PRECISION NOT NULL, disk_mb DOUBLE PRECISION NOT NULL, by_tool JSONB NOT NULL)""",
    "INSERT INTO cluster_usage VALUES (1, 0, 0, 0, 0, '{}')",
    # Keep cluster_usage exact: +needs when a job enters running, -needs when it leaves.
    """CREATE FUNCTION vj_usage_delta(tool TEXT, sign INT, mem DOUBLE PRECISION, cpu DOUBLE PRECISION,
            disk DOUBLE PRECISION) RETURNS VOID LANGUAGE sql SET search_path FROM CURRENT AS $$
        UPDATE cluster_usage SET running = running + sign,
            memory_mb = CASE WHEN running + sign <= 0 THEN 0 ELSE memory_mb + sign * mem END,
            cpu_weight = CASE WHEN running + sign <= 0 THEN 0 ELSE cpu_weight + sign * cpu END,
            disk_mb = CASE WHEN running + sign <= 0 THEN 0 ELSE disk_mb + sign * disk END,
            by_tool = jsonb_set(by_tool, ARRAY[tool], to_jsonb(coalesce((by_tool ->> tool)::BIGINT, 0) + sign))
        WHERE id = 1
    $$""",
    """CREATE FUNCTION vj_jobs_usage() RETURNS TRIGGER LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'running' THEN
            PERFORM vj_usage_delta(OLD.tool_name, -1, OLD.need_memory_mb, OLD.need_cpu_weight, OLD.need_disk_mb);
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.status = 'running' THEN
            PERFORM vj_usage_delta(NEW.tool_name, 1, NEW.need_memory_mb, NEW.need_cpu_weight, NEW.need_disk_mb);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER jobs_usage_insert AFTER INSERT ON jobs FOR EACH ROW
        WHEN (NEW.status = 'running') EXECUTE FUNCTION vj_jobs_usage()""",
    """CREATE TRIGGER jobs_usage_update AFTER UPDATE OF status ON jobs FOR EACH ROW
        WHEN (OLD.status IS DISTINCT FROM NEW.status AND 'running' IN (OLD.status, NEW.status))
        EXECUTE FUNCTION vj_jobs_usage()""",
    """CREATE TRIGGER jobs_usage_delete AFTER DELETE ON jobs FOR EACH ROW
        WHEN (OLD.status = 'running') EXECUTE FUNCTION vj_jobs_usage()""",
    # Wake-ups: delivered to LISTENers when the writing transaction commits.
    """CREATE FUNCTION vj_jobs_notify() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('vibe_jobs.' || TG_TABLE_SCHEMA, json_build_object(
            'op', lower(TG_OP), 'id', NEW.id, 'status', NEW.status, 'tool', NEW.tool_name,
            'cancel', NEW.cancel_requested IS NOT NULL)::TEXT);
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION vj_jobs_notify()",
    """CREATE TRIGGER jobs_notify_update AFTER UPDATE OF status, cancel_requested ON jobs FOR EACH ROW
        WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested)
        EXECUTE FUNCTION vj_jobs_notify()""",
]

# Step 2 (issue 8): the usage row serialised the cluster. Every job entering or leaving `running`
# updated the single `cluster_usage` row in its trigger and held that row lock through its durable
# commit, and every limited claim locked it too, so starts, finishes and claims of the whole cluster
# committed one at a time (more workers went slower). Now nothing but a limited claim coordinates:
# `vj_claim_usage(key)` takes a transaction-level advisory lock (claimers queue there; finishes never
# wait) and THEN sums the running jobs. A VOLATILE plpgsql function takes a fresh snapshot for each
# statement, so the sum sees every claim committed before the lock was granted (a claim's changes
# are visible before its locks are released): limits hold exactly, as with the row lock. A job that
# finishes meanwhile still counts until its commit, which only errs on the safe side.
# `cluster_usage` stays, unread and no longer maintained (a later step may drop it).
_V2 = [
    "DROP TRIGGER jobs_usage_insert ON jobs",
    "DROP TRIGGER jobs_usage_update ON jobs",
    "DROP TRIGGER jobs_usage_delete ON jobs",
    # A NOTIFY takes a database-wide lock at commit and holds it through the commit's WAL flush, so
    # every status change of the cluster committed one at a time. Inserts still notify from the
    # trigger (the wake-up that pick-up latency rides on); status changes and cancel requests are
    # announced by the store after the change committed (`PostgresStore._announce`), batched, from a
    # session without synchronous commit (a notification is a wake-up, not a record).
    "DROP TRIGGER jobs_notify_update ON jobs",
    """CREATE FUNCTION vj_claim_usage(lock_key BIGINT) RETURNS TABLE (running BIGINT, memory_mb DOUBLE PRECISION,
            cpu_weight DOUBLE PRECISION, disk_mb DOUBLE PRECISION, by_tool JSONB)
        LANGUAGE plpgsql VOLATILE ROWS 1 SET search_path FROM CURRENT AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        RETURN QUERY SELECT coalesce(sum(g.n), 0)::BIGINT, coalesce(sum(g.mem), 0), coalesce(sum(g.cpu), 0),
            coalesce(sum(g.disk), 0), coalesce(jsonb_object_agg(g.tool_name, g.n), '{}'::JSONB)
        FROM (SELECT r.tool_name, count(*) AS n, sum(r.need_memory_mb) AS mem, sum(r.need_cpu_weight) AS cpu,
                sum(r.need_disk_mb) AS disk
            FROM jobs r WHERE r.status = 'running' GROUP BY r.tool_name) g;
    END $$""",
]

# Step 3 (issue 8): each claim writes a token of its own on the rows it takes. When the connection is
# lost after the claim committed but before its answer arrived, the retry first reads back the rows
# holding its token (they are this owner's, as attempt n) instead of claiming others and leaving those
# to be recovered after their lease as attempt n + 1. A nullable column without default: no rewrite.
_V3 = ["ALTER TABLE jobs ADD COLUMN claim_token TEXT"]

# Step 4 (issue 8): each process's lease names the tools it runs, so health can report pending jobs of a
# tool that no live process runs (a worker missing a --tools module, or none started).
_V4 = ["ALTER TABLE leases ADD COLUMN tools TEXT[]"]

# i17-dashboard: learned durations per tool (and tool|operation type), see vibe_jobs.durations.
_V5 = [
    "CREATE TABLE durations (key TEXT PRIMARY KEY, runs BIGINT NOT NULL, ewma_ms DOUBLE PRECISION NOT NULL,"
    " recent TEXT NOT NULL, updated_at BIGINT NOT NULL)",
]

# i17-dashboard: the traceparent of the tool call that created a job (attempt spans link to it).
_V6 = ["ALTER TABLE jobs ADD COLUMN trace_context TEXT"]

# i15-identity: the principal that created each job (jobs from before belong to the local principal);
# lists and counts of one principal read its own index. A constant default: no table rewrite.
_V7 = [
    "ALTER TABLE jobs ADD COLUMN principal TEXT NOT NULL DEFAULT 'local'",
    "CREATE INDEX jobs_principal ON jobs (principal, created_at DESC, id DESC)",
]

# i18-schedules: schedules as data, and the (schedule, tick) key a firing writes in the transaction that
# inserts its job, so that a tick fires once across every server and worker of the cluster.
_V8 = [
    "ALTER TABLE jobs ADD COLUMN schedule_id TEXT",
    "ALTER TABLE jobs ADD COLUMN tick BIGINT",
    """CREATE TABLE schedules (
        schedule_id TEXT COLLATE "C" PRIMARY KEY, tool TEXT NOT NULL, arguments JSON NOT NULL, cron TEXT,
        every_seconds DOUBLE PRECISION, timezone TEXT NOT NULL, start_at BIGINT, end_at BIGINT,
        paused BOOLEAN NOT NULL, misfire TEXT NOT NULL, max_catch_up BIGINT NOT NULL, overlap TEXT NOT NULL,
        priority TEXT NOT NULL, operation_type TEXT, last_fired_at BIGINT, next_fire_at BIGINT,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, version BIGINT NOT NULL, last_job_id TEXT,
        last_tick BIGINT, skipped BIGINT NOT NULL)""",
    """CREATE TABLE schedule_ticks (schedule_id TEXT COLLATE "C" NOT NULL, tick BIGINT NOT NULL,
        job_id TEXT NOT NULL, fired_at BIGINT NOT NULL, PRIMARY KEY (schedule_id, tick))""",
]

# i19-talkback: the question a running job waits on (elicitation, sampling), kept across restarts.
_V9 = ["ALTER TABLE jobs ADD COLUMN waiting_for JSON"]

# i18-schedules: the principal a schedule belongs to (schedules from before belong to the local principal).
_V10 = ["ALTER TABLE schedules ADD COLUMN principal TEXT NOT NULL DEFAULT 'local'"]

# i17-dashboard: the stages a job went through (the dashboard's job page).
_V11 = ["ALTER TABLE jobs ADD COLUMN stage_history JSON"]

# i18-schedules: a ticker pass reads the schedules due (and the next firing), not every schedule.
_V12 = ["CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused"]

# Dedupe is one step: one active job per dedupe key (`codec.ONE_ACTIVE_PER_DEDUPE_KEY`, the same in both stores).
_V13 = codec.ONE_ACTIVE_PER_DEDUPE_KEY

# A principal's active jobs, an index of their own (`codec.ACTIVE_BY_PRINCIPAL`, the same in both stores).
_V14 = codec.ACTIVE_BY_PRINCIPAL

# Step 15: the claim and the head check passed every pending job a dependency held back, testing each one's
# dependencies, at every claim (16.7 ms a claim behind 10,000 such jobs; a chain of 1,500 ran in 28-68 s, of 150
# in 0.4-1 s). `blocked` marks a pending job that had a dependency not completed when it was inserted; the claim's
# index holds only the pending jobs not blocked. The writer that completes a job clears the flag of its
# dependants whose dependencies are all completed now (`sql.RELEASE_DEPENDANTS`, found by `jobs_blocked_deps`),
# and the sweeper, about once a second, clears it on any such job an insert left blocked while its last
# dependency completed (`sql.RELEASE_READY`). A job whose dependency failed, was cancelled or is gone stays
# blocked until the sweeper fails it, as before. The flag is set here from the jobs as they stand.
_V15 = [
    "ALTER TABLE jobs ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT false",
    f"UPDATE jobs SET blocked = true WHERE status = 'pending' AND cardinality(deps) > 0 AND {unmet('jobs.deps')}",
    "CREATE INDEX jobs_claim_ready ON jobs ((least(greatest(priority, 0), 3)), created_at, seq)"
    " WHERE status = 'pending' AND NOT blocked",
    # without the pending list (fastupdate), which every search reads through: 3.8 ms a release behind 15,000 inserts
    "CREATE INDEX jobs_blocked_deps ON jobs USING gin (deps) WITH (fastupdate = off)"
    " WHERE status = 'pending' AND blocked",
    "DROP INDEX jobs_claim",
]

MIGRATIONS: list[list[str]] = [
    *(_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14),
    _V15,
]
SCHEMA_VERSION = len(MIGRATIONS)


def check_schema_name(name: str) -> str:
    if not SCHEMA_NAME.fullmatch(name):
        raise ConfigError(f"schema={name!r} is not a plain identifier (letters, digits, _; at most 48 characters)")
    return name


NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"  # the database's clock, in ms


def lock_key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory-lock key for (schema, purpose)."""
    digest = hashlib.blake2b(f"vibe_jobs:{schema}:{purpose}".encode(errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel(schema: str) -> str:
    return f"vibe_jobs.{schema}"


async def made(conn: asyncpg.Connection, schema: str) -> bool:
    """Whether a server made a job store in `schema` (its migrations table is there)."""
    found = await conn.fetchval("SELECT to_regclass(format('%I.vibe_jobs_migrations', $1::text))", schema)
    return found is not None


async def migrate(conn: asyncpg.Connection, schema: str, where: str) -> int:
    """Bring `schema` up to `SCHEMA_VERSION` (creating it when needed); return the steps applied.

    The connection's search_path must name `schema` first (the store's connections do)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "migrate"))
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".vibe_jobs_migrations'
            " (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version: int = await conn.fetchval(f'SELECT coalesce(max(version), 0) FROM "{schema}".vibe_jobs_migrations')
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the job store at {where} was written by a newer vibe-jobs "
                f"(schema {version} > {SCHEMA_VERSION}); upgrade vibe-jobs to open it"
            )
        if 0 < version < SCHEMA_VERSION:
            await _refuse_beside_older(conn, schema, version, where)
        if 0 < version < SCHEMA_VERSION and await _shape(conn, schema) != await _reference_shape(conn, version):
            await _replay(conn, schema)  # its steps so far are not ours
        else:
            for sql in (sql for step in MIGRATIONS[version:] for sql in step):
                await conn.execute(sql)
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(f'INSERT INTO "{schema}".vibe_jobs_migrations (version) VALUES ($1)', step + 1)
        return SCHEMA_VERSION - version


async def _refuse_beside_older(conn: asyncpg.Connection, schema: str, version: int, where: str) -> None:
    """Refuse to migrate while a server of the older version still holds its lease on the store: it would go on
    writing to a schema it does not know (one from before step 11 fired a schedule's tick twice beside a newer
    server). Its lease ends when it stops (or, killed, when the lease expires)."""
    rows = await conn.fetch(
        f'SELECT owner, expires_at - {NOW_MS} FROM "{schema}".leases WHERE expires_at > {NOW_MS} ORDER BY owner'
    )
    if rows:
        raise StoreError(older_servers_message(where, version, [(owner, int(left)) for owner, left in rows]))


# Another numbering of steps: branches merged later (identity, talkback, schedules, stage history) recorded their
# own steps under numbers ours give other steps; reading them as ours, `migrate` failed every open ("column
# "principal" of relation "jobs" already exists") or would skip a step. Such a schema gets every step again, each
# statement in a form that keeps what the schema has already (no table or column is dropped), then the columns
# it still lacks.
_TOLERANT = [
    (re.compile(r"^(\s*ALTER TABLE \w+ ADD COLUMN) "), r"\1 IF NOT EXISTS "),
    (re.compile(r"^(\s*CREATE TABLE) "), r"\1 IF NOT EXISTS "),
    (re.compile(r"^(\s*CREATE (?:UNIQUE )?INDEX) "), r"\1 IF NOT EXISTS "),
    (re.compile(r"^(\s*DROP (?:TRIGGER|INDEX)) "), r"\1 IF EXISTS "),
    (re.compile(r"^(\s*CREATE) FUNCTION "), r"\1 OR REPLACE FUNCTION "),
    (re.compile(r"^(\s*INSERT INTO .*)$", re.DOTALL), r"\1 ON CONFLICT DO NOTHING"),
]
_TRIGGER = re.compile(r"^\s*CREATE TRIGGER (\w+) .*? ON (\w+) ", re.DOTALL)
_ZERO = {"bigint": "0", "integer": "0", "double precision": "0", "boolean": "false", "text": "''", "json": "'null'"}
# (table, column, type, not null) of every column of the schema on the search path first
_COLUMNS = """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind = 'r'
        AND a.attnum > 0 AND NOT a.attisdropped AND c.relname != 'vibe_jobs_migrations'"""
_NAMES = """SELECT relname FROM pg_class WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
    AND relkind IN ('r', 'i') AND relname NOT LIKE 'vibe_jobs_migrations%'"""


def _tolerant(sql: str) -> list[str]:
    """`sql` in a form that keeps what it makes when the schema has it already."""
    if trigger := _TRIGGER.match(sql):
        return [f"DROP TRIGGER IF EXISTS {trigger[1]} ON {trigger[2]}", sql]
    for pattern, replacement in _TOLERANT:
        if pattern.match(sql):
            return [pattern.sub(replacement, sql, count=1)]
    return [sql]


async def _shape(conn: asyncpg.Connection, schema: str) -> tuple[set[tuple[Any, ...]], set[str]]:
    """The schema's columns (table, name, type, not null) and the names of its tables and indexes."""
    columns = {tuple(row) for row in await conn.fetch(_COLUMNS, schema)}
    return columns, {row[0] for row in await conn.fetch(_NAMES, schema)}


async def _reference_shape(conn: asyncpg.Connection, steps: int) -> tuple[set[tuple[Any, ...]], set[str]]:
    """The shape our first `steps` steps make, built in a schema of its own under a savepoint rolled back."""
    scratch = f"vj_reference_{os.urandom(6).hex()}"
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        await conn.execute(f"CREATE SCHEMA {scratch}; SET LOCAL search_path = {scratch}")
        for sql in (sql for step in MIGRATIONS[:steps] for sql in step):
            await conn.execute(sql)
        return await _shape(conn, scratch)
    finally:
        await savepoint.rollback()  # the scratch schema, and the search_path with it


async def _replay(conn: asyncpg.Connection, schema: str) -> None:
    for sql in (sql for step in MIGRATIONS for sql in step):
        for statement in _tolerant(sql):
            await conn.execute(statement)
    wanted, _ = await _reference_shape(conn, SCHEMA_VERSION)
    have = {column[:2] for column in (await _shape(conn, schema))[0]}
    for table, name, kind, not_null in sorted(column for column in wanted if column[:2] not in have):
        default = f" NOT NULL DEFAULT {_ZERO.get(kind, _ZERO['text'])}" if not_null else ""
        await conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{default}")


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Remove a store's schema and everything in it (test clean-up; never `public`)."""
    if check_schema_name(schema) == "public":
        raise ConfigError("refusing to drop the public schema")
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
