"""list-schedules over HTTP carries the schedules that fit one answer (`carried_schedules`) and counts the rest:
the last jobs of those it carries only are read. On the real SQLite store, counting the jobs it reads by id."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import anyio
from mcp import Client

from tests.e2e.conftest import free_port
from vibe_jobs import JobManager, JobServer, Settings
from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.identity import LOCAL_PRINCIPAL, Viewer
from vibe_jobs.results import text_result
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.server.answers import carried_schedules
from vibe_jobs.store import open_store
from vibe_jobs.testing.counting import CountingSQLite

ALICE = Viewer("alice")
LIMIT = 65_536  # the smallest VIBE_JOBS_MAX_ANSWER_BYTES
OVER_HTTP = object()  # `carried_schedules` cuts when the call came over HTTP (a request), not over stdio (None)


async def fill(m: JobManager, count: int, principal: str = ALICE.principal) -> None:
    """`count` hourly schedules (alice's) with 200-byte crons, each with a completed job of its own as its last."""
    cron = ",".join(str(minute) for minute in range(0, 60, 2)) + " * * * *"
    now = m.now()
    for i in range(count):
        job_id = await m.create_job("echo", {"i": i}, viewer=Viewer(principal))
        await m.start_job(job_id)
        await m.set_job_result(job_id, text_result("ok"))
        rec = ScheduleRecord(
            f"s{i:04d}", "echo", {"text": "x" * 100}, cron, None, "UTC", None, None, False, "run_once", 10, "allow",
            "medium", None, now, now + 3_600_000, now + i, now + i, last_job_id=job_id, principal=principal,
        )  # fmt: skip
        await m.store.insert_schedule(rec)  # type: ignore[attr-defined]


async def test_list_schedules_over_http_reads_the_last_jobs_of_the_schedules_it_carries_only(tmp_path: Path) -> None:
    """400 schedules, of which one answer of 64 KiB carries 45: each of the 400 last jobs was read (one
    store read each) for the 355 schedules it then left out. Those it carries still show their last outcome,
    and the answer stays within its budget with them."""
    store = CountingSQLite(f"sqlite:///{tmp_path / 'jobs.db'}")
    async with JobManager(store, Settings(max_pending=10_000)) as m:
        await fill(m, 400)
        schedules = Schedules(m, {})
        store.reads = 0
        shown, omitted = await schedules.page(ALICE, lambda wires: carried_schedules(wires, OVER_HTTP, LIMIT))
        assert 0 < len(shown) < 400 and len(shown) + omitted == 400, (len(shown), omitted)
        assert store.reads == len(shown), (store.reads, len(shown))
        assert {s.get("lastOutcome") for s in shown} == {"completed"}
        assert sum(len(json.dumps(s, separators=(",", ":"))) for s in shown) <= LIMIT * 3 // 8  # the items' share
        assert shown == [s.wire() for s in await schedules.list(ALICE)][: len(shown)]  # as listed whole

        store.reads = 0
        whole, none_left = await schedules.page(ALICE, lambda wires: carried_schedules(wires, None, LIMIT))
        assert (len(whole), none_left, store.reads) == (400, 0, 400)  # over stdio: every one


async def test_job_stats_over_http_reads_the_last_jobs_of_the_schedules_it_carries_only(tmp_path: Path) -> None:
    """job-stats lists the schedules as list-schedules does, cut to one answer (`schedulesOmitted`), yet read the
    last job of every schedule, the 355 of 400 it then left out too (10,000 schedules: 10,000 jobs read a call
    to show 916). A real server over streamable HTTP, a real client: the jobs read are those carried; each
    schedule keeps the answer's shape (every field, null ones too)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with JobManager(open_store(url), Settings(max_pending=10_000)) as m:
        await fill(m, 400, principal=LOCAL_PRINCIPAL)
    store = CountingSQLite(url)
    server = JobServer("stats", settings=Settings(max_answer_bytes=LIMIT), store=store)
    port = free_port()
    async with anyio.create_task_group() as serving:
        serving.start_soon(partial(server.serve, "streamable-http", "127.0.0.1", port, allow_unauthenticated=True))
        with anyio.fail_after(30):
            await listening(port)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                store.reads = 0
                answer = await client.call_tool("job-stats", {})
                reads = store.reads
        serving.cancel_scope.cancel()
    body = answer.structured_content
    assert body is not None and not answer.is_error
    shown, omitted = body["schedules"], body.get("schedulesOmitted", 0)
    assert 0 < len(shown) < 400 and len(shown) + omitted == 400, (len(shown), omitted)
    assert reads == len(shown), (reads, len(shown))  # was 400
    assert {s["lastOutcome"] for s in shown} == {"completed"}
    assert shown[0]["everySeconds"] is None and shown[0]["endAt"] is None  # null fields kept, as before
    assert [s["scheduleId"] for s in shown] == [f"s{i:04d}" for i in range(len(shown))]


async def listening(port: int) -> None:
    while True:
        try:
            await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
            return
        except OSError:
            await anyio.sleep(0.05)
