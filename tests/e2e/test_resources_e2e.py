"""Job resources and their update notifications, against the real server process, in both protocol eras."""

from __future__ import annotations

import json
import socket
import tempfile
import warnings
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification, TextResourceContents

from tests.e2e.conftest import MODES, HttpServer, start_http, stdio_params
from tests.e2e.test_jobs_e2e import start, structured, texts
from tests.e2e.test_tasks_e2e import STORES, health, served_on
from tests.pg import postgres_url, with_new_schema
from vibe_jobs.server.resources import MAX_LISTEN_URIS

pytestmark = pytest.mark.timeout(90)

FINISHED = ("completed", "failed", "cancelled")
LEGACY_VERSION = "2025-11-25"


def job_uri(job_id: str) -> str:
    return f"job://{job_id}"


class Watcher:
    """The client's message handler: every resource-updated notification, in arrival order."""

    def __init__(self) -> None:
        self.send, self.recv = anyio.create_memory_object_stream[str](1000)
        self.counts: Counter[str] = Counter()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.counts[str(message.params.uri)] += 1
            await self.send.send(str(message.params.uri))

    async def next_update(self, uri: str) -> None:
        """Wait for the next notification about `uri` (others are skipped)."""
        while await self.recv.receive() != uri:
            pass


@asynccontextmanager
async def connect(mode: str) -> AsyncIterator[tuple[Client, Watcher]]:
    watcher = Watcher()
    with tempfile.TemporaryFile("w+") as errlog, watcher.send, watcher.recv:
        transport = stdio_client(stdio_params(), errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=60, message_handler=watcher) as client:
            yield client, watcher


@asynccontextmanager
async def subscribed(client: Client, uri: str) -> AsyncIterator[None]:
    """Subscribe the era's way: resources/subscribe (legacy) or a subscriptions/listen stream (2026-07-28)."""
    if client.protocol_version != LEGACY_VERSION:
        async with client.listen(resource_subscriptions=[uri]) as sub:
            assert sub.honored.resource_subscriptions == [uri]
            yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        await client.subscribe_resource(uri)
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.unsubscribe_resource(uri)


async def read_job(client: Client, job_id: str) -> dict[str, Any]:
    result = await client.read_resource(job_uri(job_id))
    content = result.contents[0]
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    body: dict[str, Any] = json.loads(content.text)
    return body


async def submit_after(client: Client, tool: str, args: dict[str, Any], depends_on: str) -> str:
    result = await client.call_tool("submit-job", {"tool": tool, "arguments": args, "dependsOn": [depends_on]})
    assert not result.is_error, texts(result)
    return str(structured(result)["jobId"])


async def follow_updates(client: Client, watcher: Watcher, job_id: str) -> list[dict[str, Any]]:
    """Read the job after each notification about it until it reads finished."""
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(20):
        while not seen or seen[-1]["status"] not in FINISHED:
            await watcher.next_update(job_uri(job_id))
            seen.append(await read_job(client, job_id))
    return seen


async def barrier(client: Client, watcher: Watcher) -> None:
    """Run a short job to its end while subscribed to it: a window in which the server's hub has run on."""
    job_id = await start(client, "sleepy", {"seconds": 0.6, "steps": 2})
    async with subscribed(client, job_uri(job_id)):
        await follow_updates(client, watcher, job_id)


@pytest.mark.parametrize("mode", MODES)
async def test_the_job_template_and_recent_jobs_are_listed(mode: str) -> None:
    async with connect(mode) as (client, _):
        templates = (await client.list_resource_templates()).resource_templates
        resources = (await client.list_resources()).resources
    job = next(t for t in templates if t.uri_template == "job://{jobId}")
    assert job.description and "JobStatusMessage" in job.description
    assert job.mime_type == "application/json"
    assert any(str(r.uri) == "jobs://recent" and r.description for r in resources)


