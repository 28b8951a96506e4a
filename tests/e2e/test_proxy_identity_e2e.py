"""The proxy over authenticated HTTP with two principals: nothing an upstream sends during one caller's call
reaches another caller's job. Nothing on the wire ties an upstream's log line or elicitation to one of the
proxy's calls, so the proxy gives one to a job only when that job's call is the only one in flight there
(a direct call or a passthrough request counts too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import ListRootsResult, Root

from tests.e2e.conftest import BASE_ENV, MODES, ROOT, SERVER, HttpServer, free_port, stop, wait_for_port
from tests.e2e.proxy_fixtures import started, status, texts, until
from tests.e2e.test_identity_e2e import ALICE, BOB, client_as, token_file

pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("mode", MODES)]
UPSTREAM = [sys.executable, str(ROOT / "tests" / "e2e" / "talkback_upstream.py")]


@contextmanager
def proxy(directory: Path, upstream: list[str] | None = None, auth: bool = True, **env: str) -> Iterator[HttpServer]:
    port = free_port()
    direct = [] if upstream else ["--direct", "ask,release"]
    tokens = ["--auth-tokens", str(token_file(directory))] if auth else []
    cmd = [sys.executable, "-m", "vibe_jobs", "proxy", "--store", "memory://", "--transport", "streamable-http",
           "--port", str(port), *tokens, *direct, "--", *(upstream or UPSTREAM)]  # fmt: skip
    with (directory / "proxy.log").open("wb") as errlog:
        environment = {**os.environ, **BASE_ENV, **env}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            wait_for_port(port, proc, 30)
            yield HttpServer("streamable-http", port, proc, errlog)
        finally:
            stop(proc)


def diagnostics(msg: dict[str, Any]) -> list[str]:
    return list((msg.get("details") or {}).get("diagnostics") or [])


async def holding(client: Client, tool: str = "hold") -> str:
    """The job (of `tool`) of `client` that waits upstream until `release`, once its call is in flight there."""
    job_id = started(await client.call_tool(tool, {}))
    with anyio.fail_after(30):
        while True:
            if "holding" in json.dumps(await status(client, job_id)):  # its progress
                return job_id
            await anyio.sleep(0.05)  # polling a condition under a deadline: the call reaching the upstream


async def test_an_upstream_log_line_of_one_principals_call_is_never_another_principals_diagnostic(
    tmp_path: Path, mode: str
) -> None:
    with proxy(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            held = await holding(alice)
            noisy = started(await bob.call_tool("noisy", {"secret": "BOB-SECRET-123"}))
            await until(bob, noisy, ("completed",))
            assert not (await alice.call_tool("release", {})).is_error
            msg = await until(alice, held, ("completed",))
    assert not [d for d in diagnostics(msg) if "BOB-SECRET" in d], diagnostics(msg)


async def test_an_upstream_log_line_written_after_one_principals_call_ended_is_not_the_next_callers_diagnostic(
    tmp_path: Path, mode: str
) -> None:
    """A line the upstream logs after Alice's call ended (a background task of its own) came while Bob's call was
    the only one in flight there: it became Bob's job's diagnostic, Alice's secret in it. A line that comes during
    Alice's call, with no call of anyone else's ended just before, is still her job's. (The window is made long
    enough for a loaded machine to start Bob's call within it.)"""
    with proxy(tmp_path, VIBE_JOBS_PROXY_LATE_LINE_SECONDS="60") as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            noisy = started(await alice.call_tool("noisy", {"secret": "ALICE-LINE"}))
            mine = await until(alice, noisy, ("completed",))
            lingered = started(await alice.call_tool("linger", {"secret": "ALICE-SECRET-456"}))
            await until(alice, lingered, ("completed",))
            held = await holding(bob)  # the upstream writes Alice's line before its answer to Bob's call
            assert not (await bob.call_tool("release", {})).is_error
            msg = await until(bob, held, ("completed",))
    assert [d for d in diagnostics(mine) if "processing ALICE-LINE" in d], diagnostics(mine)
    assert not [d for d in diagnostics(msg) if "ALICE-SECRET" in d], diagnostics(msg)


async def test_without_authentication_a_job_started_right_after_another_call_keeps_its_log_lines(
    tmp_path: Path, mode: str
) -> None:
    """Without authentication every caller is the operator: a late line cannot cross to another principal, and
    holding lines back after each call (as with tokens) only lost the first lines of the operator's next job."""
    with proxy(tmp_path, auth=False, VIBE_JOBS_PROXY_LATE_LINE_SECONDS="60") as server:
        async with Client(server.url, mode=mode, read_timeout_seconds=60) as client:
            first = started(await client.call_tool("noisy", {"secret": "FIRST"}))
            await until(client, first, ("completed",))
            second = started(await client.call_tool("noisy", {"secret": "SECOND"}))
            msg = await until(client, second, ("completed",))
    assert [d for d in diagnostics(msg) if "processing SECOND" in d], diagnostics(msg)


