"""What the calls that name many jobs cost the store, against the real `vibe-jobs serve` on SQLite: list-schedules
and job-stats read every listed schedule's last job in one store read, not one each; submit-job reads its
dependencies at once. A principal never sees another principal's job through these reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_identity_e2e import ALICE, client_as, serve
from tests.e2e.test_jobs_e2e import structured, texts
from vibe_jobs import JobManager, Settings
from vibe_jobs.identity import Viewer
from vibe_jobs.results import text_result
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.store import open_store

pytestmark = pytest.mark.timeout(180)

SCHEDULES = 300
DEPENDENCIES = 1000  # submit-job's most (MAX_DEPENDENCIES)


def hourly(schedule_id: str, job_id: str, principal: str, now: int) -> ScheduleRecord:
    """A schedule of `principal` whose next firing is an hour away (the ticker reads nothing meanwhile) and
    that fired `job_id` last."""
    return ScheduleRecord(
        schedule_id, "echo", {"text": "x"}, None, 3600.0, "UTC", None, None, False, "run_once", 10, "allow",
        "medium", None, now, now + 3_600_000, now, now, last_job_id=job_id, principal=principal,
    )  # fmt: skip


async def fill(url: str) -> None:
    """SCHEDULES schedules of alice, each with a completed job of its own as its last, and one more of hers whose
    last job is bob's (a record no firing makes: the listing must not show that job)."""
    async with JobManager(open_store(url), Settings(max_pending=10 * SCHEDULES)) as m:
        store: Any = m.store
        now = m.now()

        async def done(principal: str) -> str:
            job_id = await m.create_job("echo", {"text": "x"}, viewer=Viewer(principal))
            await m.start_job(job_id)
            await m.set_job_result(job_id, text_result("ok"))
            return job_id

        for i in range(SCHEDULES):
            await store.insert_schedule(hourly(f"s{i:04d}", await done("alice"), "alice", now + i))
        await store.insert_schedule(hourly("s-bobs-job", await done("bob"), "alice", now + SCHEDULES))


async def job_reads(port: int) -> float:
    """The store's reads of jobs by id so far (/metrics): `get` and `get_many` calls."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vibe_jobs_store_operation_seconds_count" and s.labels.get("op") in ("get", "get_many")
    )


async def test_listing_many_schedules_reads_their_last_jobs_at_once_and_only_the_principal_s(tmp_path: Path) -> None:
    """300 schedules cost list-schedules (and job-stats, which lists them too) 300 store reads, one a schedule's
    last job: 1,000 (one principal's default quota) were 1,000 round trips a call on PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    await fill(url)
    with serve(tmp_path, "streamable-http", url) as server:
        async with client_as(server, ALICE) as alice:
            for tool in ("list-schedules", "job-stats"):
                before = await job_reads(server.port)
                with anyio.fail_after(60):
                    listed = structured(await alice.call_tool(tool, {}))["schedules"]
                reads = await job_reads(server.port) - before
                assert reads <= 2, (tool, reads)
                assert len(listed) == SCHEDULES + 1, (tool, len(listed))
                outcomes = {s["scheduleId"]: s.get("lastOutcome") for s in listed}
                assert outcomes.pop("s-bobs-job") is None, tool  # bob's job: not shown to alice
                assert set(outcomes.values()) == {"completed"}, (tool, set(outcomes.values()))


async def test_a_job_with_many_dependencies_reads_them_at_once(tmp_path: Path) -> None:
    """submit-job with 1,000 dependsOn (its most) read each dependency whole, one store read each, to check it, and
    again, one each, to queue the job: 2,000 reads, each a round trip on PostgreSQL and each dependency's result
    read for nothing. Another principal's job still names no known job."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with JobManager(open_store(url), Settings(max_pending=10 * DEPENDENCIES)) as m:
        deps = []
        for i in range(DEPENDENCIES):
            job_id = await m.create_job("echo", {"text": str(i)}, viewer=Viewer("alice"))
            await m.start_job(job_id)
            await m.set_job_result(job_id, text_result("ok"))
            deps.append(job_id)
        bobs = await m.create_job("echo", {"text": "bob's"}, viewer=Viewer("bob"))
    with serve(tmp_path, "streamable-http", url) as server:
        async with client_as(server, ALICE) as alice:
            before = await job_reads(server.port)
            made = await alice.call_tool("submit-job", {"tool": "echo", "arguments": {"text": "x"}, "dependsOn": deps})
            reads = await job_reads(server.port) - before
            assert not made.is_error, texts(made)[:300]
            assert reads <= 3, reads
            refused = await alice.call_tool(
                "submit-job", {"tool": "echo", "arguments": {"text": "x"}, "dependsOn": [*deps[:5], bobs]}
            )
            assert refused.is_error and f"dependency '{bobs}' names no known job" in texts(refused), texts(refused)
            job_id = structured(made)["jobId"]
            with anyio.fail_after(60):
                done = structured(await alice.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30}))
            assert done.get("status") == "completed", done