@pytest.mark.parametrize("mode", MODES)
async def test_reading_a_job_gives_its_status_and_is_not_a_poll(mode: str) -> None:
    async with connect(mode) as (client, _):
        job_id = await start(client, "sleepy", {"seconds": 10})
        first, second = await read_job(client, job_id), await read_job(client, job_id)
        polled = structured(await client.call_tool("get-job-result", {"jobId": job_id}))
        after = await read_job(client, job_id)
        await client.call_tool("cancel-job", {"jobId": job_id})
    assert first["jobId"] == job_id and first["toolName"] == "sleepy"
    assert first["status"] in ("pending", "running") and "createdAt" in first
    assert first["accessCount"] == second["accessCount"] == 0
    assert "pollingRecommendation" not in first and not first["rateLimited"]
    assert polled["accessCount"] == 1 and after["accessCount"] == 1


@pytest.mark.parametrize("mode", MODES)
async def test_reading_an_unknown_job_is_an_invalid_params_error(mode: str) -> None:
    async with connect(mode) as (client, _):
        with pytest.raises(MCPError) as caught:
            await client.read_resource("job://nope")
    assert caught.value.error.code == -32602 and "nope" in caught.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_a_huge_unknown_job_uri_is_not_echoed_whole(mode: str) -> None:
    """A caller may name a job of megabytes: the refusal names it cut short, and the server goes on
    (the legacy era's SDK adds the URI as sent to the error's data: the caller's own bytes, not ours)."""
    async with connect(mode) as (client, _):
        with pytest.raises(MCPError) as caught:
            await client.read_resource("job://" + "n" * 50_000)
        assert caught.value.error.code == -32602 and "nnnn" in caught.value.error.message
        assert len(caught.value.error.message) < 1_000
        assert (await client.read_resource("jobs://recent")).contents


@pytest.mark.parametrize("mode", MODES)
async def test_recent_jobs_lists_the_newest_first(mode: str) -> None:
    async with connect(mode) as (client, _):
        older = await start(client, "noop", {})
        newer = await start(client, "sleepy", {"seconds": 10})
        result = await client.read_resource("jobs://recent")
        await client.call_tool("cancel-job", {"jobId": newer})
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    body = json.loads(content.text)
    ids = [job["id"] for job in body["jobs"]]
    assert ids.index(newer) < ids.index(older) and "nextCursor" in body
    assert body["jobs"][ids.index(newer)]["toolName"] == "sleepy"


@pytest.mark.parametrize("mode", MODES)
async def test_a_subscriber_hears_each_state_change_and_nothing_after_the_end(mode: str) -> None:
    async with connect(mode) as (client, watcher):
        blocker = await start(client, "sleepy", {"seconds": 1.0, "steps": 1})
        job_id = await submit_after(client, "sleepy", {"seconds": 1.2, "steps": 4}, depends_on=blocker)
        uri = job_uri(job_id)
        async with subscribed(client, uri):
            assert (await read_job(client, job_id))["status"] == "pending"
            seen = await follow_updates(client, watcher, job_id)
            heard = watcher.counts[uri]
            await barrier(client, watcher)
            late = watcher.counts[uri] - heard
    statuses = [body["status"] for body in seen]
    assert statuses[0] == "running" and statuses[-1] == "completed", statuses
    progress = [body.get("progress", 0) for body in seen if body["status"] == "running"]
    assert any(0 < p < 100 for p in progress) and progress == sorted(progress), progress
    assert heard >= 5, heard  # started, progress steps (at most 4 per second), completed
    assert late <= 1, late  # only the completion's own update may still have been on its way


@pytest.mark.parametrize("mode", MODES)
async def test_a_finished_job_sends_nothing(mode: str) -> None:
    async with connect(mode) as (client, watcher):
        job_id = await start(client, "noop", {})
        await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 10})
        async with subscribed(client, job_uri(job_id)):
            await barrier(client, watcher)
            assert (await read_job(client, job_id))["status"] == "completed"
    assert watcher.counts[job_uri(job_id)] == 0


