"""Identity and scoping against the real `vibe-jobs serve` over HTTP (issue 15, finding 5).

Three principals hold tokens (alice, bob, and root with scope `admin`). Without a token, or with a wrong
one, HTTP answers 401 with WWW-Authenticate. Every surface shows a principal only its own jobs: another
principal's job answers exactly as an unknown id does (get-job-result, cancel-job, `job://`, subscriptions,
dependencies, tasks/*), lists and counts leave it out; admin sees and cancels all. On memory, SQLite and
PostgreSQL; on PostgreSQL across two replicas of one schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from tests.e2e.conftest import BASE_ENV, MODES, SERVER, HttpServer, free_port, start_http
from tests.e2e.conftest import ROOT as REPO
from tests.e2e.test_jobs_e2e import start, structured, texts
from tests.e2e.test_resources_e2e import LEGACY_VERSION, Watcher, job_uri, read_job
from tests.e2e.test_tasks_e2e import send
from tests.pg import postgres_url, with_new_schema
from vibe_jobs.client import TasksClientExtension
from vibe_jobs.states import FINAL

pytestmark = pytest.mark.timeout(120)

ALICE, BOB, ROOT = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef", "root-token-0123456789abcdef"
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"  # the shape of a job id, naming no job


def token_file(directory: Path) -> Path:
    path = directory / "tokens"
    root_digest = hashlib.sha256(ROOT.encode()).hexdigest()
    path.write_text(
        f"# principals of the identity tests\n{ALICE} alice\n{BOB} bob read,write\nsha256:{root_digest} root admin\n"
    )
    path.chmod(0o600)  # as the README asks (a file others can read is warned of)
    return path


@contextmanager
def serve(
    directory: Path, transport: str = "streamable-http", store: str = "memory://", *flags: str, **env: str
) -> Iterator[HttpServer]:
    args = ["--auth-tokens", str(token_file(directory)), "--store", store, *flags]
    with start_http(transport, {"JOB_MANAGER_MAX_CONCURRENT": "4", **env}, args) as server:
        yield server


@asynccontextmanager
async def client_as(server: HttpServer, token: str, mode: str = "legacy", **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        if server.transport == "sse":
            target: Any = sse_client(server.url, headers=headers)
        else:
            target = streamable_http_client(server.url, http_client=http)
        async with Client(target, mode=mode, read_timeout_seconds=60, **options) as client:
            yield client


def anonymised(value: Any, job_id: str) -> str:
    return json.dumps(value, sort_keys=True, default=str).replace(job_id, "<id>")


def answer(result: CallToolResult) -> dict[str, Any]:
    return {"isError": result.is_error, "text": texts(result), "structured": result.structured_content}


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return answer(await client.call_tool(tool, args))


async def assert_answers_as_unknown(client: Client, tool: str, args: dict[str, Any], key: str, foreign: str) -> None:
    """`tool` called with another principal's job id answers exactly as with an unknown id."""
    theirs = await call(client, tool, {**args, key: foreign})
    unknown = await call(client, tool, {**args, key: UNKNOWN_ID})
    assert unknown["isError"], unknown
    assert anonymised(theirs, foreign) == anonymised(unknown, UNKNOWN_ID)


async def listed(client: Client) -> set[str]:
    return {j["id"] for j in structured(await client.call_tool("list-jobs", {}))["jobs"]}


async def recent(client: Client) -> set[str]:
    body = json.loads(getattr((await client.read_resource("jobs://recent")).contents[0], "text", ""))
    return {j["id"] for j in body["jobs"]}


async def resource_error(client: Client, job_id: str) -> str:
    with pytest.raises(MCPError) as info:
        await read_job(client, job_id)
    return anonymised({"code": info.value.error.code, "message": info.value.error.message}, job_id)


async def wait_status(client: Client, job_id: str, statuses: tuple[str, ...], seconds: float = 20) -> dict[str, Any]:
    """Wait until the job's status is one of `statuses`: its end by long-polls (get-job-result's answer, as the job
    ends), a status on the way (running) by reads of its `job://` resource, answered at once (a long-poll of a
    running job waits out its whole time, and a read between long-polls would be early: rate limited)."""
    with anyio.fail_after(seconds):
        while True:
            if FINAL.issuperset(statuses):
                body = structured(await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 5}))
            else:
                body = await read_job(client, job_id)
            if body["status"] in statuses:
                return body
            await anyio.sleep(0.05)


