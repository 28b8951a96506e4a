"""Schedules at their limits, against the real `vibe-jobs serve` over streamable HTTP with the real MCP client."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import MODES, http_client_for, start_http
from tests.e2e.test_jobs_e2e import texts

pytestmark = pytest.mark.timeout(120)
MIB = 1 << 20


def body(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text[:300]
    structured: dict[str, Any] = result.structured_content
    return structured


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    with anyio.fail_after(30):
        return body(await client.call_tool(tool, args))


@pytest.mark.parametrize("mode", MODES)
async def test_a_schedule_with_arguments_at_the_params_limit_is_answered_readably_when_made_paused_and_resumed(
    mode: str,
) -> None:
    """schedule-job, pause-schedule and resume-schedule answer with the schedule, its arguments whole: arguments
    within VIBE_JOBS_MAX_PARAMS_BYTES (1 MiB) made an answer past the 1 MiB the MCP client reads from one
    server-sent event, so the caller was told the call failed ("Server-sent event exceeded the 1048576 byte
    limit") while the schedule was made (it fires for ever; a retry makes a second one), paused or resumed. Over
    HTTP large arguments are now shown as list-schedules shows them (a marker); the schedule is whole in the
    store and fires with them."""
    spec = {"tool": "echo", "arguments": {"text": "x" * 1_048_500}, "cron": "0 0 1 1 *"}
    marker = {"truncated": True, "originalBytes": 1_048_521, "maxAnswerBytes": MIB}
    with start_http("streamable-http", {"VIBE_JOBS_MAX_PARAMS_BYTES": str(MIB)}) as server:
        async with http_client_for(server, mode) as client:
            made = await call(client, "schedule-job", spec)
            assert made["arguments"] == marker
            schedule_id = made["scheduleId"]
            assert (await call(client, "pause-schedule", {"scheduleId": schedule_id}))["paused"] is True
            assert (await call(client, "resume-schedule", {"scheduleId": schedule_id}))["paused"] is False
            listed = (await call(client, "list-schedules", {}))["schedules"]
            assert [s["scheduleId"] for s in listed] == [schedule_id]


async def refused_and_nothing_stored(client: Client, fields: dict[str, Any], needle: str) -> None:
    spec = {"tool": "echo", "arguments": {"text": "x"}, **fields}
    with anyio.fail_after(30):
        result = await client.call_tool("schedule-job", spec)
    text = texts(result)
    assert result.is_error and needle in text, (fields, text[:500])
    assert (await call(client, "list-schedules", {}))["schedules"] == [], fields


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("field", ["everySeconds", "startAt", "endAt", "maxCatchUp"])
async def test_true_is_no_period_time_or_count_of_a_schedule(mode: str, field: str) -> None:
    """JSON `true` is no number, but it was taken as 1: `everySeconds: true` made a schedule firing every second (the
    fastest there is), `startAt: true` one anchored at 1 ms past 1970, `maxCatchUp: true` a catch-up of one tick.
    Each is now refused by name and nothing is stored."""
    fields: dict[str, Any] = {"everySeconds": 3600, field: True}
    with start_http("streamable-http") as server:
        async with http_client_for(server, mode) as client:
            await refused_and_nothing_stored(client, fields, f"{field}: ")


@pytest.mark.parametrize("mode", MODES)
async def test_a_zone_name_each_machine_reads_its_own_way_is_refused(mode: str) -> None:
    """`localtime` is a link to the machine's own zone (/etc/localtime), `posixrules` a file some builds of the zone
    database have (a link to America/New_York) and others (the tzdata package) lack, `posix/...` and `right/...`
    directories of a system's copy: they were taken, so one schedule fired at one instant on a server in Berlin and
    at another on one in UTC (two jobs a day), or never on a worker without that file. An IANA name is taken."""
    with start_http("streamable-http") as server:
        async with http_client_for(server, mode) as client:
            for name in ("localtime", "posixrules", "posix/Europe/Berlin", "right/UTC"):
                await refused_and_nothing_stored(client, {"cron": "0 2 * * *", "timezone": name}, repr(name))
            made = await call(client, "schedule-job", {"tool": "echo", "arguments": {"text": "x"},
                                                       "cron": "0 2 * * *", "timezone": "EST5EDT"})  # fmt: skip
            assert made["timezone"] == "EST5EDT"
