"""`vibe-jobs proxy` over streamable HTTP: the TypeScript SDK's client in front (tests/e2e/ts_client.mjs), and a
streamable-HTTP upstream behind (`--upstream-url`, `--upstream-header`): the reference server-everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import CreateMessageRequestParams, CreateMessageResult, TextContent

from tests.e2e.conftest import BASE_ENV, MODES, ROOT, free_port, stop, wait_for_port
from tests.e2e.proxy_fixtures import started, texts, until, upstream_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LONG_TEXT = "Long running operation completed. Duration: 4 seconds, Steps: 4."


@contextmanager
def running(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **BASE_ENV, **(env or {})}, stdout=subprocess.DEVNULL, stderr=errlog
        )
        try:
            wait_for_port(port, proc, 30)
            yield proc
        finally:
            stop(proc)


def proxy_cmd(port: int, *upstream: str) -> list[str]:
    serve = ["--store", "memory://", "--transport", "streamable-http", "--port", str(port)]
    return [sys.executable, "-m", "vibe_jobs", "proxy", *serve, *upstream]


def test_the_typescript_sdk_client_gets_jobs_through_the_proxy_over_streamable_http() -> None:
    everything, node = upstream_command("everything"), upstream_command("node")[0]
    node_modules = upstream_command("node-modules")[0]
    port = free_port()
    with running(proxy_cmd(port, "--", *everything), port):
        run = subprocess.run(
            [node, str(ROOT / "tests" / "e2e" / "ts_client.mjs"), node_modules, f"http://127.0.0.1:{port}/mcp"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"trigger-long-running-operation", "echo", "get-job-result"} <= set(report["tools"])
    assert report["answeredMs"] < 1000
    assert report["job"]["status"] == "completed", report["job"]
    assert [c["text"] for c in report["job"]["result"]["content"]] == [LONG_TEXT]
    assert any(0 < p < 100 for p in report["progress"]), report["progress"]
    refused = report["refused"]  # the TS SDK checks even an isError answer's structuredContent against outputSchema
    assert refused.get("isError") is True, refused  # not a thrown McpError -32602: the refusal itself arrives
    assert "mesage" in refused["content"][0]["text"] and refused["structuredContent"]["error"]["code"], refused
    unknown = report["refusedRead"]  # a control tool's refusal too
    assert unknown.get("isError") is True and "no-such-job" in unknown["content"][0]["text"], unknown
    assert report["jobs"] == [report["jobId"]]  # the refused call made no job


@pytest.mark.parametrize("mode", MODES)
async def test_a_streamable_http_upstream_with_headers(mode: str) -> None:
    everything = upstream_command("everything")
    upstream_port, port = free_port(), free_port()
    with (
        running([*everything[:-1], "streamableHttp"], upstream_port, {"PORT": str(upstream_port)}),
        running(
            proxy_cmd(
                port,
                "--upstream-url",
                f"http://127.0.0.1:{upstream_port}/mcp",
                "--upstream-header",
                "X-Test: proxy",
            ),
            port,
        ),
    ):
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode, read_timeout_seconds=60) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            job_id = started(await client.call_tool("echo", {"message": "over http"}))
            msg = await until(client, job_id, ("completed", "failed"))
    assert "trigger-long-running-operation" in names
    assert msg["status"] == "completed"
    assert texts(msg["result"]) == ["Echo: over http"]


async def test_a_streamable_http_upstreams_sampling_request_reaches_the_proxys_client() -> None:
    """The upstream's sampling/createMessage comes on the SSE stream of its tools/call; the job's client answers."""

    async def on_sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="over sse"), model="m")

    everything = upstream_command("everything")
    upstream_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{upstream_port}/mcp"
    with (
        running([*everything[:-1], "streamableHttp"], upstream_port, {"PORT": str(upstream_port)}),
        running(proxy_cmd(port, "--upstream-url", url), port),
    ):
        proxy = f"http://127.0.0.1:{port}/mcp"
        async with Client(proxy, mode="legacy", read_timeout_seconds=60, sampling_callback=on_sample) as client:
            job_id = started(await client.call_tool("trigger-sampling-request", {"prompt": "hi"}))
            msg = await until(client, job_id, ("completed", "failed"))
    shown = "\n".join(texts(msg["result"]))
    assert msg["status"] == "completed" and '"text": "over sse"' in shown, shown


async def test_a_streamable_http_upstream_that_dies_mid_job_is_connected_again() -> None:
    everything = upstream_command("everything")
    upstream_port, port = free_port(), free_port()
    upstream, env = [*everything[:-1], "streamableHttp"], {"PORT": str(upstream_port)}
    url = f"http://127.0.0.1:{upstream_port}/mcp"
    with running(upstream, upstream_port, env) as first, running(proxy_cmd(port, "--upstream-url", url), port):
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="auto", read_timeout_seconds=60) as client:
            job_id = started(await client.call_tool("trigger-long-running-operation", {"duration": 4, "steps": 4}))
            await until(client, job_id, ("running",))
            first.kill()
            first.wait(10)
            with running(upstream, upstream_port, env):
                msg = await until(client, job_id, ("completed", "failed", "cancelled"), seconds=60)
                echo = started(await client.call_tool("echo", {"message": "back"}))
                echoed = await until(client, echo, ("completed", "failed"))
    # idempotentHint: true -> it ran again, on the new upstream
    assert msg["status"] == "completed", "\n".join(msg["details"]["diagnostics"])
    assert texts(msg["result"]) == [LONG_TEXT]
    assert texts(echoed["result"]) == ["Echo: back"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_restarted_http_upstream_serves_direct_tools_and_prompts_again(mode: str) -> None:
    """Only a job's call noticed that a streamable-HTTP upstream had restarted (its session unknown there): with
    direct tools and pass-through requests only, every call failed for ever with the SDK's "Server returned an
    error response", as a JSON-RPC error of the proxy's own. The first call to find the session gone now fails
    naming the upstream, and the proxy connects again for the next. (Whether a call finds it gone is a race with the
    standing stream's end: in about two runs of three in the auto mode the proxy had connected again first.)"""
    everything = upstream_command("everything")
    upstream_port, port = free_port(), free_port()
    upstream, env = [*everything[:-1], "streamableHttp"], {"PORT": str(upstream_port)}
    url = f"http://127.0.0.1:{upstream_port}/mcp"
    proxy = proxy_cmd(port, "--upstream-url", url, "--direct", "echo")
    with running(upstream, upstream_port, env) as first, running(proxy, port):
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode, read_timeout_seconds=60) as client:
            assert texts(await client.call_tool("echo", {"message": "before"})) == ["Echo: before"]
            first.kill()
            first.wait(10)
            with running(upstream, upstream_port, env):
                found_gone = await client.call_tool("echo", {"message": "lost"})
                again = await client.call_tool("echo", {"message": "again"})
                prompts = (await client.list_prompts()).prompts
    if found_gone.is_error:  # the call found the session gone: it fails naming the upstream
        assert "interrupted: upstream" in texts(found_gone)[0] and url in texts(found_gone)[0], found_gone
    else:  # the proxy saw the connection end first (its standing stream broke) and had connected again
        assert texts(found_gone) == ["Echo: lost"], found_gone
    assert texts(again) == ["Echo: again"] and not again.is_error, again
    assert "simple-prompt" in {p.name for p in prompts}