# -- 401 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_no_token_or_a_wrong_token_is_401_with_www_authenticate(tmp_path: Path, transport: str) -> None:
    with serve(tmp_path, transport) as server:
        async with httpx2.AsyncClient(timeout=10) as http:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": "Basic x"}):
                if transport == "sse":
                    response = await http.get(server.url, headers=headers)
                else:
                    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
                    response = await http.post(
                        server.url, json=body, headers={**headers, "Accept": "application/json, text/event-stream"}
                    )
                assert response.status_code == 401, (headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
        for mode in MODES:
            async with client_as(server, ALICE, mode) as client:  # the right token passes
                assert "list-jobs" in {t.name for t in (await client.list_tools()).tools}


# -- cross-principal, on every store --------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return with_new_schema(postgres_url("identity tests on PostgreSQL"), "vj_identity")


@dataclass
class AliceJobs:
    running: str  # waits until cancelled
    done: str  # completed


async def alice_jobs(alice: Client) -> AliceJobs:
    running = await start(alice, "wait_forever", {})
    done = await start(alice, "noop", {})
    await wait_status(alice, done, ("completed",))
    await wait_status(alice, running, ("running",))
    return AliceJobs(running, done)


async def assert_bob_cannot_reach(bob: Client, jobs: AliceJobs) -> None:
    for foreign in (jobs.running, jobs.done):
        await assert_answers_as_unknown(bob, "get-job-result", {}, "jobId", foreign)
        await assert_answers_as_unknown(bob, "get-job-result", {"waitSeconds": 0.2}, "jobId", foreign)
        await assert_answers_as_unknown(bob, "cancel-job", {}, "jobId", foreign)
        assert await resource_error(bob, foreign) == await resource_error(bob, UNKNOWN_ID)
        theirs = await call(bob, "submit-job", {"tool": "noop", "dependsOn": [foreign]})
        unknown = await call(bob, "submit-job", {"tool": "noop", "dependsOn": [UNKNOWN_ID]})
        for refused in (theirs, unknown):  # the id the refused job would have had: random, never stored
            refused["structured"]["error"].pop("jobId", None)
        assert unknown["isError"] and anonymised(theirs, foreign) == anonymised(unknown, UNKNOWN_ID)
    assert not (await listed(bob)) & {jobs.running, jobs.done}
    assert not (await recent(bob)) & {jobs.running, jobs.done}


@pytest.mark.parametrize("mode", MODES)
async def test_another_principals_jobs_answer_as_unknown_ids(tmp_path: Path, store_url: str, mode: str) -> None:
    with serve(tmp_path, store=store_url) as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            jobs = await alice_jobs(alice)
            bobs = await start(bob, "noop", {})
            await assert_bob_cannot_reach(bob, jobs)
            assert await listed(bob) == await recent(bob) == {bobs}
            stats = structured(await bob.call_tool("job-stats", {}))
            assert sum(stats["counts"].values()) == 1, stats  # bob's own job only
            assert stats["byTool"] == stats["learnedDurations"] == {}, stats  # alice's tools' figures are hers
            assert "wait_forever" not in json.dumps(stats) and stats["errorRate5m"] is None, stats
            # alice's jobs are untouched by all that, and hers to read and cancel
            assert (await read_job(alice, jobs.running))["status"] == "running"
            assert await listed(alice) == {jobs.running, jobs.done}
            assert structured(await alice.call_tool("cancel-job", {"jobId": jobs.running}))["status"] == "cancelled"


@pytest.mark.parametrize("mode", MODES)
async def test_over_sse_too(tmp_path: Path, mode: str) -> None:
    with serve(tmp_path, "sse") as server:
        async with client_as(server, ALICE, mode) as alice, client_as(server, BOB, mode) as bob:
            jobs = await alice_jobs(alice)
            await assert_bob_cannot_reach(bob, jobs)
            assert await listed(alice) == {jobs.running, jobs.done}


async def test_admin_sees_counts_and_cancels_every_job(tmp_path: Path, store_url: str) -> None:
    with serve(tmp_path, store=store_url) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob, client_as(server, ROOT) as root:
            jobs = await alice_jobs(alice)
            bobs = await start(bob, "noop", {})
            assert await listed(root) >= {jobs.running, jobs.done, bobs}
            stats = structured(await root.call_tool("job-stats", {}))
            assert sum(stats["counts"].values()) == 3 and "noop" in stats["byTool"], stats
            assert (await read_job(root, jobs.done))["status"] == "completed"
            assert structured(await root.call_tool("cancel-job", {"jobId": jobs.running}))["status"] == "cancelled"
            assert (await read_job(alice, jobs.running))["status"] == "cancelled"


async def test_dedupe_and_jobs_of_equal_calls_stay_apart(tmp_path: Path) -> None:
    """Two principals making the same call get two jobs, each its own (never one shared job)."""
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob:
            a = await start(alice, "echo", {"text": "same"})
            b = await start(bob, "echo", {"text": "same"})
            assert a != b and await listed(alice) == {a} and await listed(bob) == {b}


# -- subscriptions -------------------------------------------------------------------------------


@asynccontextmanager
async def subscribed_to(client: Client, uri: str) -> AsyncIterator[list[str] | None]:
    """Subscribe the era's way; yields what a listen stream honored (None on the legacy era)."""
    if client.protocol_version != LEGACY_VERSION:
        async with client.listen(resource_subscriptions=[uri]) as sub:
            yield sub.honored.resource_subscriptions
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        await client.subscribe_resource(uri)
    yield None


@pytest.mark.parametrize("mode", MODES)
async def test_subscribing_to_another_principals_job_hears_nothing(tmp_path: Path, store_url: str, mode: str) -> None:
    bob_hears, alice_hears = Watcher(), Watcher()
    with serve(tmp_path, store=store_url) as server, bob_hears.send, bob_hears.recv, alice_hears.send, alice_hears.recv:
        async with (
            client_as(server, ALICE, mode, message_handler=alice_hears) as alice,
            client_as(server, BOB, mode, message_handler=bob_hears) as bob,
        ):
            jobs = await alice_jobs(alice)
            async with (
                subscribed_to(bob, job_uri(jobs.running)) as theirs,
                subscribed_to(bob, job_uri(UNKNOWN_ID)) as unknown,
                subscribed_to(alice, job_uri(jobs.running)),
            ):
                assert theirs == unknown  # answered as for an unknown job
                await alice.call_tool("cancel-job", {"jobId": jobs.running})
                with anyio.fail_after(20):
                    await alice_hears.next_update(job_uri(jobs.running))  # the change went out to its owner
                # bob's own job, followed to its end: a window in which any update about alice's would have come
                mine = await start(bob, "sleepy", {"seconds": 0.4, "steps": 2})
                async with subscribed_to(bob, job_uri(mine)):
                    with anyio.fail_after(20):
                        await bob_hears.next_update(job_uri(mine))
                    await wait_status(bob, mine, ("completed",))
            assert bob_hears.counts[job_uri(jobs.running)] == 0


@asynccontextmanager
async def subscribed_to_all(client: Client, uris: list[str]) -> AsyncIterator[None]:
    """Subscribe to `uris` on one ordered stream: one listen stream (2026-07-28), or the session's (legacy)."""
    if client.protocol_version != LEGACY_VERSION:
        async with client.listen(resource_subscriptions=uris):
            yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        for uri in uris:
            await client.subscribe_resource(uri)
    yield


@pytest.mark.parametrize("mode", MODES)
async def test_a_recent_jobs_subscriber_hears_only_of_the_jobs_it_sees(tmp_path: Path, mode: str) -> None:
    """`jobs://recent` is a different list for each principal: an update goes only to a subscriber that sees a job
    that changed."""
    with serve(tmp_path) as server:
        await recent_updates_kept_apart(server, server, mode)


async def test_recent_jobs_updates_follow_jobs_made_on_another_replica(tmp_path: Path) -> None:
    """On PostgreSQL a job made and run on another replica reaches this one as a change without its principal: it
    is read to tell who may hear of it (replica a runs no job)."""
    store = with_new_schema(postgres_url("identity tests on PostgreSQL"), "vj_identity")
    with serve(tmp_path, "streamable-http", store, "--no-worker") as a, serve(tmp_path, store=store) as b:
        await recent_updates_kept_apart(a, b, "legacy")


async def recent_updates_kept_apart(bobs: HttpServer, alices: HttpServer, mode: str) -> None:
    """Alice's new job tells her list's subscribers, not bob. Bob's updates of his own job and of the list share
    one ordered stream, so an update about alice's job, sent as she heard hers, reaches him before the one about
    his own job's end."""
    bob_hears, alice_hears = Watcher(), Watcher()
    with bob_hears.send, bob_hears.recv, alice_hears.send, alice_hears.recv:
        async with (
            client_as(alices, ALICE, mode, message_handler=alice_hears) as alice,
            client_as(bobs, BOB, mode, message_handler=bob_hears) as bob,
            client_as(bobs, ALICE, mode, message_handler=alice_hears) as alice_by_bob,
        ):
            his = await start(bob, "wait_forever", {})
            await wait_status(bob, his, ("running",))
            async with (
                subscribed_to_all(bob, ["jobs://recent", job_uri(his)]),
                subscribed_to_all(alice_by_bob, ["jobs://recent"]),
            ):
                await start(alice, "noop", {})
                with anyio.fail_after(20):
                    await alice_hears.next_update("jobs://recent")  # her list changed: told her, and only her
                await bob.call_tool("cancel-job", {"jobId": his})
                with anyio.fail_after(20):
                    await bob_hears.next_update(job_uri(his))
                assert bob_hears.counts["jobs://recent"] == 0, bob_hears.counts
                with anyio.fail_after(20):
                    await bob_hears.next_update("jobs://recent")  # his own job's end changed his list


# -- tasks ---------------------------------------------------------------------------------------


async def test_tasks_of_another_principal_answer_as_unknown(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        async with (
            client_as(server, ALICE, "auto", extensions=[TasksClientExtension()]) as alice,
            client_as(server, BOB, "auto", extensions=[TasksClientExtension()]) as bob,
        ):
            handle = await alice.session.call_tool("wait_forever", {}, allow_claimed=True)
            task_id = str(getattr(handle, "task_id", "") or getattr(handle, "taskId", ""))
            assert task_id, handle
            calls: list[tuple[str, dict[str, Any]]] = [
                ("tasks/get", {}), ("tasks/cancel", {}), ("tasks/update", {"input_responses": {}}),
            ]  # fmt: skip
            for method, extra in calls:
                errors = []
                for target in (task_id, UNKNOWN_ID):
                    with pytest.raises(MCPError) as info:
                        await send(bob, method, task_id=target, **extra)  # type: ignore[arg-type]
                    errors.append(anonymised([info.value.error.code, info.value.error.message], target))
                assert errors[0] == errors[1], (method, errors)
            assert (await send(alice, "tasks/get", task_id=task_id))["status"] == "working"


# -- two replicas on one PostgreSQL schema -------------------------------------------------------


@pytest.mark.postgres
async def test_two_replicas_on_postgres_keep_principals_apart(tmp_path: Path) -> None:
    store = with_new_schema(postgres_url("identity tests on PostgreSQL"), "vj_identity")
    with serve(tmp_path, store=store) as a, serve(tmp_path, store=store) as b:
        async with client_as(a, ALICE) as alice, client_as(b, BOB) as bob, client_as(b, ROOT) as root:
            jobs = await alice_jobs(alice)  # created and running on replica a
            await assert_bob_cannot_reach(bob, jobs)  # asked on replica b
            assert await listed(root) >= {jobs.running, jobs.done}
            assert structured(await root.call_tool("cancel-job", {"jobId": jobs.running}))["status"] == "cancelled"


# -- quotas --------------------------------------------------------------------------------------


async def test_pending_and_running_quotas_refuse_with_the_limit_named(tmp_path: Path) -> None:
    env = {"VIBE_JOBS_QUOTA_PENDING": "1", "VIBE_JOBS_QUOTA_RUNNING": "1", "JOB_MANAGER_MAX_CONCURRENT": "1"}
    with serve(tmp_path, **env) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob:
            running = await start(alice, "wait_forever", {})
            await wait_status(alice, running, ("running",))
            refused = await alice.call_tool("noop", {})
            assert refused.is_error and "VIBE_JOBS_QUOTA_RUNNING" in texts(refused), texts(refused)
            assert structured(refused)["error"]["code"] == "quota_exceeded"
            assert await listed(alice) == {running}  # nothing half-created
            bob_running = await start(bob, "wait_forever", {})  # another principal's quota is its own
            await alice.call_tool("cancel-job", {"jobId": running})
            await wait_status(bob, bob_running, ("running",))
            pending = await start(alice, "noop", {})  # one slot, bob's: it waits
            refused = await alice.call_tool("echo", {"text": "x"})
            assert refused.is_error and "VIBE_JOBS_QUOTA_PENDING" in texts(refused), texts(refused)
            assert await listed(alice) == {running, pending}


async def test_params_bytes_quota_counts_the_principals_active_jobs(tmp_path: Path) -> None:
    with serve(tmp_path, VIBE_JOBS_QUOTA_PARAMS_BYTES="2000", JOB_MANAGER_MAX_CONCURRENT="1") as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob:
            blocker = await start(bob, "wait_forever", {})
            await wait_status(bob, blocker, ("running",))
            first = await start(alice, "echo", {"text": "a" * 1200})
            refused = await alice.call_tool("echo", {"text": "b" * 1200})
            assert refused.is_error and "VIBE_JOBS_QUOTA_PARAMS_BYTES" in texts(refused), texts(refused)
            assert await listed(alice) == {first}
            assert not (await bob.call_tool("echo", {"text": "c" * 1200})).is_error


# -- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_secret_arguments_are_redacted_in_lists_and_resources(tmp_path: Path, mode: str) -> None:
    secret, env_secret = "sk-live-abcdef0123456789", "hunter2-env-value"
    with serve(tmp_path) as server:
        async with client_as(server, ALICE, mode) as alice:
            job_id = await start(alice, "login", {"user": "al", "api_token": secret, "env": {"DB_PASS": env_secret}})
            done = await wait_status(alice, job_id, ("completed",))
            received = json.dumps(done["result"])  # the tool itself got the real values
            assert secret in received and env_secret in received
            listing = structured(await alice.call_tool("list-jobs", {}))["jobs"][0]
            assert listing["params"] == {"user": "al", "api_token": "***", "env": {"DB_PASS": "***"}}
            recent_text = getattr((await alice.read_resource("jobs://recent")).contents[0], "text", "")
            status = {k: v for k, v in (await read_job(alice, job_id)).items() if k != "result"}  # the tool's own
            shown = json.dumps(listing) + recent_text + json.dumps(status)
            assert secret not in shown and env_secret not in shown
        server.errlog.seek(0)
        assert secret.encode() not in server.errlog.read()


# -- binding -------------------------------------------------------------------------------------


def test_binding_beyond_loopback_without_auth_is_refused() -> None:
    cmd = [*SERVER, "--transport", "streamable-http", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **BASE_ENV}, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0
    assert b"--auth-tokens" in done.stderr and b"--allow-unauthenticated" in done.stderr, done.stderr
    assert done.stdout == b""


async def test_allow_unauthenticated_keeps_the_host_checks_and_allowed_hosts_pass() -> None:
    args = ["--host", "0.0.0.0", "--allow-unauthenticated", "--allowed-hosts", "jobs.example"]
    with start_http("streamable-http", args=args) as server:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient(timeout=10) as http:
            evil = await http.post(server.url, json=body, headers={**accept, "Host": "evil.example"})
            assert evil.status_code == 421, evil.text
            origin = await http.post(server.url, json=body, headers={**accept, "Origin": "http://evil.example"})
            assert origin.status_code == 403, origin.text
            named = await http.post(server.url, json=body, headers={**accept, "Host": f"jobs.example:{server.port}"})
            assert named.status_code not in (421, 403), named.text


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_every_route_answers_only_under_the_servers_host_names(transport: str) -> None:
    """Only /mcp and /sse checked Host: a page rebound to 127.0.0.1 read the dashboard and its events, and
    cancelled jobs with the CSRF token read from a job page."""
    with start_http(transport) as server:
        base = f"http://127.0.0.1:{server.port}"
        rebound = {"Host": f"evil.example:{server.port}"}
        async with httpx2.AsyncClient(base_url=base, timeout=10) as http:
            for path in ("/", "/jobs/" + "0" * 32, "/events"):
                assert (await http.get(path, headers=rebound)).status_code == 421, path
            post = await http.post("/jobs/" + "0" * 32 + "/cancel", data={"csrf": "x"}, headers=rebound)
            assert post.status_code == 421
            assert (await http.get("/", headers={"Origin": "http://evil.example"})).status_code == 403
            for probe in ("/healthz", "/readyz", "/health", "/metrics"):  # figures, no job data; by any address
                assert (await http.get(probe, headers=rebound)).status_code == 200, probe
            assert (await http.get("/")).status_code == 200
            assert (await http.get("/", headers={"Host": f"localhost:{server.port}"})).status_code == 200


# -- finding 10: the PostgreSQL password never reaches the logs -----------------------------------


@pytest.mark.postgres
def test_the_postgres_password_is_not_logged(tmp_path: Path) -> None:
    base = postgres_url("the PostgreSQL log test")
    password = "pw-" + os.urandom(6).hex()
    store = re.sub(r"^(postgres(?:ql)?://)([^@/:]+)(?::[^@/]*)?@", rf"\g<1>\g<2>:{password}@", base)
    assert password in store, "the test URL must carry a user to put a password beside"
    with start_http(
        "streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}, ["--store", with_new_schema(store, "vj_pw")]
    ) as s:
        s.errlog.seek(0)
        logged = s.errlog.read().decode()
    assert "server.started" in logged, logged
    assert password not in logged and "***" in logged, logged


def test_a_bearer_token_in_a_refused_header_is_not_logged(tmp_path: Path) -> None:
    """The SDK logs a refused Host or Origin header with its value ("Invalid Host header: ..."). A header line
    folded onto Host (obs-fold, a line that starts with a space: the HTTP parser joins it to the one before)
    put a client's `Authorization: Bearer <token>` into that warning, in clear (helper-106)."""
    with serve(tmp_path, VIBE_JOBS_LOG_LEVEL="info") as server:
        for folded in (
            b"Host: 127.0.0.1\r\n Authorization: Bearer " + ALICE.encode(),
            b"Host: 127.0.0.1\r\nOrigin: Bearer " + BOB.encode(),
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as http:
                http.sendall(b"GET /mcp HTTP/1.1\r\n" + folded + b"\r\nConnection: close\r\n\r\n")
                assert http.recv(100).split(b" ")[1] in (b"400", b"401", b"403", b"421")
        server.errlog.seek(0)
        logged = server.errlog.read().decode()
    assert "Invalid Host header" in logged and "Invalid Origin header" in logged and "Bearer ***" in logged, logged
    assert ALICE not in logged and BOB not in logged, logged


async def test_one_argument_shaped_against_url_redaction_does_not_freeze_the_server(tmp_path: Path) -> None:
    """list-jobs shows arguments through URL redaction: 200 KB of `http://x` in one argument (within the default
    1 MiB of params) took the quadratic regular expressions about 15 s on the event loop, in each list-jobs,
    `jobs://recent` or dashboard page, and every other principal's calls waited (helper-106)."""
    with serve(tmp_path, VIBE_JOBS_MAX_PARAMS_BYTES=str(1 << 20)) as server:
        async with client_as(server, BOB) as bob, client_as(server, ALICE) as alice:
            assert not (await bob.call_tool("echo", {"text": "http://x" * 25_000 + " ?="})).is_error
            waited: list[float] = []

            async def alice_calls() -> None:
                started = anyio.current_time()
                assert not (await alice.call_tool("plain-noop", {})).is_error
                waited.append(anyio.current_time() - started)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(bob.call_tool, "list-jobs", {})
                    tg.start_soon(alice_calls)
    assert waited[0] < 5.0, waited


async def test_a_token_sent_in_the_url_query_is_not_logged(tmp_path: Path) -> None:
    """RFC 6750 lets a client send its bearer token as `?access_token=` (and a browser's EventSource sends no
    header, so a page that wants /events may try that): refused, and written in clear into the access log line
    on stderr (the log kept secret-named query parameters only of URLs with a scheme)."""
    with serve(tmp_path, VIBE_JOBS_LOG_LEVEL="info") as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx2.AsyncClient(timeout=10) as http:
            for path in ("/mcp", "/events", "/", "/metrics"):
                answer = await http.get(f"{base}{path}?access_token={ALICE}&status=running")
                assert answer.status_code in (200, 401), (path, answer.status_code)
        server.errlog.seek(0)
        logged = server.errlog.read().decode()
    assert "/events?access_token=***" in logged, logged
    assert ALICE not in logged, logged


@pytest.mark.postgres
def test_a_postgres_password_in_the_query_is_not_logged_or_printed() -> None:
    """`?password=` opened the store and was logged in clear (only `user:pw@` was masked)."""
    password = "pw-" + os.urandom(6).hex()
    base = postgres_url("the PostgreSQL query password test")
    store = with_new_schema(f"{base}{'&' if '?' in base else '?'}password={password}", "vj_qpw")
    with start_http("streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}, ["--store", store]) as s:
        s.errlog.seek(0)
        logged = s.errlog.read().decode()
    assert "server.started" in logged and "password=***" in logged, logged
    assert password not in logged, logged
    assert '"authenticated": false' in logged or "authenticated=False" in logged, "a yes or no is no secret"
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test?password={password}"
    health = [*SERVER[:3], "health", "--store", closed, "--timeout", "3"]
    done = subprocess.run(health, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "not ready" in done.stderr, done.stderr
    assert password not in done.stderr + done.stdout, done.stderr


# -- the command-line client -------------------------------------------------------------------


def run_call(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`vibe-jobs call` as a user runs it, with `env` as its whole environment."""
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_vibe_jobs_call_sends_its_token(tmp_path: Path, transport: str) -> None:
    with serve(tmp_path, transport) as server:
        base = [*SERVER[:3], "call", "echo", "--arg", "text=hi", "--url", server.url, "--output", "json"]
        env = {**os.environ, **BASE_ENV}
        env.pop("VIBE_JOBS_TOKEN", None)
        refused = run_call(base, env)
        assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout, refused
        done = run_call(base, {**env, "VIBE_JOBS_TOKEN": ALICE})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "completed"


def test_vibe_jobs_call_takes_a_token_as_a_shell_leaves_it_and_never_shows_one_it_cannot_send(tmp_path: Path) -> None:
    """A token with a trailing space or newline (pasted, read from a file) failed the call with
    `LocalProtocolError: Illegal header value b'Bearer <the token>'`: the secret on stderr, and neither the variable
    nor the flag named (review helper-111). Around it, whitespace is dropped, as every setting's is; a token that
    still holds a space or a control character is refused naming where it came from, never its value."""
    with serve(tmp_path) as server:
        base = [*SERVER[:3], "call", "echo", "--arg", "text=hi", "--url", server.url, "--output", "json"]
        env = {**os.environ, **BASE_ENV}
        for padded in (f"{ALICE} ", f" {ALICE}\n"):
            done = run_call(base, {**env, "VIBE_JOBS_TOKEN": padded})
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["status"] == "completed"
        for given, named in (({"VIBE_JOBS_TOKEN": f"{ALICE} x"}, []), ({}, ["--token", f"{ALICE}\x01"])):
            done = run_call([*base, *named], {**env, **given})
            said = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(said) == 1, done.stderr
            assert ("--token" if named else "VIBE_JOBS_TOKEN") in said[0] and ALICE not in done.stderr, done.stderr


# -- the dashboard beside /mcp -------------------------------------------------------------------


async def test_with_auth_on_the_dashboard_needs_an_admin_token(tmp_path: Path) -> None:
    """The dashboard shows and cancels every job: with authentication on, only scope `admin` may use it."""
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice:
            job_id = await start(alice, "wait_forever", {})
            await wait_status(alice, job_id, ("running",))
            base = f"http://127.0.0.1:{server.port}"
            async with httpx2.AsyncClient(timeout=10, base_url=base) as http:
                # no token or a wrong one: 401; alice's (valid, without scope admin): 403 naming the scope
                for token, code in ((None, 401), ("wrong-token-0123456789abcdef", 401), (ALICE, 403)):
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    for path in ("/", f"/jobs/{job_id}", "/events"):
                        response = await http.get(path, headers=headers)
                        assert response.status_code == code, (token, path, response.status_code)
                        assert job_id not in response.text
                    cancel = await http.post(
                        f"/jobs/{job_id}/cancel", headers={**headers, "Origin": base}, data={"csrf": "x"}
                    )
                    assert cancel.status_code == code, (token, cancel.status_code)
                alice_page = await http.get("/", headers={"Authorization": f"Bearer {ALICE}"})
                assert "scope `admin`" in alice_page.text
                admin = await http.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {ROOT}"})
                assert admin.status_code == 200 and job_id in admin.text
            assert (await read_job(alice, job_id))["status"] == "running"


async def test_a_retry_from_the_dashboard_belongs_to_the_failed_jobs_principal(tmp_path: Path) -> None:
    """The admin's retry made a job of the `local` principal: alice could not see her own job's retry."""
    with serve(tmp_path) as server:
        async with client_as(server, ALICE) as alice, client_as(server, BOB) as bob:
            failed = await start(alice, "explode", {"message": "boom"})
            await wait_status(alice, failed, ("failed",))
            base = f"http://127.0.0.1:{server.port}"
            admin = {"Authorization": f"Bearer {ROOT}"}
            async with httpx2.AsyncClient(timeout=10, base_url=base, headers=admin) as http:
                page = await http.get(f"/jobs/{failed}")
                csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
                assert page.status_code == 200 and csrf is not None
                retry = await http.post(f"/jobs/{failed}/retry", data={"csrf": csrf[1]}, headers={"Origin": base})
                assert retry.status_code == 303, retry.text
                new_id = retry.headers["location"].rsplit("/", 1)[1]
            again = await wait_status(alice, new_id, ("failed",))
            assert again["toolName"] == "explode"
            assert new_id in {job["id"] for job in structured(await alice.call_tool("list-jobs", {}))["jobs"]}
            hidden = await bob.call_tool("get-job-result", {"jobId": new_id})
            assert structured(hidden)["error"]["code"] == "job_not_found"


# -- the server's own log is the operator's ---------------------------------------------------------


async def explode_logged(server: HttpServer, client: Client, message: str) -> bool:
    """Run a job that raises `message`: whether its warning (`job.raised`, with the traceback) reached the log."""
    job_id = structured(await client.call_tool("explode", {"message": message}))["jobId"]
    assert (await wait_status(client, job_id, ("failed",)))["status"] == "failed"
    server.errlog.seek(0)
    return message in server.errlog.read().decode()


async def test_only_an_admin_sets_the_servers_log_level(tmp_path: Path) -> None:
    """logging/setLevel set the whole process's log: bob (no admin) sent `critical`, and every warning (a failed
    job's traceback, a slow client cut off) went unwritten, for every principal. Review helper-53."""
    with serve(tmp_path, VIBE_JOBS_LOG_LEVEL="info") as server:
        async with client_as(server, BOB) as bob, client_as(server, ALICE) as alice, client_as(server, ROOT) as root:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the SDK marks the client helper deprecated
                await bob.set_logging_level("critical")  # answered, as the protocol asks
            assert await explode_logged(server, alice, "after bob's setLevel")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await root.set_logging_level("critical")
            assert not await explode_logged(server, alice, "after root's setLevel")