@pytest.mark.parametrize("mode", MODES)
async def test_unsubscribing_stops_the_updates(mode: str) -> None:
    async with connect(mode) as (client, watcher):
        job_id = await start(client, "sleepy", {"seconds": 4, "steps": 8})
        uri = job_uri(job_id)
        async with subscribed(client, uri):
            with anyio.fail_after(10):
                await watcher.next_update(uri)
        heard = watcher.counts[uri]
        before = (await read_job(client, job_id)).get("progress", 0)
        await barrier(client, watcher)
        after = (await read_job(client, job_id)).get("progress", 0)
        await client.call_tool("cancel-job", {"jobId": job_id})
    assert after > before  # the job moved on ...
    assert watcher.counts[uri] == heard  # ... and nobody was told


async def test_a_listen_stream_yields_typed_updates() -> None:
    async with connect("auto") as (client, _):
        job_id = await start(client, "sleepy", {"seconds": 0.9, "steps": 3})
        statuses: list[str] = []
        async with client.listen(resource_subscriptions=[job_uri(job_id)]) as sub:
            with anyio.fail_after(20):
                async for event in sub:
                    assert event == ResourceUpdated(uri=job_uri(job_id))
                    statuses.append((await read_job(client, job_id))["status"])
                    if statuses[-1] in FINISHED:
                        break
    assert statuses[-1] == "completed" and len(statuses) >= 2, statuses


@pytest.mark.parametrize("mode", MODES)
async def test_fast_progress_is_coalesced(mode: str) -> None:
    async with connect(mode) as (client, watcher):
        blocker = await start(client, "sleepy", {"seconds": 0.5, "steps": 1})
        job_id = await submit_after(client, "sleepy", {"seconds": 1.0, "steps": 40}, depends_on=blocker)
        async with subscribed(client, job_uri(job_id)):
            seen = await follow_updates(client, watcher, job_id)
            await barrier(client, watcher)
    heard = watcher.counts[job_uri(job_id)]
    assert seen[-1]["status"] == "completed" and seen[-1]["progress"] == 100
    assert 3 <= heard <= 9, heard  # 40 progress steps in 1 s -> about 4 updates, plus started and completed


@pytest.mark.parametrize("mode", MODES)
async def test_a_recent_jobs_subscriber_hears_of_new_jobs_and_their_ends_thinned(mode: str) -> None:
    """Subscribing to `jobs://recent` was accepted and then silent: a client showing the list never heard that it
    changed. It now hears of each job created, changed or progressing, at most once a second."""
    async with connect(mode) as (client, watcher), subscribed(client, "jobs://recent"):
        job_id = await start(client, "sleepy", {"seconds": 1.0, "steps": 40})
        with anyio.fail_after(20):
            await watcher.next_update("jobs://recent")
            while (await recent_status(client, job_id)) != "completed":
                await watcher.next_update("jobs://recent")
    # created, started, 40 progress reports and completed in about 1 s: the first at once, then one a second
    assert 2 <= watcher.counts["jobs://recent"] <= 4, watcher.counts


async def recent_status(client: Client, job_id: str) -> str | None:
    content = (await client.read_resource("jobs://recent")).contents[0]
    assert isinstance(content, TextResourceContents)
    return next((j["status"] for j in json.loads(content.text)["jobs"] if j["id"] == job_id), None)


# wake-ups no vibe-jobs sends: any role that may connect to the database may NOTIFY on the store's channel
FORGED_NOTIFICATIONS = (
    '{"op": "update", "id": 5, "status": "running", "tool": "sleepy", "cancel": false}',
    '[{"op": "update", "id": null, "status": "failed", "tool": "sleepy", "cancel": false}]',
    '{"op": "insert", "id": "x", "status": "pending", "tool": ["sleepy"], "cancel": false}',
    "[" * 7000,  # nested past the JSON reader's depth: RecursionError, logged with a traceback by the event loop
)


