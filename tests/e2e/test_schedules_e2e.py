"""Schedules, runAt and deadlines over MCP: the real client against the real `vibe-jobs serve`, in both
protocol eras (a server of its own per test, so no test sees another's schedules)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, stdio_client_for
from tests.e2e.test_jobs_e2e import read, structured, texts

pytestmark = [pytest.mark.timeout(90), pytest.mark.parametrize("mode", MODES)]


def now_ms() -> int:
    return int(time.time() * 1000)


async def scheduled_jobs(client: Client, schedule_id: str) -> list[dict[str, Any]]:
    jobs = structured(await client.call_tool("list-jobs", {"toolName": "echo", "limit": 500}))["jobs"]
    return sorted((j for j in jobs if j.get("scheduleId") == schedule_id), key=lambda j: j["tick"])


async def test_every_second_fires_three_jobs_that_complete_and_delete_stops_it(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        made = await client.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "tick"},
                                                       "everySeconds": 1})  # fmt: skip
        assert not made.is_error, texts(made)
        body = structured(made)
        sid = body["scheduleId"]
        assert body["nextFireAt"] > now_ms() - 1000
        jobs: list[dict[str, Any]] = []
        with anyio.fail_after(6):  # three firings of a 1-second schedule, with room for a loaded machine
            while len(jobs) < 3:
                jobs = await scheduled_jobs(client, sid)
                await anyio.sleep(0.05)  # bounded polling: no call waits for a schedule's next firing
        ticks = [j["tick"] for j in jobs[:3]]
        assert ticks == [ticks[0], ticks[0] + 1000, ticks[0] + 2000]  # one job per tick, none twice
        for job in jobs[:3]:
            _, final = await read(client, job["id"], waitSeconds=10)
            assert final["status"] == "completed" and final["result"]["structuredContent"]["text"] == "tick"
            # get-job-result and job://{jobId} link the job back to its schedule too, not only list-jobs
            assert (final.get("scheduleId"), final.get("tick")) == (sid, job["tick"]), final
            resource = await client.read_resource(f"job://{job['id']}")
            shown = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert (shown.get("scheduleId"), shown.get("tick")) == (sid, job["tick"]), shown
        listed = structured(await client.call_tool("list-schedules", {}))["schedules"]
        assert [s["scheduleId"] for s in listed] == [sid] and listed[0]["lastFiredAt"] is not None
        stats = structured(await client.call_tool("job-stats", {}))
        assert stats["schedules"][0]["scheduleId"] == sid and stats["schedules"][0]["nextFireAt"] > 0
        deleted = await client.call_tool("delete-schedule", {"scheduleId": sid})
        assert not deleted.is_error, texts(deleted)
        count = len(await scheduled_jobs(client, sid))
        for _ in range(10):  # 2.5 s (2.5 periods) in which a firing after the delete would show
            await anyio.sleep(0.25)
            assert len(await scheduled_jobs(client, sid)) == count
        assert structured(await client.call_tool("list-schedules", {}))["schedules"] == []


async def test_list_schedules_says_in_words_what_comes_next_and_what_came_last(mode: str) -> None:
    """Its text read "... next 1798761600000 last None" (Python's None, for a schedule that never fired) and, for a
    paused one, "(paused) next <its planned tick>": the words schedule-job and pause-schedule use now."""
    async with stdio_client_for(mode) as client:
        made = await client.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "t"},
                                                       "cron": "0 0 1 1 *"})  # fmt: skip
        sid = structured(made)["scheduleId"]
        paused = await client.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "p"},
                                                         "everySeconds": 3600})  # fmt: skip
        await client.call_tool("pause-schedule", {"scheduleId": structured(paused)["scheduleId"]})
        lines = texts(await client.call_tool("list-schedules", {})).splitlines()
    mine = next(line for line in lines if line.startswith(sid))
    assert "None" not in "\n".join(lines), lines
    assert f"next firing at {structured(made)['nextFireAt']}; last outcome: none yet" in mine, mine
    paused_line = next(line for line in lines if line.startswith(structured(paused)["scheduleId"]))
    assert "fires nothing until resumed" in paused_line and "next firing" not in paused_line, paused_line


BAD: list[tuple[dict[str, Any], str]] = [
    ({"cron": "61 * * * *"}, "not valid"),
    ({"cron": "*/5 * * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ({"cron": "*/5 * * * *", "everySeconds": 5}, "exactly one of cron and everySeconds"),
    ({"everySeconds": 0.5}, "greater than or equal to 1"),
    ({"everySeconds": 5, "tool": "nope"}, "no job tool named 'nope'"),
    ({"everySeconds": 5, "arguments": {"text": 5}}, "text"),
    ({"everySeconds": 5, "arguments": {"text": "x", "colour": "red"}}, "colour"),
    # past what a job may keep: refused now, not skipped at every firing (VIBE_JOBS_MAX_PARAMS_BYTES: 20000)
    ({"everySeconds": 5, "arguments": {"text": "x" * 30_000}}, "the limit is 20000 bytes"),
    # numbers no clock or store can hold: refused by name (they were an OverflowError)
    ({"everySeconds": 1e308}, "everySeconds: Input should be less than or equal to"),
    ({"everySeconds": 5, "startAt": 2**63}, "startAt: Input should be less than or equal to"),
    ({"everySeconds": 5, "endAt": 2**63}, "endAt: Input should be less than or equal to"),
    ({"cron": "0 0 * * *", "startAt": 253_402_300_799_000}, "never fire"),  # its next midnight is in year 10000
    # the same in a zone ahead of UTC, where startAt is already in year 10000 (it was "Error executing tool")
    ({"cron": "* * * * *", "startAt": 253_402_300_798_999, "timezone": "Pacific/Kiritimati"}, "never fire"),
    # zone names that are directories or too long for a file name (they were "Error executing tool")
    *(({"cron": "* * * * *", "timezone": name}, "unknown timezone") for name in ("Etc", "America", "x" * 64)),
    # a long expression stalled the whole server (croniter parses it at every evaluation: 100 KB, 0.5 s each)
    ({"cron": ",".join(["0-59"] * 20_000) + " * * * * *"}, "cron: String should have at most 200 characters"),
    ({"cron": "* * * * *", "timezone": "x" * 1_000_000}, "timezone: String should have at most 64 characters"),
    ({"everySeconds": 5, "tool": "x" * 1_000_000}, "tool: String should have at most 256 characters"),
    # croniter's R draws anew at each parse: accepted, it never fired
    *(({"cron": cron}, "R (a random value) is not supported") for cron in ("R * * * * *", "0 r(0-23) * * *")),
]


async def test_bad_schedules_get_a_clear_error_and_create_nothing(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        for fields, needle in BAD:
            result = await client.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "x"}, **fields})
            assert result.is_error and needle in texts(result), (fields, texts(result)[:500])
            assert len(texts(result)) < 1000, "a refusal names the problem, it does not echo a long input"
        assert structured(await client.call_tool("list-schedules", {}))["schedules"] == []
        unknown = await client.call_tool("pause-schedule", {"scheduleId": "nope"})
        assert unknown.is_error and "No schedule with id 'nope'" in texts(unknown)


async def test_pause_and_resume_over_mcp(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        made = structured(await client.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "p"},
                                                                  "cron": "0 0 1 1 *"}))  # fmt: skip
        # a schedule's fields (issue 18) are there before its first firing too, as job-stats shows them: null
        listed = structured(await client.call_tool("list-schedules", {}))["schedules"]
        assert made["lastFiredAt"] is None and listed[0]["lastFiredAt"] is None, (made, listed)
        assert listed[0]["nextFireAt"] == made["nextFireAt"] > now_ms()
        paused = structured(await client.call_tool("pause-schedule", {"scheduleId": made["scheduleId"]}))
        assert paused["paused"] is True
        resumed = structured(await client.call_tool("resume-schedule", {"scheduleId": made["scheduleId"]}))
        assert resumed["paused"] is False and resumed["nextFireAt"] == made["nextFireAt"]


async def test_run_at_defers_a_job(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        run_at = now_ms() + 1500
        result = await client.call_tool("submit-job", {"tool": "echo", "arguments": {"text": "later"}, "runAt": run_at})
        assert not result.is_error, texts(result)
        job_id = structured(result)["jobId"]
        _, early = await read(client, job_id)
        assert early["status"] == "pending"
        _, final = await read(client, job_id, waitSeconds=10)
        assert final["status"] == "completed"
        job = next(j for j in structured(await client.call_tool("list-jobs", {}))["jobs"] if j["id"] == job_id)
        assert job["startedAt"] >= run_at


async def test_deadline_cancels_a_job_still_running_and_fails_one_never_started(mode: str) -> None:
    async with stdio_client_for(mode) as client:
        deadline = now_ms() + 1000
        running = await client.call_tool("submit-job", {"tool": "wait_forever", "deadline": deadline})
        running_id = structured(running)["jobId"]
        blocked = await client.call_tool("submit-job", {"tool": "noop", "dependsOn": [running_id],
                                                        "deadline": deadline - 200})  # fmt: skip
        blocked_id = structured(blocked)["jobId"]
        _, never = await read(client, blocked_id, waitSeconds=10)
        assert never["status"] == "failed" and "deadline passed" in never["message"]
        _, stopped = await read(client, running_id, waitSeconds=10)
        assert stopped["status"] == "cancelled" and "deadline passed" in stopped["message"]
        refused = await client.call_tool("submit-job", {"tool": "noop", "runAt": deadline + 10, "deadline": deadline})
        assert refused.is_error and "could never start" in texts(refused)


async def test_a_deferred_job_says_when_it_runs_and_is_not_read_before(mode: str) -> None:
    """It answered "Job started" and recommended reads after 1, 2, 4 ... s for the whole hour before runAt."""
    async with stdio_client_for(mode) as client:
        run_at = now_ms() + 3_600_000
        answer = await client.call_tool("submit-job", {"tool": "noop", "runAt": run_at})
        started = structured(answer)
        _, first = await read(client, started["jobId"])
    assert started["message"].startswith(f"Job deferred to runAt {run_at}")
    assert started["pollingRecommendation"]["nextCheckTime"] == run_at
    assert f"is deferred: it does not run before runAt {run_at}" in texts(answer)
    assert first["status"] == "pending" and first["pollingRecommendation"]["nextCheckTime"] == run_at
    assert first.get("runAt") == run_at, first  # get-job-result shows runAt, as list-jobs does


async def test_a_run_at_within_a_second_is_deferred_too(mode: str) -> None:
    """A runAt 400 ms ahead answered "Job started" (deferred only when the first read fell on runAt itself)."""
    async with stdio_client_for(mode) as client:
        run_at = now_ms() + 400
        answer = await client.call_tool("submit-job", {"tool": "noop", "runAt": run_at})
        started = structured(answer)
        _, final = await read(client, started["jobId"], waitSeconds=10)
        job = next(
            j for j in structured(await client.call_tool("list-jobs", {}))["jobs"] if j["id"] == started["jobId"]
        )
    assert started["message"].startswith(f"Job deferred to runAt {run_at}"), started
    assert f"is deferred: it does not run before runAt {run_at}" in texts(answer), texts(answer)
    assert started["pollingRecommendation"]["nextCheckTime"] >= run_at  # never read before it may run
    assert final["status"] == "completed" and job["startedAt"] >= run_at


async def test_ticks_refused_by_a_full_queue_are_counted_as_skipped(mode: str) -> None:
    """They were lost with no sign but a warning in the log: `skipped` 0, no job, health healthy."""
    async with stdio_client_for(mode, {"VIBE_JOBS_MAX_PENDING": "2"}) as client:
        for _ in range(2):  # the queue is full: two jobs deferred for an hour
            await client.call_tool("submit-job", {"tool": "noop", "runAt": now_ms() + 3_600_000})
        made = structured(await client.call_tool("schedule-job", {"tool": "noop", "everySeconds": 1}))
        with anyio.fail_after(20):
            while True:  # the ticker fires on the wall clock: read until a tick came due and was refused
                (sch,) = structured(await client.call_tool("list-schedules", {}))["schedules"]
                if sch["skipped"] >= 1:
                    break
                await anyio.sleep(0.2)  # the tick comes due on the wall clock: no event to wait on from outside
    assert sch.get("lastJobId") is None and sch["nextFireAt"] > made["nextFireAt"]


async def test_ticks_past_the_principal_s_pending_quota_are_counted_as_skipped(mode: str) -> None:
    """A schedule's firings went past the principal's job quotas (only calls were checked): one principal could
    hold every run slot and fill the queue through a schedule. Review helper-55."""
    async with stdio_client_for(mode, {"VIBE_JOBS_QUOTA_PENDING": "2"}) as client:
        for _ in range(2):  # at the quota: two jobs deferred for an hour
            await client.call_tool("submit-job", {"tool": "noop", "runAt": now_ms() + 3_600_000})
        made = structured(await client.call_tool("schedule-job", {"tool": "noop", "everySeconds": 1}))
        with anyio.fail_after(20):
            while True:  # the ticker fires on the wall clock: read until a tick came due and was refused
                (sch,) = structured(await client.call_tool("list-schedules", {}))["schedules"]
                if sch["skipped"] >= 1 or sch.get("lastJobId") is not None:
                    break
                await anyio.sleep(0.2)  # the tick comes due on the wall clock: no event to wait on from outside
        jobs = structured(await client.call_tool("list-jobs", {}))["jobs"]
    assert sch.get("lastJobId") is None and sch["skipped"] >= 1, sch
    assert len(jobs) == 2 and made["nextFireAt"] < sch["nextFireAt"]


async def test_a_deadline_already_past_is_refused_and_creates_no_job(mode: str) -> None:
    """It was accepted, and the job failed at once ("deadline passed before it started"), counting as an error."""
    async with stdio_client_for(mode) as client:
        refused = await client.call_tool("submit-job", {"tool": "noop", "deadline": now_ms() - 60_000})
        late_run = await client.call_tool(
            "submit-job", {"tool": "noop", "runAt": now_ms() - 120_000, "deadline": now_ms() - 60_000}
        )
        jobs = structured(await client.call_tool("list-jobs", {}))["jobs"]
    assert refused.is_error and "has passed" in texts(refused) and "could never start" in texts(refused)
    assert late_run.is_error and "has passed" in texts(late_run)
    assert jobs == []


async def test_a_schedules_secret_arguments_are_never_shown(mode: str) -> None:
    """What schedule-job, list-schedules and job-stats answer hides secret-named arguments and env values, as
    list-jobs does; the jobs it fires still get them."""
    secret = "s3cr3t-" + "x" * 20
    arguments = {"user": "al", "api_token": secret, "env": {"DB_PASS": secret}}
    async with stdio_client_for(mode) as client:
        made = await client.call_tool("schedule-job", {"tool": "login", "arguments": arguments, "everySeconds": 1})
        assert not made.is_error, texts(made)
        answers = [made, await client.call_tool("list-schedules", {}), await client.call_tool("job-stats", {})]
        for answer in answers:
            assert secret not in texts(answer) and secret not in str(answer.structured_content), answer
        shown = structured(await client.call_tool("list-schedules", {}))["schedules"][0]["arguments"]
        assert shown == {"user": "al", "api_token": "***", "env": {"DB_PASS": "***"}}
        jobs: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            while not jobs:
                listed = structured(await client.call_tool("list-jobs", {"toolName": "login"}))["jobs"]
                jobs = [j for j in listed if j.get("scheduleId") == structured(made)["scheduleId"]]
        _, final = await read(client, jobs[0]["id"], waitSeconds=10)
        assert final["result"]["structuredContent"]["apiToken"] == secret  # the tool itself gets it
