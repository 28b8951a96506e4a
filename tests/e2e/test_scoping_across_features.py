"""Identity across the features that arrived beside it (issue 15 with 17, 18 and 19), against the real
`vibe-jobs serve` over streamable HTTP with a token file (alice, bob, and root with scope `admin`):

- the dashboard shows and changes every principal's jobs, so with authentication on only an admin token opens it;
- `answer-job` on another principal's question answers exactly as an unknown id, and the question stays open;
- schedules are their creator's: another principal neither lists, pauses, resumes nor deletes them, and the
  jobs a schedule fires belong to its creator.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from mcp_types import ElicitResult, InputResponse

from tests.e2e.conftest import MODES
from tests.e2e.test_identity_e2e import (
    ALICE,
    BOB,
    ROOT,
    UNKNOWN_ID,
    anonymised,
    answer,
    call,
    client_as,
    listed,
    serve,
)
from tests.e2e.test_jobs_e2e import start, structured

pytestmark = pytest.mark.timeout(120)


def dashboard_status(port: int, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10).status_code


async def test_with_auth_on_only_an_admin_token_opens_the_dashboard(tmp_path: Any) -> None:
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice:
            job_id = await start(alice, "echo", {"text": "hi"})
        for path in ("/", f"/jobs/{job_id}", "/events"):
            assert dashboard_status(server.port, path, None) == 401, path
            assert dashboard_status(server.port, path, ALICE) == 403, path  # valid, without scope admin
            assert dashboard_status(server.port, path, "not-a-token") == 401, path
        assert dashboard_status(server.port, "/", ROOT) == 200
        assert dashboard_status(server.port, f"/jobs/{job_id}", ROOT) == 200


async def until_waiting(client: Any, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            msg = structured(await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 0.5}))
            if "waitingFor" in msg:
                return msg


@pytest.mark.parametrize("mode", MODES)
async def test_answer_job_on_another_principals_question_answers_as_an_unknown_id(tmp_path: Any, mode: str) -> None:
    with serve(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            job_id = await start(alice, "confirm", {"question": "Delete 312 files?"})
            await until_waiting(alice, job_id)
            theirs = await call(bob, "answer-job", {"jobId": job_id, "answer": {"confirm": True}})
            unknown = await call(bob, "answer-job", {"jobId": UNKNOWN_ID, "answer": {"confirm": True}})
            assert theirs["isError"] and anonymised(theirs, job_id) == anonymised(unknown, UNKNOWN_ID)
            assert "waitingFor" in await until_waiting(alice, job_id)  # still alice's open question
            assert not (await call(alice, "answer-job", {"jobId": job_id, "answer": {"confirm": True}}))["isError"]


async def test_input_responses_on_another_principals_job_answer_as_an_unknown_id(tmp_path: Any) -> None:
    """A 2026-07-28 get-job-result carries answers (`inputResponses`): they were taken before the caller was
    checked, so bob, knowing alice's job and question ids, answered her question (and a mistyped answer told
    him her job exists)."""
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB, "auto") as bob:
            job_id = await start(alice, "confirm", {"question": "Delete 312 files?"})
            asked = (await until_waiting(alice, job_id))["waitingFor"]["requestId"]
            for content in ({"confirm": "yes-please"}, {"confirm": True}):  # mistyped, then right
                answers: dict[str, InputResponse] = {asked: ElicitResult(action="accept", content=content)}
                theirs = await bob.call_tool("get-job-result", {"jobId": job_id}, input_responses=answers)
                unknown = await bob.call_tool("get-job-result", {"jobId": UNKNOWN_ID}, input_responses=answers)
                assert theirs.is_error, theirs
                assert anonymised(answer(theirs), job_id) == anonymised(answer(unknown), UNKNOWN_ID)
            assert (await until_waiting(alice, job_id))["waitingFor"]["requestId"] == asked  # still her question
            assert not (await call(alice, "answer-job", {"jobId": job_id, "answer": {"confirm": True}}))["isError"]


async def schedules_of(client: Any) -> set[str]:
    body = structured(await client.call_tool("list-schedules", {}))
    return {s["scheduleId"] for s in body["schedules"]}


async def test_schedules_are_their_creators(tmp_path: Any) -> None:
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob, client_as(server, ROOT) as root:
            made = structured(
                await alice.call_tool(
                    "schedule-job", {"tool": "echo", "arguments": {"text": "tick"}, "everySeconds": 1}
                )
            )
            schedule_id = made["scheduleId"]
            assert schedule_id in await schedules_of(alice)
            assert schedule_id not in await schedules_of(bob)
            assert schedule_id in await schedules_of(root)
            for tool in ("pause-schedule", "resume-schedule", "delete-schedule"):
                theirs = await call(bob, tool, {"scheduleId": schedule_id})
                unknown = await call(bob, tool, {"scheduleId": "no-such-schedule"})
                assert theirs["isError"], (tool, theirs)
                assert anonymised(theirs, schedule_id) == anonymised(unknown, "no-such-schedule"), tool
            with anyio.fail_after(10):
                while True:
                    if fired := await listed(alice):
                        break
                    await anyio.sleep(0.2)
            assert not (fired & await listed(bob))  # a fired job is alice's: bob does not see it
            assert not (await call(alice, "delete-schedule", {"scheduleId": schedule_id}))["isError"]