@pytest.mark.postgres
@pytest.mark.parametrize("mode", MODES)
async def test_a_forged_wake_up_on_the_store_s_channel_costs_the_subscribers_nothing(mode: str) -> None:
    """A PostgreSQL notification on the store's channel whose job id is not a string (sent by anyone who may
    connect to the database) reached the resources hub's one task as an event, which raised building the job's
    URI and ended the server with every client's connection. It is now refused as unreadable where it is read (one
    warning each); the subscriber goes on hearing of its job, and the server answers."""
    from tests.e2e.test_hostile_input import drop_schema

    asyncpg = pytest.importorskip("asyncpg")
    base = postgres_url("the forged wake-up test")
    url = with_new_schema(base, "vj_forged")
    watcher = Watcher()
    try:
        with start_http("streamable-http", {}, ["--store", url]) as server, watcher.send, watcher.recv:
            async with Client(server.url, mode=mode, read_timeout_seconds=60, message_handler=watcher) as client:
                job_id = await start(client, "sleepy", {"seconds": 1.5, "steps": 3})
                async with subscribed(client, job_uri(job_id)):
                    forger = await asyncpg.connect(base)
                    try:
                        for payload in FORGED_NOTIFICATIONS:
                            await forger.execute("SELECT pg_notify($1, $2)", f"vibe_jobs.{schema_of(url)}", payload)
                    finally:
                        await forger.close()
                    seen = await follow_updates(client, watcher, job_id)
                assert seen[-1]["status"] == "completed", seen
                assert (await client.call_tool("job-stats", {})).structured_content is not None
            assert server.proc.poll() is None
            server.errlog.seek(0)
            log = server.errlog.read().decode(errors="replace")
    finally:
        await drop_schema(base, url)
    assert log.count("store.notify_unreadable") == len(FORGED_NOTIFICATIONS), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def schema_of(url: str) -> str:
    return url.rpartition("schema=")[2]


async def raw_listen_ack(http: httpx.AsyncClient, url: str, uris: list[str]) -> Any:
    """The first message of a 2026-07-28 listen stream naming `uris` (its ack, or its refusal), sent as ASCII JSON (a
    lone surrogate goes as its escape, as a hostile client sends it); the stream is closed then."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}  # fmt: skip
    params = {"notifications": {"resourceSubscriptions": uris}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": params})
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen"}  # fmt: skip
    async with http.stream("POST", url, content=body, headers=headers) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            return json.loads(await response.aread())
        async for line in response.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])
    raise AssertionError("the listen stream ended without a message")


@pytest.mark.parametrize("store", STORES)
async def test_a_listen_stream_naming_a_job_uri_that_is_no_valid_unicode_opens(tmp_path: Path, store: str) -> None:
    """JSON may carry a lone surrogate (`"\\ud800"`), which the MCP SDK passes on to a 2026-07-28 request over HTTP
    (a legacy one is refused as unparsable) and no store can look up: a listen stream naming `job://\\ud800` was
    refused with -32603 (the job store failed) instead of opening without it, as for an unknown job, and the
    server's health said "degraded: the job store failed" for 5 minutes, for every principal."""
    async with served_on(store, tmp_path) as server, httpx.AsyncClient(timeout=30) as http:
        for uri in ("job://\ud800", "job://a\udfffb"):
            ack = await raw_listen_ack(http, server.url, [uri, "jobs://recent"])
            assert ack.get("method") == "notifications/subscriptions/acknowledged", ack
            assert ack["params"]["notifications"]["resourceSubscriptions"] == ["jobs://recent"], ack
        assert health(server) == {"status": "healthy", "reasons": []}


