"""The PostgreSQL claim's cost for a process with many tools while many pending jobs of other tools sit ahead.

A process that serves TOOLS tools (a `vibe-jobs proxy` in front of an MCP server has thousands) claims from a
schema of its own where FOREIGN pending jobs of tools it does not serve were created before MINE pending jobs
of its own: the claim's scan of a priority level (`jobs_claim_ready`, oldest first) passes the foreign jobs before it
reaches one of its own, testing each against the process's tools. Each claim takes K jobs (`claim_many` with
the default settings' limits, the statement a worker runs; --unlimited: the other one); the jobs it took are
then marked completed (not timed), so the next claim finds the same queue ahead of it. The store has one
connection, so its prepared statement is reused: executions 1-5 get custom plans (the tools a constant array,
which PostgreSQL hashes); from the 6th it may keep a generic plan (the tools a parameter). Which one it keeps,
and whether that plan scans `jobs_claim_ready` testing each row against the tools, depends on the table's statistics:
few distinct tools in the table (the default: the foreign jobs of one tool, the process's of one) make the
generic plan such a scan. With --generic every execution runs on the generic plan (`plan_cache_mode =
force_generic_plan`). Printed per claim (wall ms): the first, the median of executions 2-5 and the median and
max of executions 7 on; then the same for `head_fits` (the reservation window's look at the queue's head).
--explain first prints the claim's plans, custom and generic, with the time each node took (auto_explain on a
session of its own, in a transaction rolled back; a long array constant shortened).

Run: .venv/bin/python bench/claim_tools.py [--tools 1,100,20000] [--foreign N] [--foreign-tools F] [--mine M]
        [--mine-tools T] [--k K] [--claims C] [--generic] [--unlimited] [--explain] [--postgres URL] [TREE]
     TREE: another checkout (its src/ is imported instead of this one's), to compare two commits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

CUSTOM = 5  # asyncpg's prepared statement gets custom plans for its first 5 executions
TIMED_FROM = 7  # the figures after the switch: executions 7 on


def record(job_id: str, tool: str, created_at: int) -> Any:
    from vibe_jobs import JobRecord, JobStatus

    return JobRecord(job_id, tool, {"text": "x" * 100}, JobStatus.PENDING, created_at, created_at)


async def fill(conn: Any, a: argparse.Namespace, tools: list[str], now: int) -> None:
    """FOREIGN jobs of FOREIGN_TOOLS tools not served here, then MINE of the first MINE_TOOLS served tools (round
    robin), all pending; then ANALYZE (the planner's statistics, as autovacuum keeps them)."""
    from vibe_jobs.store.postgres import sql

    theirs = [f"absent-{i}" for i in range(a.foreign_tools)]
    ours = tools[: a.mine_tools]
    jobs = [record(f"foreign-{i:06d}", theirs[i % len(theirs)], now - 10_000_000 + i) for i in range(a.foreign)]
    jobs += [record(f"mine-{i:06d}", ours[i % len(ours)], now - 1_000_000 + i) for i in range(a.mine)]
    async with conn.transaction():
        await conn.executemany(sql.INSERT, [sql.insert_args(rec) for rec in jobs])
    await conn.execute("ANALYZE jobs")


async def timed(calls: int, call: Callable[[], Awaitable[Any]], after: Callable[[Any], Awaitable[None]]) -> list[float]:
    """Wall ms of each of `calls` calls (`after` runs untimed after each)."""
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        found = await call()
        times.append((time.perf_counter() - began) * 1000)
        await after(found)
    return times


def figures(name: str, times: list[float]) -> str:
    later = times[TIMED_FROM - 1 :]
    return (
        f"{name}: first {times[0]:.1f} ms, executions 2-{CUSTOM} median {statistics.median(times[1:CUSTOM]):.1f} ms;"
        f" executions {TIMED_FROM}-{len(times)} median {statistics.median(later):.1f} ms, max {max(later):.1f} ms"
    )


async def explain(dsn: str, schema: str, query: str, args: list[Any]) -> None:
    """The plans of `query` as a prepared statement gets them, custom and generic (auto_explain's log, sent to
    the session), in a transaction rolled back."""
    import asyncpg

    plans: list[str] = []
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    conn.add_log_listener(lambda _conn, msg: plans.append(msg.message))
    try:
        await conn.execute("LOAD 'auto_explain'")
        for mode in ("force_custom_plan", "force_generic_plan"):
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(
                    f"SET LOCAL plan_cache_mode = {mode}; SET LOCAL auto_explain.log_min_duration = 0;"
                    " SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_buffers = on;"
                    " SET LOCAL client_min_messages = log"
                )
                plans.clear()
                await conn.fetch(query, *args)
            finally:
                await tx.rollback()  # the jobs stay pending
            print(f"--- the claim with plan_cache_mode = {mode} (auto_explain)")
            text = "\n".join(m.replace(f"Query Text: {query}\n", "") for m in plans if query in m)
            print(re.sub(r"'\{([^,}]*,[^,}]*),[^}]{100,}\}'", r"'{\1,...}'", text))  # a custom plan names every tool
    finally:
        await conn.close()


def claim_query(sql: Any, limited: bool, tools: int) -> str:
    if hasattr(sql, "claim_sql"):
        return str(sql.claim_sql(limited, tools))
    return str(sql.CLAIM_LIMITED if limited else sql.CLAIM_UNLIMITED)  # a checkout from before claim_sql


async def run(n_tools: int, a: argparse.Namespace) -> None:
    import asyncpg

    from vibe_jobs import Settings
    from vibe_jobs.store.base import ClaimLimits
    from vibe_jobs.store.postgres import PostgresStore, sql

    url = f"{a.postgres}{'&' if '?' in a.postgres else '?'}schema=bench_{os.urandom(4).hex()}&pool_min=1&pool_max=1"
    tools = [f"tool-{i}" for i in range(n_tools)]
    limits = ClaimLimits() if a.unlimited else ClaimLimits.from_settings(Settings())
    store = PostgresStore(url)
    await store.open()
    side = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
    try:
        now = int(time.time() * 1000)
        await fill(side, a, tools, now)
        if a.explain:
            args: list[Any] = [tools, now, list(limits.priority_weights), limits.aging_ms]
            tail: list[Any] = ["me", 60_000, a.k, *([42] if limits.limited else []), "token"]  # 42: the lock key
            limit_args = sql.limit_args(limits) if limits.limited else []
            query = claim_query(sql, limits.limited, n_tools)
            await explain(store.dsn, store.schema, query, [*args, *limit_args, *tail])
        if a.generic:
            await store.pool.execute("SET plan_cache_mode = force_generic_plan")  # its one connection keeps it

        async def completed(found: list[Any]) -> None:
            assert len(found) == a.k and all(rec.tool_name in tools for rec in found), found
            await side.execute("UPDATE jobs SET status = 'completed' WHERE id = ANY($1::TEXT[])", [r.id for r in found])

        async def nothing(_found: Any) -> None:
            return None

        calls = TIMED_FROM - 1 + a.claims
        claims = await timed(calls, lambda: store.claim_many("me", 60_000, limits, tools, a.k, now=now), completed)
        print(figures(f"claim of {a.k}", claims))
        heads = await timed(calls, lambda: store.head_fits(tools, limits, now=now), nothing)
        print(figures("head_fits", heads))
    finally:
        await side.close()
        await store.close()
        await store.drop_schema()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", nargs="?", help="another checkout to measure instead of this one")
    ap.add_argument("--tools", default="1,100,20000", help="tools served, one run each (comma-separated)")
    ap.add_argument("--foreign", type=int, default=20_000, help="pending jobs of tools not served, created first")
    ap.add_argument("--foreign-tools", type=int, default=1, help="the tools of those jobs")
    ap.add_argument("--mine", type=int, default=300, help="pending jobs of served tools, created after")
    ap.add_argument("--mine-tools", type=int, default=1, help="the served tools those jobs are of")
    ap.add_argument("--k", type=int, default=5, help="jobs per claim (the default concurrency)")
    ap.add_argument("--claims", type=int, default=20, help=f"claims timed from execution {TIMED_FROM} on")
    ap.add_argument("--generic", action="store_true", help="every execution on the generic plan")
    ap.add_argument("--unlimited", action="store_true", help="no limits: the unlimited claim statement")
    ap.add_argument("--explain", action="store_true", help="print the claim's plans, custom and generic, first")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    a = ap.parse_args()
    if a.tree:
        sys.path.insert(0, os.path.join(os.path.abspath(a.tree), "src"))
    if (TIMED_FROM - 1 + a.claims) * a.k > a.mine:
        ap.error(f"--mine must hold the {(TIMED_FROM - 1 + a.claims) * a.k} jobs the claims take")
    from vibe_jobs.logs import configure_logging

    configure_logging("warning")
    print(
        f"{a.foreign:,} pending jobs of {a.foreign_tools} tool(s) not served ahead of {a.mine} of"
        f" {a.mine_tools} served tool(s); {'unlimited' if a.unlimited else 'limited (default settings)'},"
        f" {'generic plan forced' if a.generic else 'plan_cache_mode auto'} ({a.tree or 'this checkout'})"
    )
    for n in (int(t) for t in a.tools.split(",")):
        print(f"{n:,} tool(s) served")
        asyncio.run(run(n, a))


if __name__ == "__main__":
    main()
