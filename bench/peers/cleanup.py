# mypy: disable-error-code="import-not-found"
"""Find, or remove, what peer runs under a tag prefix left in PostgreSQL and Redis.

`check PREFIX` prints what is there; `clean PREFIX` also removes it: sessions whose application_name starts
with PREFIX are terminated (pg_terminate_backend), schemas whose name starts with it dropped (CASCADE) in the
bench database, Redis keys that contain it deleted. One JSON line: {"sessions": [...], "schemas": [...],
"redis_keys": n}. bench/peers.py runs it after a peer that timed out or failed; bench/suite.py at the end.

Run: .bench-venv/bin/python bench/peers/cleanup.py check vjb_
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import peerlib

SESSIONS = "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s"
SCHEMAS = "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s"


def like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


async def postgres(prefix: str, clean: bool) -> dict[str, list[str]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(peerlib.POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (peerlib.BENCH_DB,))
        if await cur.fetchone() is None:
            return {"sessions": [], "schemas": []}
        sessions = await (await conn.execute(SESSIONS, (peerlib.BENCH_DB, like(prefix)))).fetchall()
        if clean:
            for pid, _name in sessions:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    async with await psycopg.AsyncConnection.connect(peerlib.db_url(), autocommit=True) as conn:
        await conn.execute("SET lock_timeout = '10s'")  # a drop never waits for good on a lock
        schemas = [r[0] for r in await (await conn.execute(SCHEMAS, (like(prefix),))).fetchall()]
        if clean:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"sessions": [f"{name} (pid {pid})" for pid, name in sessions], "schemas": schemas}


async def redis_keys(prefix: str, clean: bool) -> int:
    from redis.asyncio import Redis

    if clean:
        return await peerlib.delete_redis_keys(f"*{prefix}*")
    redis = Redis.from_url(peerlib.REDIS_URL)
    try:
        return len([k async for k in redis.scan_iter(match=f"*{prefix}*", count=1000)])
    finally:
        await redis.aclose()


async def main(action: str, prefix: str) -> None:
    if not prefix.startswith("vjb_"):
        raise SystemExit(f"refusing prefix {prefix!r}: bench tags start with vjb_")
    clean = action == "clean"
    found: dict[str, Any] = await postgres(prefix, clean)
    found["redis_keys"] = await redis_keys(prefix, clean)
    print(json.dumps(found))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["check", "clean"])
    parser.add_argument("prefix")
    args = parser.parse_args()
    asyncio.run(main(args.action, args.prefix))