@asynccontextmanager
async def modern_client(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A 2026-07-28 client of the real server over `transport` (stdio or the session's streamable-HTTP server)."""
    if transport == "stdio":
        async with connect("auto") as (client, _):
            yield client
        return
    server: HttpServer = request.getfixturevalue("http_server")
    async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
        yield client


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_a_listen_stream_names_at_most_its_share_of_resources(
    transport: str, request: pytest.FixtureRequest
) -> None:
    """Only job URIs counted against a stream's cap: one naming 110,000 other URIs (a 3 MB request, under the 4 MiB
    body cap) was honored and echoed whole in its ack, and held in the server's memory while it stayed open (RSS
    +98 MB for 4 such streams left unread: 64 of them, one principal's share, about 1.6 GB). Every URI named counts
    now; a stream at the cap opens."""
    uris = [f"file:///nothing/{i}" for i in range(MAX_LISTEN_URIS)]
    async with modern_client(transport, request) as client:
        async with client.listen(resource_subscriptions=uris) as sub:  # at the cap: served
            assert sub.honored.resource_subscriptions == uris
        for over in (["job://x", *uris], [*uris, *uris]):
            with pytest.raises(MCPError) as err:
                async with client.listen(resource_subscriptions=over):
                    pass
            assert err.value.error.code == -32602, err.value.error
            assert f"at most {MAX_LISTEN_URIS} resources" in err.value.error.message


class StuckSseClient:
    """A legacy client of the SSE transport on a raw socket with a small receive buffer: it reads its stream only
    until told what it asked for, then never again (a client that hung, or one that stops reading on purpose)."""

    def __init__(self, server: HttpServer) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # set before connecting: a small window
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.sendall(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        self.seen, self.ids = b"", 0
        path = self.read_until(b"session_id=", b"\n").split(b"data: ")[-1].strip().decode()
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
        self.endpoint = path

    def read_until(self, mark: bytes, end: bytes) -> bytes:
        """The stream up to `end` after `mark`, read from the socket as far as needed (the rest stays buffered)."""
        while mark not in self.seen or end not in self.seen.split(mark, 1)[1]:
            self.seen += self.sock.recv(65536)
        head, tail = self.seen.split(mark, 1)
        rest, self.seen = tail.split(end, 1)
        return head + mark + rest

    async def post(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int:
        self.ids += 1
        message = {"jsonrpc": "2.0", "method": method, **({} if notify else {"id": self.ids})}
        response = await self.http.post(self.endpoint, json=message | ({"params": params} if params else {}))
        assert response.status_code == 202, response.text
        return self.ids

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Ask, and read the answer off the stream."""
        request_id = await self.post(method, params)
        line = self.read_until(f'"id":{request_id}'.encode(), b"\n")
        return json.loads(line.split(b"data: ")[-1])

    async def start(self) -> None:
        info = {"name": "stuck", "version": "1"}
        await self.call("initialize", {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": info})
        await self.post("notifications/initialized", notify=True)

    def close(self) -> None:
        self.sock.close()


async def test_a_subscriber_that_stops_reading_holds_up_no_other_client() -> None:
    """The hub told every legacy subscriber from one task, each send waiting up to 5 s: a client that subscribed to a
    job reporting progress and then stopped reading its SSE stream (its socket full) cost 5 s per update of that
    job, and every other client heard nothing of its own jobs (none in 20 s). Each connection is now told by a task
    of its own, its pending updates coalesced: the stuck one holds up only itself."""
    with start_http("sse") as server:
        stuck = StuckSseClient(server)
        try:
            await stuck.start()
            answer = await stuck.call("tools/call", {"name": "sleepy", "arguments": {"seconds": 60, "steps": 600}})
            busy = answer["result"]["structuredContent"]["jobId"]
            await stuck.call("resources/subscribe", {"uri": job_uri(busy)})
            for _ in range(8):  # answers it never reads: a megabyte each (the URI asked for, echoed in the error)
                await stuck.post("resources/read", {"uri": "job://" + "n" * 1_000_000})
            watcher = Watcher()
            with watcher.send, watcher.recv:
                transport = sse_client(server.url)
                async with Client(transport, mode="legacy", read_timeout_seconds=60, message_handler=watcher) as good:
                    job_id = await start(good, "sleepy", {"seconds": 0.4, "steps": 2})
                    async with subscribed(good, job_uri(job_id)):
                        seen = await follow_updates(good, watcher, job_id)
            assert seen[-1]["status"] == "completed", seen
        finally:
            stuck.close()
            await stuck.http.aclose()
