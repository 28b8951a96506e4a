"""A job's stage history: each change of stage, with when and how far along, kept through the store."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.manager import MAX_DIAGNOSTIC_CHARS, MAX_STAGES


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


@pytest.mark.every_store
async def test_a_stage_is_kept_in_the_history_as_the_record_keeps_it(make_manager: ManagerFactory) -> None:
    """The record's stage was cut to a line, its history kept each one whole: a proxied upstream's progress
    messages of 1 MB (each its stage) grew it by 1 MB a step, rewritten whole at every write (review helper-93).
    A stage holding a NUL is kept escaped there too (PostgreSQL's text cannot hold one)."""
    async with make_manager() as m:
        job_id = await m.create_job("t", {})
        await m.start_job(job_id)
        for i in range(3):
            await m.update_progress(job_id, None, stage=f"{i}" + "s" * 2**20)
            await m.update_progress(job_id, None, stage=f"{i}" + "s" * 2**20)  # the same stage, no new entry
        await m.update_progress(job_id, None, stage="a\x00b")
        rec = await m.get_record(job_id)
    assert rec.stage_history is not None and [h["stage"] for h in rec.stage_history][-1] == "a\\x00b"
    kept = [h["stage"] for h in rec.stage_history[:-1]]
    assert [s[:1] for s in kept] == ["0", "1", "2"], [s[:20] for s in kept]
    assert all(len(s) <= MAX_DIAGNOSTIC_CHARS and "[line cut: 1,048,577 characters]" in s for s in kept)
