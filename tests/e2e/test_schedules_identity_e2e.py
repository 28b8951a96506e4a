"""Schedules over authenticated HTTP (both eras): a schedule is its creator's. Another principal does not
see it (list-schedules, job-stats) and pausing or deleting it answers as an unknown id; the jobs it fires
are the creator's (listed for alice, not for bob)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import MODES
from tests.e2e.test_identity_e2e import ALICE, BOB, client_as, serve
from tests.e2e.test_jobs_e2e import structured, texts

pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("mode", MODES)]


async def test_a_schedule_and_its_jobs_are_its_creators(tmp_path: Path, mode: str) -> None:
    with serve(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            made = await alice.call_tool("schedule-job", {"tool": "echo", "arguments": {"text": "a"},
                                                          "everySeconds": 1})  # fmt: skip
            assert not made.is_error, texts(made)
            sid = structured(made)["scheduleId"]
            assert structured(await bob.call_tool("list-schedules", {}))["schedules"] == []
            assert structured(await bob.call_tool("job-stats", {}))["schedules"] == []
            for tool in ("pause-schedule", "resume-schedule", "delete-schedule"):
                refused = await bob.call_tool(tool, {"scheduleId": sid})
                assert refused.is_error and f"No schedule with id '{sid}'" in texts(refused)
            jobs: list[dict[str, Any]] = []
            with anyio.fail_after(10):
                while not jobs:
                    listed = structured(await alice.call_tool("list-jobs", {"toolName": "echo"}))["jobs"]
                    jobs = [j for j in listed if j.get("scheduleId") == sid]
            bobs = structured(await bob.call_tool("list-jobs", {"toolName": "echo"}))["jobs"]
            assert [j for j in bobs if j.get("scheduleId") == sid] == []
            assert not (await alice.call_tool("delete-schedule", {"scheduleId": sid})).is_error


async def test_a_principal_keeps_at_most_its_quota_of_schedules(tmp_path: Path, mode: str) -> None:
    """Every schedule is read by every ticker pass for as long as it exists: one principal may not make the
    ticker's work (and the others' firings) grow without bound. The quota is per principal."""
    every = {"tool": "echo", "arguments": {"text": "a"}, "everySeconds": 3600}
    with serve(tmp_path, VIBE_JOBS_QUOTA_SCHEDULES="2") as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            kept = [structured(await alice.call_tool("schedule-job", every))["scheduleId"] for _ in range(2)]
            refused = await alice.call_tool("schedule-job", every)
            assert refused.is_error and structured(refused)["error"]["code"] == "quota_exceeded"
            assert "has 2 schedules, the limit is 2 (VIBE_JOBS_QUOTA_SCHEDULES)" in texts(refused), texts(refused)
            assert "no schedule was created" in texts(refused)
            listed = structured(await alice.call_tool("list-schedules", {}))["schedules"]
            assert sorted(s["scheduleId"] for s in listed) == sorted(kept)
            assert not (await bob.call_tool("schedule-job", every)).is_error  # bob's own quota
            assert not (await alice.call_tool("delete-schedule", {"scheduleId": kept[0]})).is_error
            assert not (await alice.call_tool("schedule-job", every)).is_error  # room again


async def test_schedules_with_large_arguments_leave_list_schedules_and_job_stats_readable_over_http(
    tmp_path: Path, mode: str
) -> None:
    """Two schedules each keeping 900 KB of arguments (within max_params_bytes) made list-schedules and
    job-stats answers of 1.8 MB, past what the MCP client reads from one server-sent event: neither could be
    read again. Over HTTP the large arguments are now shown as a marker; small ones stay whole."""
    big = {"tool": "echo", "arguments": {"text": "x" * 900_000}, "everySeconds": 3600}
    small = {"tool": "echo", "arguments": {"text": "small"}, "everySeconds": 3600}
    with serve(tmp_path, VIBE_JOBS_MAX_PARAMS_BYTES="1048576") as server:
        async with client_as(server, ALICE, mode) as alice:
            for spec in (big, big, small):
                made = await alice.call_tool("schedule-job", spec)
                assert not made.is_error, texts(made)[:300]
            for tool in ("list-schedules", "job-stats"):
                with anyio.fail_after(30):
                    answer = await alice.call_tool(tool, {})
                assert not answer.is_error, texts(answer)[:300]
                shown = sorted((s["arguments"] for s in structured(answer)["schedules"]), key=len)
                assert shown[0]["text"] == "small"  # whole (with the tool's defaults)
                marker = {"truncated": True, "originalBytes": 900_021, "maxAnswerBytes": 1_048_576}
                assert shown[1:] == [marker, marker], tool


async def test_many_schedules_are_shown_within_one_answer_over_http_and_the_rest_counted(
    tmp_path: Path, mode: str
) -> None:
    """The whole answer is budgeted, not only the arguments: long crons, many schedules (an admin sees every
    principal's) made list-schedules and job-stats pass 1 MiB. Here at the smallest limit (65,536 bytes),
    180 schedules with 177-character crons: each answer stays within it and counts the schedules left out."""
    limit = 65_536
    cron = ",".join(str(m) for m in range(60)) + " * * * *"
    spec = {"tool": "echo", "arguments": {"text": "a"}, "cron": cron, "timezone": "America/Argentina/ComodRivadavia"}
    with serve(tmp_path, VIBE_JOBS_MAX_ANSWER_BYTES=str(limit)) as server:
        async with client_as(server, ALICE, mode) as alice:
            for _ in range(180):
                made = await alice.call_tool("schedule-job", spec)
                assert not made.is_error, texts(made)[:300]
            for tool, omitted_key in (("list-schedules", "omitted"), ("job-stats", "schedulesOmitted")):
                answer = await alice.call_tool(tool, {})
                body = structured(answer)
                size = len(json.dumps(body)) + len(json.dumps(texts(answer)))
                assert size <= limit, (tool, size)
                assert body[omitted_key] > 0 and len(body["schedules"]) + body[omitted_key] == 180, tool
                assert f"{body[omitted_key]} more schedules not shown" in texts(answer)
