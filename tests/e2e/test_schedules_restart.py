"""A schedule on SQLite survives a SIGKILL of its server: the restarted server lists it and fires its next
tick on time, and no tick fires twice (the tick's key is in the file with the job)."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import anyio
import pytest

from tests.e2e.test_crash_recovery import Setup, client_of, serve, setup  # noqa: F401  # the setup fixture

pytestmark = pytest.mark.timeout(90)

PERIOD_MS = 4000


def fired(db: str, schedule_id: str) -> list[tuple[int, int, int]]:
    """(tick, jobs for it, ms from tick to the job's creation), read from the file as another process."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT tick, count(*), max(created_at - tick) FROM jobs WHERE schedule_id = ? GROUP BY tick ORDER BY tick",
            (schedule_id,),
        ).fetchall()
    return [(int(a), int(b), int(c)) for a, b, c in rows]


async def wait_fired(db: str, schedule_id: str, n: int, within: float) -> list[tuple[int, int, int]]:
    deadline = time.monotonic() + within
    while len(rows := fired(db, schedule_id)) < n:
        assert time.monotonic() < deadline, f"only {len(rows)} of {n} firings within {within} s"
        await anyio.sleep(0.05)
    return rows


async def test_a_schedule_survives_sigkill_and_fires_its_next_tick_on_time(setup: Setup) -> None:  # noqa: F811
    db = str(setup.db)
    with serve(setup) as first:
        async with client_of(first) as client:
            made = await client.call_tool("schedule-job", {"tool": "slow_safe", "arguments": {"seconds": 0},
                                                           "everySeconds": PERIOD_MS / 1000})  # fmt: skip
            assert not made.is_error and made.structured_content is not None, made.content
            sid = made.structured_content["scheduleId"]
        ((first_tick, _, _),) = await wait_fired(db, sid, 1, within=PERIOD_MS / 1000 + 5)
        first.kill()
    with serve(setup) as second:
        ready = int(time.time() * 1000)  # listening (its ticker started just before)
        async with client_of(second) as client:
            listed = (await client.call_tool("list-schedules", {})).structured_content
            assert listed is not None and [s["scheduleId"] for s in listed["schedules"]] == [sid]
            rows = await wait_fired(db, sid, 2, within=PERIOD_MS / 1000 + 5)
            await client.call_tool("delete-schedule", {"scheduleId": sid})
    (tick1, n1, _), (tick2, n2, late2) = rows[:2]
    due = max(tick2, ready)  # a tick that came due while the server was down is due when it is back
    print(f"\nnext tick after the restart fired {late2} ms after its time, {tick2 + late2 - due} ms after due")
    assert (tick1, n1, n2) == (first_tick, 1, 1)
    assert tick2 == first_tick + PERIOD_MS, "the next tick after the restart is the one after the last fired"
    assert tick2 + late2 - due < 1000, f"the next tick fired {tick2 + late2 - due} ms after it was due"
