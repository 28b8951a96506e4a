"""A 1-second schedule on a PostgreSQL cluster (2 `serve --no-worker` + 2 `worker`, a fresh schema) for 30 s
of real time: every process ticks, yet each tick fires exactly once (jobs counted per tick in the
database), and none is missed while a worker is SIGKILLed midway. Its jobs all complete (the killed
worker's are recovered by the other)."""

from __future__ import annotations

import json
import time

import anyio
import pytest

from tests.e2e.test_cluster import Cluster, cluster, running  # noqa: F401  # the cluster fixture
from tests.e2e.test_crash_recovery import client_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(180)]

RUN_SECONDS = 30


async def per_tick(c: Cluster, schedule_id: str) -> list[tuple[int, int, int]]:
    """(tick, jobs fired for it, ms from tick to the job's creation) for every tick of the schedule."""
    conn_sql = (
        "SELECT coalesce(json_agg(json_build_array(tick, n, late) ORDER BY tick), '[]')::TEXT FROM"
        " (SELECT tick, count(*) AS n, max(created_at - tick) AS late FROM jobs WHERE schedule_id = $1"
        " GROUP BY tick) t"
    )
    return [tuple(row) for row in json.loads(await c.connect(conn_sql, schedule_id))]


async def test_each_tick_fires_exactly_once_across_the_cluster_and_none_is_missed(cluster: Cluster) -> None:  # noqa: F811
    with running(cluster, servers=2, workers=2):
        async with client_of(cluster.servers[0]) as client:
            made = await client.call_tool("schedule-job", {
                "tool": "timed", "arguments": {"seconds": 0.05}, "everySeconds": 1,
                "misfire": "catch_up", "maxCatchUp": 100,
            })  # fmt: skip
            assert not made.is_error and made.structured_content is not None, made.content
            sid = made.structured_content["scheduleId"]
            began = time.monotonic()
            await anyio.sleep(RUN_SECONDS / 2)
            cluster.workers[0].kill()  # mid-way: SIGKILL, no lease release
            await anyio.sleep(RUN_SECONDS / 2)
            listed = await client.call_tool("list-schedules", {})
            shown = next(s for s in (listed.structured_content or {})["schedules"] if s["scheduleId"] == sid)
            deleted = await client.call_tool("delete-schedule", {"scheduleId": sid})
            assert not deleted.is_error, deleted.content
            elapsed = time.monotonic() - began
        rows = await per_tick(cluster, sid)
        finished = int(await cluster.connect(
            "SELECT count(*) FROM jobs WHERE schedule_id = $1 AND status = 'completed'", sid))  # fmt: skip
        deadline = time.monotonic() + 20
        while finished < len(rows) and time.monotonic() < deadline:  # the killed worker's jobs, recovered
            await anyio.sleep(0.2)
            finished = int(await cluster.connect(
                "SELECT count(*) FROM jobs WHERE schedule_id = $1 AND status = 'completed'", sid))  # fmt: skip
    ticks = [tick for tick, _, _ in rows]
    twice = [(tick, n) for tick, n, _ in rows if n != 1]
    late = max(lateness for _, _, lateness in rows)
    print(
        f"\n{len(rows)} ticks in {elapsed:.1f} s, fired once each: {not twice}; latest firing {late} ms after its tick"
    )
    assert twice == [], f"ticks fired more than once: {twice}"
    assert ticks == list(range(ticks[0], ticks[0] + 1000 * len(ticks), 1000)), "a tick was missed"
    assert len(ticks) >= RUN_SECONDS - 2
    assert finished == len(rows), f"{len(rows) - finished} fired jobs did not complete"
    # every process ticks; the one that fired a tick records it even when another moved the schedule on
    assert shown.get("lastJobId") is not None and shown.get("lastFiredAt") is not None, shown
    assert shown["lastTick"] in ticks and shown["lastTick"] >= ticks[-1] - 5000, (shown, ticks[-3:])
