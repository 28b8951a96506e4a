"""A job's stage history: each change of stage, with when and how far along, kept through the store."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.manager import MAX_STAGES


@pytest.mark.every_store
async def test_each_change_of_stage_is_kept_once(make_manager: ManagerFactory, clock: FakeClock) -> None:
    async with make_manager() as m:
        job_id = await m.create_job("t", {})
        await m.start_job(job_id)
        t0 = clock.ms
        await m.update_progress(job_id, 10, stage="fetch")
        clock.advance(1)
        await m.update_progress(job_id, 20, stage="fetch")  # the same stage: no new entry
        await m.update_progress(job_id, 30)  # no stage given: none
        clock.advance(1)
        await m.update_progress(job_id, 60, stage="parse")
        rec = await m.store.get(job_id)
    assert rec is not None and rec.stage_history == [
        {"stage": "fetch", "at": t0, "progress": 10},
        {"stage": "parse", "at": t0 + 2000, "progress": 60},
    ]


async def test_the_history_keeps_the_latest_stages(make_manager: ManagerFactory) -> None:
    async with make_manager() as m:
        job_id = await m.create_job("t", {})
        await m.start_job(job_id)
        for i in range(MAX_STAGES + 5):
            await m.update_progress(job_id, None, stage=f"s{i}")
        rec = await m.get_record(job_id)
    assert rec.stage_history is not None and len(rec.stage_history) == MAX_STAGES
    assert rec.stage_history[-1]["stage"] == f"s{MAX_STAGES + 4}"