async def test_an_elicitation_during_another_principals_direct_call_is_not_asked_of_a_running_job(
    tmp_path: Path, mode: str
) -> None:
    """Alice's job was the only job on the upstream when Bob's direct call elicited: Bob's question (naming his
    account) became Alice's job's question, and Alice's answer went to Bob's call."""
    with proxy(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            held = await holding(alice)
            with anyio.fail_after(30):
                asked = await bob.call_tool("ask", {"topic": "BOB-BANK-ACCOUNT"})
            assert not asked.is_error and "got decline" in str(asked.content), asked.content
            assert (await status(alice, held)).get("waitingFor") is None
            assert not (await alice.call_tool("release", {})).is_error
            msg = await until(alice, held, ("completed",))
    assert [d for d in diagnostics(msg) if "declined: a call that is not a job is in flight" in d], diagnostics(msg)


async def test_a_question_too_large_for_an_answer_is_declined_and_the_job_stays_readable(
    tmp_path: Path, mode: str
) -> None:
    """An upstream's elicitation of 5 MB was stored as the job's question: every read of the job over HTTP passed
    the client's 1 MiB event limit and ended the client's session."""
    with proxy(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice:
            job_id = started(await alice.call_tool("bigask", {"size": 5_000_000}))
            msg = await until(alice, job_id, ("completed", "failed"))
            assert "got decline" in str(msg["result"]), msg["result"]
            assert any("the question is" in d and "bytes" in d for d in diagnostics(msg)), diagnostics(msg)
            assert not (await alice.call_tool("list-jobs", {})).is_error  # the session lives on


async def test_an_upstream_question_whose_default_its_field_refuses_is_asked_without_it(
    tmp_path: Path, mode: str
) -> None:
    """A job's own question with a default its field refuses fails its ask, naming the fault; an upstream's was
    declined back to it whole (the person never asked), though only the suggestion was wrong: asked without it."""
    with proxy(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice:
            job_id = started(await alice.call_tool("askdefault", {}))
            with anyio.fail_after(30):
                while "waitingFor" not in (msg := await status(alice, job_id)):
                    assert msg["status"] in ("pending", "running"), msg
                    await anyio.sleep(0.05)  # polling a condition under a deadline: the upstream asking
            assert "default" not in msg["waitingFor"]["requestedSchema"]["properties"]["code"], msg["waitingFor"]
            assert not (await alice.call_tool("answer-job", {"jobId": job_id, "answer": {"code": "1234"}})).is_error
            msg = await until(alice, job_id, ("completed", "failed"))
    assert "got accept code='1234'" in str(msg["result"]), msg


async def test_one_principals_roots_never_reach_the_upstream_another_principals_job_runs_on(
    tmp_path: Path, mode: str
) -> None:
    """The upstream's roots/list was asked of whichever client had spoken last, of any principal: Bob's roots (his
    paths, and for a filesystem server the directories it may touch) became the roots of the upstream Alice's job
    ran on. With several principals no client's roots are the shared upstream's."""

    async def bobs_roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///home/bob/BOB-SECRET-PROJECT", name="bob")])

    with proxy(tmp_path) as server:
        async with (
            client_as(server, ALICE, mode) as alice,
            client_as(server, BOB, mode, list_roots_callback=bobs_roots) as bob,
        ):
            job_id = await holding(alice, "roots")
            assert not (await bob.call_tool("release", {})).is_error  # bob spoke last
            msg = await until(alice, job_id, ("completed", "failed"))
    assert msg["status"] == "completed", msg
    assert "BOB-SECRET" not in json.dumps(msg["result"]), texts(msg["result"])


async def test_an_upstreams_recent_jobs_never_stand_in_for_the_proxys_own(tmp_path: Path, mode: str) -> None:
    """An upstream that lists `jobs://recent` too (another vibe-jobs server) took the URI over once a client had
    listed resources: every principal's read of `jobs://recent` was the upstream's list, where the jobs of every
    principal's calls stand (the proxy calls the upstream as one client), Alice's arguments among them."""
    with proxy(tmp_path, SERVER) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            job_id = started(await alice.call_tool("echo", {"text": "ALICE-SECRET"}))
            await until(alice, job_id, ("completed",))
            mine = started(await bob.call_tool("noop", {}))
            await bob.list_resources()  # the proxy lists the upstream's resources beside its own
            read = await bob.read_resource("jobs://recent")
    recent = json.loads(getattr(read.contents[0], "text", ""))
    assert [j["id"] for j in recent["jobs"]] == [mine], recent
    assert "ALICE-SECRET" not in json.dumps(recent)
