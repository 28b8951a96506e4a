"""`vibe-jobs proxy` options and paths beyond the basic job: several upstreams (prefixed tool names, a Claude
Desktop config file), `--direct`, time-outs, elicitation and sampling during a job passed to the client, roots
asked of the client."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

from tests.e2e.conftest import BASE_ENV, MODES, ROOT
from tests.e2e.proxy_fixtures import (
    FAKE,
    proxy_args,
    proxy_client,
    started,
    status,
    temp_tap,
    texts,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def config_args(path: Path) -> list[str]:
    return ["-m", "vibe_jobs", "proxy", "--store", "memory://", "--config", str(path)]


@pytest.mark.parametrize("kind", ["json", "toml"])
async def test_several_upstreams_from_a_claude_desktop_config_get_prefixed_tools(
    kind: str, everything: list[str], time_server: list[str], tmp_path: Path
) -> None:
    servers = {"ev": {"command": everything[0], "args": everything[1:]}, "clock": {"command": time_server[0]}}
    path = tmp_path / f"servers.{kind}"
    if kind == "json":
        path.write_text(json.dumps({"mcpServers": servers}))
    else:
        path.write_text(
            f'[mcpServers.ev]\ncommand = "{everything[0]}"\nargs = {json.dumps(everything[1:])}\n'
            f'[mcpServers.clock]\ncommand = "{time_server[0]}"\n'
        )
    async with proxy_client("legacy", config_args(path)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        echo = started(await client.call_tool("ev.echo", {"message": "prefixed"}))
        clock = started(await client.call_tool("clock.get_current_time", {"timezone": "UTC"}))
        echoed, timed = await until(client, echo, ("completed", "failed")), await until(client, clock, ("completed",))
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        prompt = await client.get_prompt("ev.simple-prompt")
    assert {"ev.echo", "ev.trigger-long-running-operation", "clock.get_current_time", "clock.convert_time"} <= names
    assert texts(echoed["result"]) == ["Echo: prefixed"]
    assert '"timezone": "UTC"' in texts(timed["result"])[0]
    assert "ev.simple-prompt" in prompts
    assert prompt.messages


@pytest.mark.parametrize("mode", MODES)
async def test_direct_tools_answer_at_once_and_the_others_stay_jobs(mode: str, everything: list[str]) -> None:
    async with proxy_client(mode, proxy_args(everything, None, "--direct", "echo,get-sum")) as client:
        echo = await client.call_tool("echo", {"message": "now"})
        refused = await client.call_tool("get-sum", {"a": 1})
        job = await client.call_tool("get-tiny-image", {})
    assert texts(echo) == ["Echo: now"] and not echo.is_error
    assert refused.is_error and "'b' is a required property" in texts(refused)[0]
    started(job)


async def test_a_direct_tool_passes_upstream_progress_to_the_request(everything: list[str]) -> None:
    seen: list[tuple[float, float | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    args = proxy_args(everything, None, "--direct", "trigger-long-running-operation")
    async with proxy_client("legacy", args) as client:
        result = await client.call_tool(
            "trigger-long-running-operation", {"duration": 2, "steps": 2}, progress_callback=progress
        )
    assert texts(result) == ["Long running operation completed. Duration: 2 seconds, Steps: 2."]
    assert seen and seen[-1] == (2, 2)


async def test_an_unknown_name_in_direct_stops_the_proxy_with_the_names_it_has(
    everything: list[str], tmp_path: Path
) -> None:
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(
        command=sys.executable, args=proxy_args(everything, None, "--direct", "ecko"), env=env, cwd=str(ROOT)
    )
    log = tmp_path / "proxy.log"
    with log.open("w+") as errlog, pytest.raises(Exception):  # noqa: B017 -- the connection ends: any error
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=20):
            pass
    assert "no upstream tool named ecko" in log.read_text()


async def test_a_time_out_cancels_the_upstream_call(everything: list[str], tmp_path: Path) -> None:
    config = tmp_path / "queue.json"
    config.write_text(json.dumps({"timeoutPolicy": {"defaultTimeoutMs": 1500}}))
    with temp_tap() as tap:
        args = proxy_args(everything, tap)
        async with proxy_client("legacy", args, {"VIBE_JOBS_CONFIG": str(config)}) as client:
            job_id = started(await client.call_tool("trigger-long-running-operation", {"duration": 30, "steps": 30}))
            msg = await until(client, job_id, ("completed", "failed", "cancelled"))
        assert msg["status"] == "failed" and "timed out" in msg["message"]
        call = next(m for m in tap.received() if m.get("method") == "tools/call")
        assert any(_cancels(m, call["id"]) for m in tap.received())


def _cancels(message: dict[str, Any], request_id: Any) -> bool:
    params = message.get("params") or {}
    return message.get("method") == "notifications/cancelled" and params.get("requestId") == request_id


async def until_asked(client: Client, job_id: str) -> dict[str, Any]:
    """Long-poll (a client without callbacks is told at once) until the job waits for an answer."""
    with anyio.fail_after(40):
        while "waitingFor" not in (msg := await status(client, job_id, wait=5)):
            assert msg["status"] in ("pending", "running"), msg
        return msg


async def test_an_upstream_elicitation_during_a_job_is_answered_with_answer_job(everything: list[str]) -> None:
    async with proxy_client("legacy", proxy_args(everything, None)) as client:
        job_id = started(await client.call_tool("trigger-elicitation-request", {}))
        asked = (await until_asked(client, job_id))["waitingFor"]
        answer = {"name": "Ada Lovelace", "check": True, "integer": 7}
        answered = await client.call_tool("answer-job", {"jobId": job_id, "answer": answer})
        msg = await until(client, job_id, ("completed", "failed"))
    assert asked["kind"] == "elicitation" and asked["message"] == "Please provide inputs for the following fields:"
    assert asked["requestedSchema"]["required"] == ["name"] and not answered.is_error, answered.content
    shown = "\n".join(texts(msg["result"]))
    assert msg["status"] == "completed" and "User provided the requested information" in shown
    assert "- Name: Ada Lovelace" in shown and "- Agreed to terms: true" in shown and "- Favorite Integer: 7" in shown


@pytest.mark.parametrize("mode", MODES)
async def test_an_upstream_elicitation_reaches_the_clients_callback_on_the_long_poll(
    mode: str, everything: list[str]
) -> None:
    asked: list[ElicitRequestParams] = []

    async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="cancel")

    async with proxy_client(mode, proxy_args(everything, None), elicitation_callback=on_elicit) as client:
        job_id = started(await client.call_tool("trigger-elicitation-request", {}))
        msg = await until(client, job_id, ("completed", "failed"))
    assert [p.message for p in asked] == ["Please provide inputs for the following fields:"]
    assert msg["status"] == "completed" and any(
        "User cancelled the elicitation dialog" in t for t in texts(msg["result"])
    )


@pytest.mark.parametrize("mode", MODES)
async def test_an_upstream_sampling_request_reaches_the_clients_callback(mode: str, everything: list[str]) -> None:
    asked: list[CreateMessageRequestParams] = []

    async def on_sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        asked.append(params)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="42"), model="test-model")

    async with proxy_client(mode, proxy_args(everything, None), sampling_callback=on_sample) as client:
        job_id = started(await client.call_tool("trigger-sampling-request", {"prompt": "meaning?", "maxTokens": 20}))
        msg = await until(client, job_id, ("completed", "failed"))
    assert len(asked) == 1 and asked[0].system_prompt == "You are a helpful test server." and asked[0].max_tokens == 20
    content = asked[0].messages[0].content
    assert isinstance(content, TextContent) and content.text.endswith("meaning?")
    shown = "\n".join(texts(msg["result"]))
    assert msg["status"] == "completed" and '"text": "42"' in shown and '"model": "test-model"' in shown, shown


async def test_an_upstream_sampling_request_is_answered_with_answer_job(everything: list[str]) -> None:
    async with proxy_client("legacy", proxy_args(everything, None)) as client:
        job_id = started(await client.call_tool("trigger-sampling-request", {"prompt": "meaning?"}))
        asked = (await until_asked(client, job_id))["waitingFor"]
        answer = {"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "by-hand"}
        answered = await client.call_tool("answer-job", {"jobId": job_id, "answer": answer})
        msg = await until(client, job_id, ("completed", "failed"))
    assert asked["kind"] == "sampling" and asked["maxTokens"] == 100 and not answered.is_error, answered.content
    shown = "\n".join(texts(msg["result"]))
    assert msg["status"] == "completed" and '"text": "forty-two"' in shown and '"role": "assistant"' in shown, shown


async def test_an_elicitation_while_two_jobs_call_the_upstream_is_declined_with_a_diagnostic(
    everything: list[str],
) -> None:
    """Nothing ties the upstream's request to one of the proxy's calls: with two in flight, it is declined."""
    async with proxy_client("legacy", proxy_args(everything, None)) as client:
        first = started(await client.call_tool("trigger-elicitation-request", {}))
        await until_asked(client, first)  # alone on the upstream: its request was routed to it
        second = started(await client.call_tool("trigger-elicitation-request", {}))
        msg = await until(client, second, ("completed", "failed"))
        await client.call_tool("answer-job", {"jobId": first, "action": "decline"})
        other = await until(client, first, ("completed", "failed"))
    assert any("User declined" in t for t in texts(msg["result"]))
    diagnostics = "\n".join(msg["details"]["diagnostics"])
    assert "sent an elicitation request during this job; it was declined: 2 jobs are calling" in diagnostics
    assert any("User declined" in t for t in texts(other["result"]))


@pytest.mark.parametrize("mode", MODES)
async def test_the_upstream_asks_the_client_for_its_roots_and_no_sdk_warning_reaches_stderr(
    mode: str, everything: list[str], tmp_path: Path
) -> None:
    """The upstream's roots/list reaches the client (2025-11-25: a 2026-07-28 server cannot ask outside a call,
    the upstream gets none). The proxy relays roots on purpose, for clients of either era; the SDK's deprecated
    roots calls printed their raw `MCPDeprecationWarning` (two lines each, with source) on the proxy's stderr,
    where logs are structlog lines."""

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///work/project", name="project")])

    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(command=sys.executable, args=proxy_args(everything, None), env=env, cwd=str(ROOT))
    log = tmp_path / "proxy.log"
    with log.open("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, list_roots_callback=roots) as client:
            job_id = started(await client.call_tool("get-roots-list", {}))
            msg = await until(client, job_id, ("completed", "failed"))
    assert msg["status"] == "completed", msg
    assert mode != "legacy" or "file:///work/project" in texts(msg["result"])[0], msg
    said = log.read_text()
    assert "Warning" not in said and "deprecated" not in said, said


async def test_upstream_log_messages_become_the_running_jobs_diagnostics(everything: list[str]) -> None:
    async with proxy_client("legacy", proxy_args(everything, None)) as client:
        toggle = started(await client.call_tool("toggle-simulated-logging", {}))
        await until(client, toggle, ("completed",))
        job_id = started(await client.call_tool("trigger-long-running-operation", {"duration": 6, "steps": 3}))
        msg = await until(client, job_id, ("completed", "failed"))
    simulated = [d for d in msg["details"]["diagnostics"] if d.startswith("upstream ") and "level" in d.lower()]
    assert simulated and all("-level message" in d or "level-message" in d for d in simulated), msg["details"]


async def test_an_upstream_tool_added_at_run_time_becomes_a_job_tool_and_the_client_hears_of_it() -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
            changed.set()

    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(command=sys.executable, args=proxy_args(FAKE, None), env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", message_handler=on_message) as client:
            assert "late" not in {t.name for t in (await client.list_tools()).tools}
            grow = started(await client.call_tool("grow", {"name": "late"}))
            await until(client, grow, ("completed",))
            with anyio.fail_after(10):
                await changed.wait()
            assert "late" in {t.name for t in (await client.list_tools()).tools}
            late = started(await client.call_tool("late", {}))
            msg = await until(client, late, ("completed",))
    assert texts(msg["result"]) == ["late here"]


async def test_an_upstream_cannot_take_over_the_proxys_own_tools() -> None:
    """An upstream that lists `get-job-result` or `cancel-job` after start (tools/list_changed) replaced the
    proxy's own: clients could no longer read or cancel a job, and the upstream saw every job id sent."""
    changes = anyio.Semaphore(0)

    async def on_message(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
            changes.release()

    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    params = StdioServerParameters(command=sys.executable, args=proxy_args(FAKE, None), env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", message_handler=on_message) as client:
            for name in ("get-job-result", "cancel-job"):
                grow = started(await client.call_tool("grow", {"name": name}))
                await until(client, grow, ("completed",))
            late = started(await client.call_tool("grow", {"name": "late"}))
            await until(client, late, ("completed",))
            listed = {t.name: t for t in (await client.list_tools()).tools}
            with anyio.fail_after(10):  # the upstream's list changes are followed in order: "late" comes last
                while "late" not in listed:
                    await changes.acquire()
                    listed = {t.name: t for t in (await client.list_tools()).tools}
            assert "added at run time" not in (listed["get-job-result"].description or "")
            read = await client.call_tool("get-job-result", {"jobId": late, "waitSeconds": 0})
            assert not read.is_error and read.structured_content and read.structured_content["jobId"] == late
            cancel = await client.call_tool("cancel-job", {"jobId": late})
            assert "unknown argument" not in " ".join(texts(cancel))
        errlog.seek(0)
        assert "proxy.tool_name_taken" in errlog.read()


def raw_proxy(*upstream_args: str, wrapper: tuple[str, ...] = ()) -> StdioServerParameters:
    """A proxy (stdio, memory store) in front of tests/e2e/raw_upstream.py (run by `wrapper` when given)."""
    raw = [*wrapper, sys.executable, str(ROOT / "tests" / "e2e" / "raw_upstream.py"), *upstream_args]
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    return StdioServerParameters(command=sys.executable, args=proxy_args(raw, None), env=env, cwd=str(ROOT))


async def test_bytes_that_are_not_utf8_on_the_upstreams_wire_cost_nothing_but_that_line() -> None:
    """One such byte ended the SDK's reader while the upstream lived: that call and every later one stayed
    running for ever, and /health said healthy."""
    params = raw_proxy()
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            garbled = started(await client.call_tool("garble", {}))
            msg = await until(client, garbled, ("completed", "failed"), seconds=20)
            assert msg["status"] == "completed" and texts(msg["result"]) == ["after garble"], msg
            after = started(await client.call_tool("ok", {}))
            assert texts((await until(client, after, ("completed",), seconds=20))["result"]) == ["after ok"]


async def test_an_answer_too_long_or_not_json_rpc_fails_its_own_call_and_nothing_else() -> None:
    """The SDK's reader joined and split its whole buffer on every chunk (a 70 MB line: minutes, while every
    other call waited) and dropped an answer that is not JSON-RPC (its call stayed running for ever). Lines are
    read in linear time; one over the proxy's limit (64 MiB) or not JSON-RPC fails the call it answers."""
    params = raw_proxy()
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            for too_long, mangled in (("huge", "mangled"), ("ts_huge", "ts_mangled")):
                huge, bad = started(await client.call_tool(too_long, {})), started(await client.call_tool(mangled, {}))
                msg = await until(client, huge, ("completed", "failed"), seconds=20)
                assert msg["status"] == "failed", msg
                said = " ".join(texts(msg["result"]))
                assert re.search(r"message is 73,4\d\d,\d\d\d bytes, over the proxy's limit of 67,108,864", said), said
                msg = await until(client, bad, ("completed", "failed"), seconds=20)
                assert msg["status"] == "failed" and "not JSON-RPC" in " ".join(texts(msg["result"])), msg
            big = started(await client.call_tool("big", {}))
            msg = await until(client, big, ("completed", "failed"), seconds=20)
            assert msg["status"] == "completed" and "[result truncated" in " ".join(texts(msg["result"])), msg
            after = started(await client.call_tool("ok", {}))
            assert texts((await until(client, after, ("completed",), seconds=20))["result"]) == ["after ok"]
        errlog.seek(0)
        assert "proxy.upstream_line_dropped" in errlog.read()


async def test_a_request_of_the_upstreams_that_is_not_json_rpc_is_answered_and_its_call_goes_on() -> None:
    """Such a request was logged and dropped: the upstream waited for ever for its answer, and so did the call
    it made the request for. It is answered with Invalid Request (-32600), saying why."""
    params = raw_proxy()
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            asked = started(await client.call_tool("asks_badly", {}))
            msg = await until(client, asked, ("completed", "failed"), seconds=20)
            assert msg["status"] == "completed", msg
            [said] = texts(msg["result"])
            assert said.startswith("answered -32600: the proxy could not use this request: the upstream's message")
            assert "not JSON-RPC" in said, said
            after = started(await client.call_tool("ok", {}))
            assert texts((await until(client, after, ("completed",), seconds=20))["result"]) == ["after ok"]


async def test_an_upstream_that_exits_while_its_child_holds_its_output_ends_its_call_and_is_restarted() -> None:
    """The end of an upstream was seen only as the end of its output: a child it left holding its stdout kept
    that open, so the call it was running stayed running for ever. Its exit is seen; its group is stopped."""
    params = raw_proxy()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as errlog:
        pidfile = Path(tmp) / "child.pid"
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            gone = started(await client.call_tool("orphan_exit", {"pidfile": str(pidfile)}))
            msg = await until(client, gone, ("completed", "failed"), seconds=20)
            assert msg["status"] == "failed" and "upstream exited" in " ".join(texts(msg["result"])), msg
            child = int(pidfile.read_text())
            # killed before its output could end; on a loaded machine the end of its exit can come a moment later
            assert _ends_within(child, 5), f"the child {child} the upstream left still runs"
            after = started(await client.call_tool("ok", {}))
            assert texts((await until(client, after, ("completed",), seconds=30))["result"]) == ["after ok"]
        errlog.seek(0)
        assert "proxy.upstream_output_held" in errlog.read()


async def test_an_upstream_that_ignores_its_stdin_closing_dies_with_the_proxy_that_its_client_killed() -> None:
    """The client that started the proxy closes its stdin and kills it after a grace period (the SDK's
    stdio_client: 2 s, SIGTERM, then SIGKILL), before the proxy is done stopping such an upstream (the same
    steps). The upstream, in a process group of its own, was left running for good."""
    params = raw_proxy("--stubborn")
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as errlog:
        pidfile = Path(tmp) / "upstream.pid"
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            job = started(await client.call_tool("pid", {"pidfile": str(pidfile)}))
            await until(client, job, ("completed",), seconds=20)
        upstream = int(pidfile.read_text())
        try:
            assert _ends_within(upstream, 10), f"the upstream {upstream} outlived the proxy"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(upstream, signal.SIGKILL)


async def test_an_upstream_behind_a_wrapper_that_does_not_exec_it_dies_with_the_proxy_too() -> None:
    """The kernel's parent-death signal reaches the process the proxy starts, not its children: a server behind
    a shell script (or npx, uvx) outlived the proxy. Once stopping, the proxy kills the upstreams' whole groups
    when the client's SIGTERM comes."""
    params = raw_proxy("--stubborn", wrapper=("sh", "-c", '"$@"; exit $?', "sh"))
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as errlog:
        pidfile = Path(tmp) / "upstream.pid"
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            job = started(await client.call_tool("pid", {"pidfile": str(pidfile)}))
            await until(client, job, ("completed",), seconds=20)
        server = int(pidfile.read_text())  # the shell's child
        try:
            assert _ends_within(server, 10), f"the upstream {server} outlived the proxy"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGKILL)


@pytest.mark.skipif(shutil.which("setsid") is None, reason="util-linux setsid is not installed")
async def test_an_upstream_whose_wrapper_forks_it_away_and_exits_is_read_on_not_restarted() -> None:
    """`setsid CMD` forks (an upstream leads its process group) and exits at once; its child serves on the same
    pipes from a session of its own. Its exit is not the upstream's end: nothing is killed or restarted."""
    params = raw_proxy(wrapper=("setsid",))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            for name in ("ok", "slow", "ok"):  # past the exit's notice (0.2 s) and its drain (1 s)
                job = started(await client.call_tool(name, {}))
                msg = await until(client, job, ("completed", "failed"), seconds=20)
                assert msg["status"] == "completed" and texts(msg["result"]) == [f"after {name}"], msg
        errlog.seek(0)
        said = errlog.read()
        assert "proxy.upstream_exited" not in said and "proxy.upstream_output_held" not in said, said


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` ends (exits or is killed) within `seconds`, told by the kernel (a pidfd)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)
