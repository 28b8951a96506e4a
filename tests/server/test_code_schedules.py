"""`@job_tool(..., schedule="...")`: the schedule a tool declares in code is created at start-up, left as it
is when a later start-up declares it again (idempotent, its firing state kept), updated when the code
changes it, and fires its tool."""

from __future__ import annotations

from pathlib import Path

import anyio

from vibe_jobs.engine.schedules import code_schedule_id, parse_spec
from vibe_jobs.jobtool import REGISTRY, job_tool
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.server.jobserver import JobServer
from vibe_jobs.store import JobQuery, open_store
from vibe_jobs.store.base import ScheduleStore

SID = code_schedule_id("housekeeping")


def server_with(url: str, schedule: str) -> tuple[JobServer, ScheduleStore]:
    @job_tool(name="housekeeping", schedule=schedule)
    async def housekeeping() -> str:
        return "swept"

    server = JobServer(store=open_store(url))
    server.add_spec(REGISTRY.pop("housekeeping"))  # what `--tools MODULE` does with the registry
    store = server.manager.store
    assert isinstance(store, ScheduleStore)
    return server, store


async def test_a_schedule_declared_in_code_is_created_once_updated_on_change_and_fires(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    one, store = server_with(url, "* * * * * *")  # every second
    async with one.manager:
        await one.start_schedules()
        first = await store.get_schedule(SID)
        assert first is not None and first.cron == "* * * * * *" and first.tool == "housekeeping"
        with one.manager.subscribe() as events, anyio.fail_after(5):
            created = await events.__anext__()  # the first firing's job
        jobs = await one.manager.store.query(JobQuery(tool_name="housekeeping"))
        assert created.job_id in {j.id for j in jobs}
        assert jobs[-1].schedule_id == SID
        done = await one.manager.wait(jobs[-1].id, 5)
        assert done.result is not None and done.result["content"][0]["text"] == "swept"
        one.manager.task_group.cancel_scope.cancel()  # stop ticking before reading the state
    kept = await _read(url)
    assert kept.last_fired_at is not None

    again, store = server_with(url, "* * * * * *")  # a restart with the same code: nothing changes
    async with again.manager:
        await again.schedules.declare(parse_spec({"tool": "housekeeping", "cron": "* * * * * *", "scheduleId": SID}))
        same = await store.get_schedule(SID)
    assert same is not None and (same.version, same.created_at, same.last_fired_at) == (
        kept.version, kept.created_at, kept.last_fired_at)  # fmt: skip

    changed, store = server_with(url, "0 3 * * *")  # the code now says 03:00 daily
    async with changed.manager:
        await changed.start_schedules()
        new = await store.get_schedule(SID)
        assert new is not None and new.cron == "0 3 * * *" and len(await store.list_schedules()) == 1
    assert new.next_fire_at is not None and new.next_fire_at % 86_400_000 == 3 * 3_600_000


async def _read(url: str) -> ScheduleRecord:
    store = open_store(url)
    await store.open()
    try:
        assert isinstance(store, ScheduleStore)
        rec = await store.get_schedule(SID)
    finally:
        await store.close()
    assert rec is not None
    return rec
