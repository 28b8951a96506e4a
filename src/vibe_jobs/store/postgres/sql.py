"""SQL text of the PostgreSQL store, the record <-> row mapping, and the claim statement.

Rows are selected in `JobRecord` field order, with JSON columns as text, so the SQLite codec's
`encode`/`decode` serve both stores (one definition of how a record is stored).

The claim, in ONE statement (READ COMMITTED), of up to k jobs at once:
1. (only when a limit is set) `vj_claim_usage(key)`: take the claim advisory lock (every limited
   claimer of the cluster queues here; finishing jobs never do), then sum the running jobs with a
   snapshot taken after the lock, so limits hold across processes and machines;
2. pick the first k claimable pending jobs - one of `tools`, due (`run_after`), not cancelled, every
   dependency completed, fitting the concurrency, per-tool and resource limits - in order of
   `created_at - weight(priority) * aging_ms`, then insertion order (`seq`): priority with aging,
   FIFO within a level; `FOR UPDATE SKIP LOCKED` passes over rows another claimer holds (priorities
   outside low..critical count as the nearest level);
3. mark them running: owner, attempt + 1, lease expiry, started_at.

Claims are durable commits like every other write (see `PostgresStore.claim_many`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

from vibe_jobs.models import JobRecord, ResourceRequirements
from vibe_jobs.states import JobStatus
from vibe_jobs.store import codec
from vibe_jobs.store.base import CANCELLED_WITHOUT_RUN_SQL, WAITS_SINCE_SQL, ClaimLimits
from vibe_jobs.store.codec import COLUMNS, WHOLE, select_list
from vibe_jobs.store.postgres.schema import ACTIVE_SQL, FINAL_SQL, NOW_MS, unmet

DEFAULT_NEEDS = ResourceRequirements()
_EXTRA = ("deps", "need_memory_mb", "need_cpu_weight", "need_disk_mb")
_COLS = select_list()
_JCOLS = select_list(table="jobs.")

SELECT = f"SELECT {_COLS} FROM jobs"
RETURNING = f" RETURNING {_COLS}"
# A pending job is inserted `blocked` when a dependency of it is not completed (schema step 15).
_BLOCKED = f"${COLUMNS.index('status') + 1} = 'pending' AND {unmet(f'${len(COLUMNS) + 1}::TEXT[]')}"
INSERT = (
    f"INSERT INTO jobs ({_COLS}, {', '.join(_EXTRA)}, blocked) "
    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(COLUMNS) + len(_EXTRA)))}, {_BLOCKED})"
    f"{codec.DEDUPE_CONFLICT}"
)
GET = f"{SELECT} WHERE id = $1"
TOUCH = "UPDATE jobs SET access_count = $1, last_access_time = $2, next_check_time = $3 WHERE id = $4"
FIND_ACTIVE = f"{SELECT} WHERE dedupe_key = $1 AND {ACTIVE_SQL} ORDER BY created_at DESC, id DESC LIMIT 1"
ACTIVE = f"{SELECT} WHERE {ACTIVE_SQL} ORDER BY created_at, id"
ACTIVE_OF = f"{SELECT} WHERE owner = $1 AND {ACTIVE_SQL} ORDER BY created_at, id"
HELD = f"{SELECT} WHERE owner = $1 AND {ACTIVE_SQL} AND status = 'running'"  # (the index of active jobs by owner)
ACTIVE_BY = f"{SELECT} WHERE principal = $1 AND {ACTIVE_SQL} ORDER BY created_at, id"
COUNTS = "SELECT status, count(*) FROM jobs GROUP BY status"
COUNTS_OF = "SELECT status, count(*) FROM jobs WHERE principal = $1 GROUP BY status"
ACTIVE_COUNTS = f"SELECT status, count(*) FROM jobs WHERE {ACTIVE_SQL} GROUP BY status"
ACTIVE_COUNTS_OF = f"SELECT status, count(*) FROM jobs WHERE principal = $1 AND {ACTIVE_SQL} GROUP BY status"
# the shared queue: pending jobs by priority rank, with the creation time of the oldest of each
PENDING_BY_PRIORITY = (
    f"SELECT priority, count(*), min({WAITS_SINCE_SQL.format(now='$1', greatest='greatest')})"
    " FROM jobs WHERE status = 'pending' GROUP BY priority"
)
# The dependencies of pending jobs are kept past the retention (store/base.py: delete_finished). NOT EXISTS, not
# NOT IN: the planner hashes it once as an anti-join (spilling to disk if need be), where NOT IN's list past
# work_mem was scanned again for every finished job (100,000 pending jobs with a dependency each: minutes a pass).
_NEEDED = "SELECT 1 FROM jobs AS p, unnest(p.deps) AS d(dep) WHERE p.status = 'pending' AND d.dep = jobs.id"
DELETE_FINISHED = (
    f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {FINAL_SQL} AND coalesce(finished_at, updated_at) < $1"
    f" AND NOT EXISTS ({_NEEDED}) LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id"
)
# A lease only ever moves forward: renewals of one process race (the maintenance beat and the claim round
# renew concurrently, and a write retried through a reconnect may commit after a newer one), and a lease
# set back would make the process's jobs orphans while it still believes it holds them.
HEARTBEAT = (
    "INSERT INTO leases (owner, expires_at) VALUES ($1, $2)"
    " ON CONFLICT (owner) DO UPDATE SET expires_at = greatest(leases.expires_at, excluded.expires_at)"
)
RELEASE = "DELETE FROM leases WHERE owner = $1"
LOAD_DURATIONS = "SELECT key, runs, ewma_ms, recent FROM durations"
SAVE_DURATIONS = (
    "INSERT INTO durations (key, runs, ewma_ms, recent, updated_at)"
    " SELECT k, r, e, t, $5::BIGINT FROM unnest($1::TEXT[], $2::BIGINT[], $3::DOUBLE PRECISION[], $4::TEXT[])"
    " AS u(k, r, e, t)"
    " ON CONFLICT (key) DO UPDATE SET runs = excluded.runs, ewma_ms = excluded.ewma_ms,"
    " recent = excluded.recent, updated_at = excluded.updated_at"
)
OFFER_TOOLS = "UPDATE leases SET tools = $2::TEXT[] WHERE owner = $1"
# Cluster-wide figures for statistics, from the finished jobs the table retains: per tool and per operation
# type (grouping sets), counts by outcome and run durations (ms).
_DURATION = "finished_at - started_at"
_HAS_DURATION = "started_at IS NOT NULL AND finished_at IS NOT NULL"
FINISHED_BY_GROUP = f"""SELECT GROUPING(tool_name) = 1 AS by_op, coalesce(tool_name, task->>'operationType') AS name,
    count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
    count(*) FILTER (WHERE status = 'cancelled'),
    percentile_disc(0.5) WITHIN GROUP (ORDER BY {_DURATION}) FILTER (WHERE {_HAS_DURATION}),
    percentile_disc(0.95) WITHIN GROUP (ORDER BY {_DURATION}) FILTER (WHERE {_HAS_DURATION}),
    avg({_DURATION}) FILTER (WHERE {_HAS_DURATION})
FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')
GROUP BY GROUPING SETS ((tool_name), (task->>'operationType'))"""
# completed and failed in the last minute, and in the last 5 minutes ($1 now); not those finished over a minute
# ahead of now (the database's clock went back since: they were "recent" for the whole step; the minute allows for
# the processes' clocks, each the database's measured half a round trip off)
FINISHED_RECENTLY = """SELECT
    count(*) FILTER (WHERE status = 'completed' AND finished_at > $1::BIGINT - 60000),
    count(*) FILTER (WHERE status = 'failed' AND finished_at > $1::BIGINT - 60000),
    count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
FROM jobs WHERE status IN ('completed', 'failed') AND finished_at > $1::BIGINT - 300000
    AND finished_at <= $1::BIGINT + 60000"""
# pending jobs of tools that no live process offers ($1 now)
UNSERVED = """SELECT j.tool_name, count(*) FROM jobs j WHERE j.status = 'pending' AND NOT EXISTS
    (SELECT 1 FROM leases l WHERE l.expires_at > $1::BIGINT AND j.tool_name = ANY(l.tools))
GROUP BY j.tool_name"""
# An active job is an orphan when its owner holds no live lease, or when it runs on an expired job lease ($1 now).
_ORPHAN = (
    f"{ACTIVE_SQL} AND (owner IS NULL OR owner NOT IN (SELECT owner FROM leases WHERE expires_at > $1)"
    " OR (status = 'running' AND lease_expires_at IS NOT NULL AND lease_expires_at <= $1))"
)
ORPHANS = f"{SELECT} WHERE {_ORPHAN} ORDER BY created_at, id"


def tool_set(param: str) -> str:
    """A process's tool names (the TEXT[] parameter `param`) as a JSONB object built once per execution: `SET ?
    tool_name` is one binary search a row. `= ANY(param)`, as a generic plan (from the 6th execution) runs it,
    compares each row with every name: 6.4 s a recovery beat and 2.9 s a claim with a proxy's 20,000 tools;
    `IN (SELECT unnest(param))` is hashed or read again per row as the planner's estimate decides
    (bench/recovery.py --postgres, bench/claim_tools.py, bench/MEASUREMENTS.md)."""
    return f"(SELECT jsonb_object({param}::TEXT[], {param}::TEXT[]))"


# The orphans a process with the tools $2 adopts, and a count of the others by tool but for the owner $3's.
ORPHANS_OF = (
    f"{SELECT} WHERE {_ORPHAN} AND ({tool_set('$2')} ? tool_name OR {CANCELLED_WITHOUT_RUN_SQL})"
    " ORDER BY created_at, id"
)
ORPHANS_LEFT = (
    f"SELECT tool_name, count(*) FROM jobs WHERE {_ORPHAN} AND NOT ({tool_set('$2')} ? tool_name)"
    f" AND NOT ({CANCELLED_WITHOUT_RUN_SQL}) AND owner IS DISTINCT FROM $3 GROUP BY tool_name"
)
# those of ORPHANS_LEFT whose owner id starts with $4 (`program@`)
ORPHANS_OF_PROGRAM = (
    f"{SELECT} WHERE {_ORPHAN} AND NOT ({tool_set('$2')} ? tool_name) AND NOT ({CANCELLED_WITHOUT_RUN_SQL})"
    " AND owner IS DISTINCT FROM $3 AND left(owner, length($4)) = $4 ORDER BY created_at, id"
)


# Statements that lock many job rows at once take them in ONE order, id order: two of them (two processes', or two
# of one process) that want rows in common then wait for each other (the one that locked the lowest id they share
# goes on) instead of each holding a row the other waits for, a deadlock that PostgreSQL ends by failing one of
# them after `deadlock_timeout`. An `UPDATE ... FROM unnest(...)` or `... WHERE id = ANY(...)` alone locks rows as
# its plan meets them: in the array's order (a nested loop over the array) or the table's (a hash join, a
# sequential or bitmap scan). Statements that never wait for a row (`FOR UPDATE SKIP LOCKED`: the claim, the
# retention's delete) or change one row need no order.
def locked_first(ids: str) -> tuple[str, str]:
    """(a WITH item, a condition) for a statement that changes many job rows, those of the ids `ids` (a TEXT[]
    parameter). The WITH item locks every row of those ids in id order; the condition, ANDed to the statement's
    WHERE, is a subquery of no row of the statement's (run once, before the statement reads any row) that reads
    the WITH item to its end: the statement then changes only rows it holds already, and waits for none. (Joined
    to the statement instead, the locked rows were estimated at 10 by a generic plan, a prepared statement's from
    its 6th run, and read again for each row changed: 4.5 s to adopt 5,000 jobs.)"""
    return locked_in_order(f"SELECT id FROM jobs WHERE id = ANY({ids}::TEXT[]) ORDER BY id FOR UPDATE")


def locked_in_order(rows: str) -> tuple[str, str]:
    """`locked_first` for any rows: `rows` a `SELECT ... ORDER BY <key> FOR UPDATE` of the rows the statement
    changes (schedule ticks, by their key)."""
    return f"locked AS MATERIALIZED ({rows})", "(SELECT count(*) FROM locked) >= 0"


# `adopt_pending`, one statement per ADOPT_CHUNK jobs: the jobs' rows locked in id order (two processes adopting the
# same orphans, or one adopting jobs another process writes many of at once, wait for each other), each adopted as
# a compare-and-set on its version ($3 ids, $4 versions). ADOPTED: after a lost connection, the ones a try that had
# committed adopted (ours, at the next version, stamped with this call's time).
_PAIRS = "unnest($3::TEXT[], $4::BIGINT[]) AS w(id, v)"
_ADOPT_LOCK, _ADOPT_LOCKED = locked_first("$3")
ADOPT = (
    f"WITH {_ADOPT_LOCK} UPDATE jobs SET owner = $1, updated_at = $2, version = jobs.version + 1 FROM {_PAIRS}"
    f" WHERE jobs.id = w.id AND jobs.version = w.v AND {_ADOPT_LOCKED} RETURNING jobs.id"
)
ADOPTED = (
    f"SELECT jobs.id FROM jobs, {_PAIRS} WHERE jobs.id = w.id AND jobs.version = w.v + 1 AND jobs.owner = $1"
    " AND jobs.updated_at = $2"
)
# One round trip per beat: the process lease and the leases of the given jobs it still runs, answering
# (id, cancel_requested) for each job still held. (Every row of the ids is locked, its own or not: the update
# waits for no other row.)
_RENEW_LOCK, _RENEW_LOCKED = locked_first("$2")
RENEW_STATE = f"""WITH beat AS (
    INSERT INTO leases (owner, expires_at) VALUES ($1, $3)
    ON CONFLICT (owner) DO UPDATE SET expires_at = greatest(leases.expires_at, excluded.expires_at)
), {_RENEW_LOCK}
UPDATE jobs SET lease_expires_at = greatest(lease_expires_at, $3)
WHERE id = ANY($2::TEXT[]) AND owner = $1 AND status = 'running' AND {_RENEW_LOCKED} RETURNING id, cancel_requested"""
# Pending jobs that can never run: a dependency failed, was cancelled or no longer exists.
DEPENDENCY_BLOCKED = f"""SELECT {_JCOLS}, d.dep, x.status FROM jobs
CROSS JOIN LATERAL unnest(jobs.deps) AS d(dep) LEFT JOIN jobs x ON x.id = d.dep
WHERE jobs.status = 'pending' AND cardinality(jobs.deps) > 0 AND (x.id IS NULL OR x.status IN
    ('failed', 'cancelled'))
ORDER BY jobs.created_at, jobs.id LIMIT $1"""
# A condition that makes the statement's transaction commit without waiting for its WAL flush (set for the
# transaction, read at its commit): for writes of what can be derived again, which a crash may lose.
NOT_DURABLE = "(SELECT set_config('synchronous_commit', 'off', true)) = 'off'"
# The dependants of the jobs $1 (just completed) that no dependency holds back any more, made claimable: found by
# `jobs_blocked_deps`, locked in id order (`locked_in_order`; waited for: two writers releasing a dependant in
# common queue there, and a row is locked only by statements of one row or of rows in id order, so briefly).
# Run after the completions committed: of two jobs completed at once by two processes, the release that comes
# last sees both, whatever the order of their commits. Not durable (`NOT_DURABLE`): the flag is derived, and a
# release a crash of the database loses is the sweeper's (`RELEASE_READY`); durable, each link of a chain waited
# for one more WAL flush (3-4 ms a release on a loaded machine, 0.5 ms without).
_DEPENDANTS_LOCK, _ = locked_in_order(
    "SELECT id FROM jobs WHERE deps && $1::TEXT[] AND status = 'pending' AND blocked"
    f" AND NOT {unmet('deps')} ORDER BY id FOR UPDATE"
)
RELEASE_DEPENDANTS = (
    f"WITH {_DEPENDANTS_LOCK} UPDATE jobs SET blocked = false WHERE id = ANY(ARRAY(SELECT id FROM locked))"
    f" AND {NOT_DURABLE}"
)
# The sweeper's backstop: every blocked pending job whose dependencies are all completed (an insert that read a
# dependency as unfinished while that dependency completed and released its dependants, before the insert
# committed; a writer that died between a completion and its release). Rows locked elsewhere are left for the next
# sweep. Answers the jobs released (announced: claimers wake).
_READY_LOCK, _ = locked_in_order(
    f"SELECT id FROM jobs WHERE status = 'pending' AND blocked AND NOT {unmet('deps')}"
    " ORDER BY id FOR UPDATE SKIP LOCKED"
)
RELEASE_READY = (
    f"WITH {_READY_LOCK} UPDATE jobs SET blocked = false WHERE id = ANY(ARRAY(SELECT id FROM locked)){RETURNING}"
)
# What the limited claim sees (`vj_claim_usage`), for inspection: a scan of the table (not for hot paths).
USAGE = """SELECT coalesce(sum(n), 0)::BIGINT AS running, coalesce(sum(mem), 0)::FLOAT8 AS memory_mb,
    coalesce(sum(cpu), 0)::FLOAT8 AS cpu_weight, coalesce(sum(disk), 0)::FLOAT8 AS disk_mb,
    coalesce(jsonb_object_agg(tool_name, n), '{}')::TEXT AS by_tool
FROM (SELECT tool_name, count(*) FILTER (WHERE status = 'running') AS n,
        sum(need_memory_mb) FILTER (WHERE status = 'running') AS mem,
        sum(need_cpu_weight) FILTER (WHERE status = 'running') AS cpu,
        sum(need_disk_mb) FILTER (WHERE status = 'running') AS disk
    FROM jobs GROUP BY tool_name) g"""
NOTIFY = "SELECT count(pg_notify($1, p)) FROM unnest($2::TEXT[]) AS p"


def insert_args(rec: JobRecord) -> list[Any]:
    task = rec.task
    needs = (task.resource_requirements if task else None) or DEFAULT_NEEDS
    deps = list(dict.fromkeys(task.dependencies)) if task else []
    return [*codec.encode(rec), deps, float(needs.memory_mb), float(needs.cpu_weight), float(needs.disk_space_mb)]


def decode(row: Any) -> JobRecord:
    return codec.decode(tuple(row))


def decode_first(row: Any) -> JobRecord:
    """A row whose first len(COLUMNS) values are a job."""
    return codec.decode(tuple(row)[: len(COLUMNS)])


def change_values(changes: Mapping[str, Any]) -> list[Any]:
    return codec.change_values(changes)


def status_texts(statuses: Collection[JobStatus]) -> list[str]:
    return [codec.ENCODE["status"](s) for s in statuses]


# The last column an update answers: did it complete a job that holds back dependants (pending, `blocked`, of
# `jobs_blocked_deps`)? Only then does the writer release them (`RELEASE_DEPENDANTS`), a statement more: a job
# without dependants costs none (one more was 0.45 -> 0.83 ms a completion, one at a time). A job inserted
# meanwhile is not seen, as by the release itself (the sweeper's). Not a status change: false. A count, not EXISTS:
# EXISTS was planned as a sequential scan up to the first row found, which reads the whole table when none is.
_HOLDS_BACK = (
    "(jobs.status = 'completed' AND (SELECT count(*) FROM jobs b WHERE b.deps && ARRAY[jobs.id COLLATE \"default\"]"
    " AND b.status = 'pending' AND b.blocked) > 0)"
)
# The same for the rows `upd` of a batch, one index scan for all (one for each row doubled the time of a
# completion in a batch of 500): true for each completed row when any completed row holds back dependants.
_BATCH_HOLDS_BACK = (
    "upd.status = 'completed' AND (SELECT count(*) FROM jobs b WHERE b.deps && (SELECT array_agg(u.id COLLATE"
    " \"default\") FROM upd u WHERE u.status = 'completed') AND b.status = 'pending' AND b.blocked) > 0"
)


def _holds_back(keys: tuple[str, ...]) -> str:
    return f", {_HOLDS_BACK if 'status' in keys else 'false'}"


def decode_update(row: Any) -> tuple[JobRecord, bool]:
    """An updated row (`update_sql`, `update_many_sql`): the job, and whether it holds back dependants."""
    return decode_first(row), bool(row[-1])


@lru_cache(maxsize=512)
def update_sql(keys: tuple[str, ...], by_version: bool, by_attempt: bool, by_status: bool) -> str:
    """`UPDATE ... WHERE id = $n AND <guards> RETURNING *, <holds back dependants>`; a status change ends the
    job lease."""
    sets = "".join(f"{k} = ${i + 1}, " for i, k in enumerate(keys))
    if "status" in keys:
        sets += "lease_expires_at = NULL, "
    n = len(keys) + 1
    where = [f"id = ${n}"]
    for name, on in (("version", by_version), ("attempt", by_attempt)):
        if on:
            n += 1
            where.append(f"{name} = ${n}")
    if by_status:
        where.append(f"status = ANY(${n + 1}::TEXT[])")
    return f"UPDATE jobs SET {sets}version = version + 1 WHERE {' AND '.join(where)}{RETURNING}{_holds_back(keys)}"


# The type of each column an update may change (JSON travels as text and is cast in the statement).
UPDATE_TYPES = {
    "status": "TEXT", "updated_at": "BIGINT", "progress_message": "TEXT", "progress_percentage": "FLOAT8",
    "result": "JSON", "current_stage": "TEXT", "sub_progress": "FLOAT8", "diagnostics": "JSON",
    "detail_metadata": "JSON", "owner": "TEXT", "attempt": "BIGINT", "retry_count": "BIGINT",
    "error_count": "BIGINT", "run_after": "BIGINT", "started_at": "BIGINT", "finished_at": "BIGINT",
    "cancel_requested": "TEXT", "cpu_seconds": "FLOAT8", "peak_memory_mb": "FLOAT8", "priority": "BIGINT",
    "waiting_for": "JSON",
    "stage_history": "JSON",
}  # fmt: skip


@lru_cache(maxsize=512)
def update_many_sql(keys: tuple[str, ...], by_version: bool, by_attempt: bool, by_status: bool) -> str:
    """`update_sql` for many jobs in one statement: one array per column ($1 ids, then the guards in use
    (version, attempt, the allowed statuses as comma-joined text), then the changed columns), each row
    a compare-and-set of its own, the rows locked in id order first (`locked_first`). The ids must be
    distinct (a job matched twice would be changed once)."""
    cols = ["id"]
    types = ["TEXT"]
    lock, locked = locked_first("$1")
    where = ["jobs.id = v.id"]
    for name, on, typ, cond in (
        ("gv", by_version, "BIGINT", "jobs.version = v.gv"), ("ga", by_attempt, "BIGINT", "jobs.attempt = v.ga"),
        ("gs", by_status, "TEXT", "jobs.status = ANY(string_to_array(v.gs, ','))"),
    ):  # fmt: skip
        if on:
            cols.append(name)
            types.append(typ)
            where.append(cond)
    sets = []
    for i, key in enumerate(keys):
        typ = UPDATE_TYPES[key]
        cols.append(f"c{i}")
        types.append("TEXT" if typ == "JSON" else typ)
        sets.append(f"{key} = v.c{i}{'::JSON' if typ == 'JSON' else ''}, ")
    if "status" in keys:
        sets.append("lease_expires_at = NULL, ")
    arrays = ", ".join(f"${i + 1}::{typ}[]" for i, typ in enumerate(types))
    update = (
        f"UPDATE jobs SET {''.join(sets)}version = jobs.version + 1"
        f" FROM unnest({arrays}) AS v({', '.join(cols)}) WHERE {' AND '.join(where)} AND {locked} RETURNING {_JCOLS}"
    )
    if "status" not in keys:
        return f"WITH {lock} {update}, false"
    return f"WITH {lock}, upd AS ({update}) SELECT upd.*, {_BATCH_HOLDS_BACK} FROM upd"


@lru_cache(maxsize=64)
def query_sql(by_status: bool, by_tool: bool, paged: bool, by_principal: bool = False, columns: str = WHOLE) -> str:
    """Newest first; parameters in the order `codec.query_args` gives them."""
    where: list[str] = []
    conds = (
        (by_status, "status = $?"),
        (by_tool, "tool_name = $?"),
        (by_principal, "principal = $?"),
        (paged, "(created_at, id) < ($?, $?)"),
    )
    for on, cond in conds:
        if on:
            where.append(cond)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {columns} FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT $?"
    parts = sql.split("$?")
    return "".join(f"{part}${i + 1}" if i < len(parts) - 1 else part for i, part in enumerate(parts))


@lru_cache(maxsize=8)
def get_many_sql(by_principal: bool, columns: str = WHOLE) -> str:
    """The jobs whose ids $1 holds (one array however many: a lookup by id each), then of the principal $2 when
    given."""
    return f"SELECT {columns} FROM jobs WHERE id = ANY($1::TEXT[])" + (" AND principal = $2" if by_principal else "")


def limit_args(limits: ClaimLimits) -> list[Any]:
    """Parameters $5.. of the limited claim (`claim_sql(True, ...)`)."""
    return [limits.max_running, *limits.resource_caps, json.dumps(dict(limits.per_tool))]


# $1 tools, $2 now (NULL: the database clock), $3 weights, $4 aging_ms, [$5..$9 limits], then owner, lease_ms, k,
# [$13 the claim lock key], the claim token.
# Within a priority level the order is (created_at, seq), so the best k jobs of a level are the first k
# eligible rows of the `jobs_claim_ready` index for that level: one short index scan per level (LIMIT k,
# SKIP LOCKED), then the best k of those (at most 4k) by the aged key. No sort of the whole queue.
# A batch honours the limits cumulatively: the n-th job of the batch (in claim order) is taken only
# when the running count, the summed resource needs and its tool's count, with the n - 1 before it
# (of the whole candidate list, so a job too big to fit also holds back those after it), still fit.
LEVEL = "least(greatest(j.priority, 0), 3)"
# The tools filter ($1: the tools of the claiming process), tested on each pending row the scan passes (jobs of
# tools that other processes serve sit ahead of this process's). Up to MANY_TOOLS: `= ANY($1)`, which the
# planner may also answer from `jobs_tool` (a rare tool's jobs behind many of others). More (a proxy has
# thousands): `tool_set` (2.9 s -> 14 ms per claim with 20,000 tools behind 20,000 jobs of another tool; 100
# tools 20 -> 5 ms: bench/claim_tools.py). `IN (SELECT unnest($1))` does not do here: at the top of this WHERE it
# is pulled up into a nested-loop semi join that reads the array again for each row.
MANY_TOOLS = 32
_TOOLS_FEW = "j.tool_name = ANY($1::TEXT[])"
_TOOLS_MANY = f"{tool_set('$1')} ? j.tool_name"


def _eligible(many: bool) -> str:
    """The claimable rows of a level (the same for the claim and the head of the queue): of `jobs_claim_ready`,
    not `blocked` (schema step 15), so the scan never meets the jobs a dependency holds back. The dependencies
    are tested again on the rows it meets (a lookup or two each): a job whose completed dependency was deleted
    since waits, and is failed by the sweeper, as before."""
    return f"""j.status = 'pending' AND {LEVEL} = lv.level AND {_TOOLS_MANY if many else _TOOLS_FEW}
          AND (j.run_after IS NULL OR j.run_after <= t.now) AND j.cancel_requested IS NULL
          AND NOT j.blocked AND (cardinality(j.deps) = 0 OR NOT {unmet("j.deps")})"""


_FITS = """
          AND ($6::FLOAT8 IS NULL OR u.memory_mb + j.need_memory_mb <= $6 + 1e-9)
          AND ($7::FLOAT8 IS NULL OR u.cpu_weight + j.need_cpu_weight <= $7 + 1e-9)
          AND ($8::FLOAT8 IS NULL OR u.disk_mb + j.need_disk_mb <= $8 + 1e-9)
          AND coalesce((u.by_tool ->> j.tool_name)::BIGINT, 0)
              < coalesce(($9::JSONB ->> j.tool_name)::BIGINT, 9223372036854775807)"""
# The advisory lock is taken inside `vj_claim_usage`, which then reads the running jobs with a snapshot
# newer than the lock (see postgres_schema step 2); a CTE over a volatile function runs once.
_USAGE = ", u AS (SELECT running, memory_mb, cpu_weight, disk_mb, by_tool FROM vj_claim_usage($13))"
_FITS_BATCH = """
    AND ($5::BIGINT IS NULL OR u.running + r.n <= $5)
    AND ($6::FLOAT8 IS NULL OR u.memory_mb + r.mem <= $6 + 1e-9)
    AND ($7::FLOAT8 IS NULL OR u.cpu_weight + r.cpu <= $7 + 1e-9)
    AND ($8::FLOAT8 IS NULL OR u.disk_mb + r.disk <= $8 + 1e-9)
    AND coalesce((u.by_tool ->> r.tool_name)::BIGINT, 0) + r.nt
        <= coalesce(($9::JSONB ->> r.tool_name)::BIGINT, 9223372036854775807)"""


def _claim(limited: bool, many: bool) -> str:
    owner, lease, k, token = ("$10", "$11", "$12", "$14") if limited else ("$5", "$6", "$7", "$8")
    return f"""WITH t AS (SELECT coalesce($2::BIGINT, {NOW_MS}) AS now){_USAGE if limited else ""},
cand AS (
    SELECT c.id, c.tool_name, c.need_memory_mb, c.need_cpu_weight, c.need_disk_mb, c.seq,
        c.created_at - coalesce(($3::FLOAT8[])[lv.level + 1], 1) * $4::BIGINT AS key
    FROM t{", u" if limited else ""}, (VALUES (0), (1), (2), (3)) AS lv(level)
    CROSS JOIN LATERAL (
        SELECT j.id, j.tool_name, j.need_memory_mb, j.need_cpu_weight, j.need_disk_mb, j.created_at, j.seq
        FROM jobs j
        WHERE {_eligible(many)}{_FITS if limited else ""}
        ORDER BY {LEVEL}, j.created_at, j.seq
        LIMIT {k}
        FOR UPDATE OF j SKIP LOCKED
    ) AS c
),
ranked AS (
    SELECT cand.id, cand.tool_name, row_number() OVER w AS n, sum(cand.need_memory_mb) OVER w AS mem,
        sum(cand.need_cpu_weight) OVER w AS cpu, sum(cand.need_disk_mb) OVER w AS disk,
        row_number() OVER (PARTITION BY cand.tool_name ORDER BY cand.key, cand.seq) AS nt
    FROM cand WINDOW w AS (ORDER BY cand.key, cand.seq)
),
pick AS (
    SELECT r.id, r.n FROM ranked r{", u" if limited else ""} WHERE r.n <= {k}{_FITS_BATCH if limited else ""}
),
upd AS (
    UPDATE jobs SET status = 'running', owner = {owner}, attempt = jobs.attempt + 1,
        lease_expires_at = t.now + {lease}, started_at = coalesce(jobs.started_at, t.now), updated_at = t.now,
        version = jobs.version + 1, claim_token = {token}::TEXT
    FROM pick, t WHERE jobs.id = pick.id
    RETURNING {_JCOLS}, pick.n AS claim_order
)
SELECT {_COLS} FROM upd ORDER BY claim_order"""


_CLAIMS = {(limited, many): _claim(limited, many) for limited in (False, True) for many in (False, True)}


def claim_sql(limited: bool, tools: int) -> str:
    """The claim statement, with the limits or without, for a process with `tools` tools."""
    return _CLAIMS[limited, tools > MANY_TOOLS]


def _head_fits(many: bool) -> str:
    """The head of the queue (the job a claim would take first if resources allowed: $1 tools, $2 now,
    $3 weights, $4 aging) and whether it fits beside the running jobs ($5 memory, $6 cpu weight, $7 disk caps;
    NULL: none)."""
    return f"""WITH t AS (SELECT coalesce($2::BIGINT, {NOW_MS}) AS now),
u AS (SELECT coalesce(sum(need_memory_mb), 0) AS mem, coalesce(sum(need_cpu_weight), 0) AS cpu,
        coalesce(sum(need_disk_mb), 0) AS disk FROM jobs WHERE status = 'running'),
head AS (
    SELECT c.* FROM t, (VALUES (0), (1), (2), (3)) AS lv(level)
    CROSS JOIN LATERAL (
        SELECT j.id, j.need_memory_mb, j.need_cpu_weight, j.need_disk_mb, j.seq,
            j.created_at - coalesce(($3::FLOAT8[])[lv.level + 1], 1) * $4::BIGINT AS key
        FROM jobs j WHERE {_eligible(many)}
        ORDER BY {LEVEL}, j.created_at, j.seq LIMIT 1
    ) AS c
    ORDER BY c.key, c.seq LIMIT 1
)
SELECT head.id, ($5::FLOAT8 IS NULL OR u.mem + head.need_memory_mb <= $5 + 1e-9)
    AND ($6::FLOAT8 IS NULL OR u.cpu + head.need_cpu_weight <= $6 + 1e-9)
    AND ($7::FLOAT8 IS NULL OR u.disk + head.need_disk_mb <= $7 + 1e-9)
FROM head, u"""


_HEADS = {many: _head_fits(many) for many in (False, True)}


def head_fits_sql(tools: int) -> str:
    """`_head_fits` for a process with `tools` tools."""
    return _HEADS[tools > MANY_TOOLS]


# The rows a claim took, read back after its answer was lost ($1 owner, $2 its token), in claim order as far
# as it can be rebuilt (the aged priority key is not stored): priority level, then creation order.
CLAIMED = (
    f"{SELECT} WHERE owner = $1 AND {ACTIVE_SQL} AND status = 'running' AND claim_token = $2"
    f" ORDER BY {LEVEL.replace('j.', '')} DESC, created_at, seq"
)
