"""`vibe-jobs proxy` in front of a hostile upstream (tests/e2e/hostile_upstream.py), driven by the real MCP client:
what the upstream lists, and when, costs the proxy neither its memory, its start, its running jobs nor its event
loop (review helper-54)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import ResourceTemplateReference

from tests.e2e.conftest import BASE_ENV, MODES, ROOT, free_port, wait_for_port
from tests.e2e.hostile_upstream import BAD_NAMES, BAD_SHAPES, POSING
from tests.e2e.proxy_fixtures import FINAL, proxy_args, started, status, texts, until
from tests.e2e.test_hostile_input import drop_schema
from tests.pg import postgres_url, with_new_schema

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HOSTILE = [sys.executable, str(ROOT / "tests" / "e2e" / "hostile_upstream.py")]


@asynccontextmanager
async def proxied(
    *flags: str, store: str = "memory://", options: tuple[str, ...] = (), mode: str = "legacy", **callbacks: Any
) -> AsyncIterator[tuple[Client, Any]]:
    """The real client (`mode`) on a proxy (stdio, memory store unless `store`, `options`) in front of the hostile
    upstream run with `flags`; and the proxy's log (stderr)."""
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV, "VIBE_JOBS_LOG_LEVEL": "info"}
    args = proxy_args([*HOSTILE, *flags], None, "--store", store, *options)
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, **callbacks) as client:
            yield client, errlog


def logged(errlog: Any) -> str:
    errlog.seek(0)
    return str(errlog.read())


async def completed(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> list[str]:
    msg = await until(client, started(await client.call_tool(tool, arguments or {})), ("completed", "failed"))
    assert msg["status"] == "completed", msg
    return texts(msg["result"])


async def test_an_upstream_that_lists_page_after_page_for_ever_is_read_within_bounds() -> None:
    """It kept the proxy reading for ever (its memory growing 50 MB a second): the start, each tools/list_changed,
    and each client's resources/list, which never answered."""
    async with proxied("--tools-forever", "--resources-forever") as (client, errlog):
        assert "ok" in {tool.name for tool in (await client.list_tools()).tools}
        assert await completed(client, "ok") == ["ok done"]
        with anyio.fail_after(30):
            resources = (await client.list_resources()).resources
        assert 1 <= len(resources) <= 10_000
        assert "proxy.upstream_listing_cut" in logged(errlog)


@pytest.mark.parametrize("relist", ["error", "forever"])
async def test_a_tool_list_that_fails_after_a_change_keeps_the_upstream_and_its_running_job(relist: str) -> None:
    """An error answer to the re-listing ended a live upstream's connection: it was restarted, and its running
    jobs failed as "interrupted: upstream exited"."""
    async with proxied("--relist", relist) as (client, errlog):
        slow = started(await client.call_tool("slow", {}))
        assert await completed(client, "change") == ["change done"]
        msg = await until(client, slow, ("completed", "failed"))
        assert msg["status"] == "completed", msg
        assert await completed(client, "ok") == ["ok done"]  # the same upstream, serving on
        log = logged(errlog)
        assert "proxy.upstream_exited" not in log, log
        if relist == "error":
            assert "proxy.upstream_tools_unlisted" in log and "tools unavailable for now" in log, log


async def test_schemas_the_validator_cannot_take_cost_neither_the_start_nor_the_upstream() -> None:
    """A schema nested 150 deep raised RecursionError out of the proxy's start (it exited); added at run time, it
    restarted the upstream for ever. A `$ref` loop failed each call with "Error executing tool"."""
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
            changed.set()

    async with proxied(message_handler=on_message) as (client, errlog):
        assert await completed(client, "deep", {"x": {}}) == ["deep done"]  # the object's shape is checked
        loop = await client.call_tool("loop", {"v": 1})
        assert loop.is_error and "cannot be checked against the upstream's schema" in " ".join(texts(loop))
        assert await completed(client, "change") == ["change done"]
        with anyio.fail_after(20):
            await changed.wait()
        assert "late" in {tool.name for tool in (await client.list_tools()).tools}
        assert await completed(client, "late", {"x": {}}) == ["late done"]
        assert "proxy.upstream_exited" not in logged(errlog)


async def test_a_pattern_that_backtracks_does_not_hold_the_proxy() -> None:
    """`^(a+)+$` held the event loop 7 s on 28 characters, every client waiting; 40 took hours. The pattern is
    the upstream's to check."""
    async with proxied() as (client, _):
        with anyio.fail_after(10):
            job_id = started(await client.call_tool("pat", {"name": "a" * 40 + "!"}))
        msg = await until(client, job_id, ("completed", "failed"))
    assert msg["status"] == "completed", msg


@pytest.fixture
def http_upstream() -> Iterator[str]:
    """The URL of tests/e2e/hostile_http_upstream.py, listening."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "tests" / "e2e" / "hostile_http_upstream.py"), str(port)])
    try:
        wait_for_port(port, upstream)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        upstream.kill()
        upstream.wait()


@asynccontextmanager
async def over_http(http_upstream: str, mode: str) -> AsyncIterator[Client]:
    """The real client (`mode`) on a proxy (stdio, memory store) in front of the hostile HTTP upstream."""
    env = {"PATH": os.environ.get("PATH", ""), **BASE_ENV}
    args = ["-m", "vibe_jobs", "proxy", "--store", "memory://", "--upstream-url", http_upstream]
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    async with Client(stdio_client(params), mode=mode, read_timeout_seconds=60) as client:
        yield client


async def failure(client: Client, tool: str) -> str:
    """The text of the failed job a call of `tool` started."""
    msg = await until(client, started(await client.call_tool(tool, {})), ("completed", "failed"))
    assert msg["status"] == "failed", str(msg)[:300]
    return str(texts(msg["result"])[0])


@pytest.mark.parametrize("tool", ["big", "big_stream", "big_gzip"])
async def test_an_http_upstream_s_answer_is_held_to_the_size_a_stdio_one_is(http_upstream: str, tool: str) -> None:
    """The SDK's HTTP client read a JSON answer whole: a 300 MB one took the proxy to 1.2 GB, a larger one would
    end it and every job with it. An answer over the stdio wire's limit (64 MiB) fails its call naming the limit,
    declared (`Content-Length`) or not (read as it streams), and as decoded (a gzip answer of 65 KiB is 65 MiB
    once decoded: it passed a limit held to the bytes on the wire); the upstream serves the next call."""
    async with over_http(http_upstream, "legacy") as client:
        assert "over the proxy's limit of 67,108,864" in await failure(client, tool)
        assert await completed(client, "ok") == ["ok done"]


async def test_an_http_upstream_s_answer_of_many_small_values_fails_its_call_as_a_stdio_one_does(
    http_upstream: str,
) -> None:
    """A JSON answer of 400,000 empty text blocks (10 MB) took the proxy to 800 MB, as over stdio: it fails its call
    at the limit of JSON values a stdio answer is held to (review helper-150); the upstream serves the next call."""
    async with over_http(http_upstream, "legacy") as client:
        with anyio.fail_after(20):
            assert "JSON values or more, over the proxy's limit of 1,000,000" in await failure(client, "swarm")
        assert await completed(client, "ok") == ["ok done"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_upstream_answering_a_post_under_another_id_fails_that_call(
    http_upstream: str, mode: str
) -> None:
    """A POST's JSON body answers that POST's request: the SDK passed an answer under another id on as it was, no
    call took it, and the job waited for its time-out (an hour by default). On an event stream the SDK gives the
    answer the request's id; here the call fails, naming both ids (it is the upstream's fault, and its answer may
    be another call's)."""
    async with over_http(http_upstream, mode) as client:
        assert "answered this request under another id" in await failure(client, "misaddressed")
        assert await completed(client, "ok") == ["ok done"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_upstream_s_error_status_keeps_its_own_reason(http_upstream: str, mode: str) -> None:
    """An error status's JSON-RPC error is the SDK's to re-address (it gives it the request's id: the Python SDK 1.x
    writes its transport's errors under the id "server-error"); the check of a POST's answer id took it for an
    answer under another id and replaced the upstream's reason with that."""
    async with over_http(http_upstream, mode) as client:
        said = await failure(client, "refused")
        assert "the upstream's own reason" in said and "another id" not in said, said


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_upstream_s_error_under_id_null_fails_that_call_with_its_reason(
    http_upstream: str, mode: str
) -> None:
    """A JSON-RPC error under the id null (a server that could not read the request's id) in a POST's JSON answer
    at HTTP 200: the SDK passed it on as it was, no call took it, and the job waited for its time-out (an hour by
    default). At an error status the SDK gives such an error the request's id; so it is here, reason kept."""
    async with over_http(http_upstream, mode) as client:
        said = await failure(client, "null_id")
        assert "the upstream's own reason" in said, said
        assert await completed(client, "ok") == ["ok done"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_upstream_that_forgot_the_session_is_connected_again(http_upstream: str, mode: str) -> None:
    """An HTTP 404 to a request with a session id says the session is gone (a restarted server): the client starts
    a new one, says the spec. The Python SDK's server answers it with a JSON-RPC error ("Session not found"), which
    the SDK's client passes on as that error: not taken for a lost session, every later call failed the same way."""
    async with over_http(http_upstream, mode) as client:
        assert await completed(client, "forget") == ["forgotten"]
        said = await failure(client, "ok")
        assert "interrupted: upstream" in said, said
        assert await completed(client, "ok") == ["ok done"]


def test_an_upstream_url_s_credentials_stay_out_of_the_proxy_s_errors() -> None:
    """`--upstream-url https://user:pw@host/mcp?token=...`: the start failure printed them whole; tool descriptions,
    diagnostics and log lines carried them too (the upstream's label)."""
    url = f"http://alice:hunter2-pw@127.0.0.1:{free_port()}/mcp?token=SECRET-TOKEN-123"
    command = [sys.executable, "-m", "vibe_jobs", "proxy", "--store", "memory://", "--upstream-url", url]
    env = {**os.environ, **BASE_ENV, "VIBE_JOBS_PROXY_START_TIMEOUT_SECONDS": "5"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, input="")
    assert done.returncode != 0 and "127.0.0.1" in done.stderr, done.stderr
    assert "hunter2-pw" not in done.stderr + done.stdout and "SECRET-TOKEN-123" not in done.stderr, done.stderr


@pytest.mark.postgres
async def test_tool_names_nobody_can_name_are_not_served_and_the_other_tools_run() -> None:
    """A tool named with a NUL became a job tool: the worker offers its tools on its PostgreSQL lease, whose
    TEXT[] cannot hold a NUL, so every round of it failed and no job of any tool ran again (review helper-93).
    An empty name, one longer than a caller may send (list-jobs' toolName) and one with a newline were listed."""
    base = postgres_url("the proxy's tool names on PostgreSQL")
    url = with_new_schema(base, "vj_proxy_names")
    try:
        async with proxied("--bad-names", store=url) as (client, errlog):
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert "ok" in listed and not listed & set(BAD_NAMES), sorted(listed, key=len)[-1][:50]
            assert await completed(client, "ok") == ["ok done"]
            log = logged(errlog)
            assert log.count("proxy.tool_name_unusable") == len(BAD_NAMES), log[-3000:]
            assert "worker.round_failed" not in log, log[-3000:]
    finally:
        await drop_schema(base, url)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_the_sdk_cannot_take_are_left_out_and_the_others_are_served(mode: str) -> None:
    """One tool the SDK's client refuses (a schema that is no object, an icon's `sizes` written as one text, as
    drafts had it) made the whole tools/list fail: the proxy did not start, and every tool of that upstream was
    lost. Each such tool is left out and named in the log; the rest are served."""
    async with proxied("--bad-shapes", mode=mode) as (client, errlog):
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert {"ok", "slow", "redos"} <= listed, listed
        assert not listed & {"text_schema", "old_icon", "odd_hint", "42"}, listed
        assert await completed(client, "ok") == ["ok done"]
        log = logged(errlog)
        assert log.count("proxy.tool_unusable") == len(BAD_SHAPES), log[-3000:]
        for name in ("text_schema", "old_icon", "odd_hint", "42"):
            assert name in log, log[-3000:]


async def test_an_output_pattern_that_backtracks_does_not_hold_the_proxy() -> None:
    """The SDK's client checks a result's structured content against the tool's output schema, `pattern` too:
    the upstream's `^(a+)+$` on its own 33 characters held the proxy's event loop for hours, every client and
    every job with it. The pattern is the upstream's to check, as an input schema's is (review helper-93)."""
    async with proxied() as (client, _):
        job_id = started(await client.call_tool("redos", {}))
        with anyio.fail_after(10):
            msg = await until(client, job_id, ("completed", "failed"))
            assert await completed(client, "ok") == ["ok done"]
    assert msg["status"] == "completed" and msg["result"]["structuredContent"] == {"s": "a" * 32 + "!"}, msg


async def test_progress_messages_of_a_megabyte_keep_the_stage_history_small(tmp_path: Path) -> None:
    """Each upstream progress message is the job's stage; the stage was cut for the record, but its history
    kept each stage whole: 60 stages of 1 MB wrote 16 MB into the record at every step (32 MB of SQLite, 48 s
    for a 1 s job, each read of it waiting seconds) (review helper-93)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with proxied(store=url) as (client, _):
        job_id = started(await client.call_tool("stages", {}))
        msg = await until(client, job_id, ("completed", "failed"), seconds=30)
    assert msg["status"] == "completed" and len(msg["details"]["currentStage"]) <= 2_000, msg["status"]
    stages = await stage_history(url, job_id)
    assert 1 <= len(stages) <= 50 and all(len(entry["stage"]) <= 2_000 for entry in stages), len(stages)


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_flood_of_progress_is_written_in_order_and_does_not_hold_its_job(store: str, tmp_path: Path) -> None:
    """The SDK runs each progress callback as a task of its own: 5,000 notifications at once were 5,000 writes of
    one record racing each other, landing out of order (the history went 296, 257, 258...: a client saw its job
    go back) and, on PostgreSQL, keeping the job from its result for minutes (review helper-93)."""
    base = postgres_url("a progress flood on PostgreSQL") if store == "postgres" else ""
    url = with_new_schema(base, "vj_proxy_flood") if base else f"sqlite:///{tmp_path / 'jobs.db'}"
    try:
        async with proxied(store=url) as (client, _):
            job_id = started(await client.call_tool("flood", {}))
            msg = await until(client, job_id, ("completed", "failed"), seconds=30)
        assert msg["status"] == "completed", msg
        steps = [int(entry["stage"].split()[1]) for entry in await stage_history(url, job_id)]
        assert steps and steps == sorted(set(steps)), steps
    finally:
        if base:
            await drop_schema(base, url)


async def stage_history(url: str, job_id: str) -> list[dict[str, Any]]:
    """The job's stage history, as its store holds it."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            (history,) = db.execute("SELECT stage_history FROM jobs WHERE id = ?", (job_id,)).fetchone()
    else:
        import asyncpg

        base, _, schema = url.rpartition("?schema=")
        pg = await asyncpg.connect(base)
        try:
            history = await pg.fetchval(f"SELECT stage_history FROM {schema}.jobs WHERE id = $1", job_id)
        finally:
            await pg.close()
    return list(json.loads(history))


async def test_an_upstream_cannot_take_over_the_proxys_own_resources() -> None:
    """An upstream that listed `jobs://recent` (or a `job://` URI) was read in the proxy's place once a client had
    listed resources: a forged list of jobs. A `job://` URI the proxy refused (a job not found, or another
    principal's) was asked of each upstream in turn, which could answer it, and learnt the id (review
    helper-93)."""
    async with proxied("--own-uris") as (client, errlog):
        listed = {str(r.uri): r.name for r in (await client.list_resources()).resources}
        assert listed["jobs://recent"] != "forged" and f"job://{'0' * 32}" not in listed, listed
        recent = await client.read_resource("jobs://recent")
        assert "forged" not in str(recent.contents), recent
        job_id = started(await client.call_tool("ok", {}))
        assert "forged" not in str((await client.read_resource(f"job://{job_id}")).contents)
        with pytest.raises(MCPError) as refused:
            await client.read_resource(f"job://{'0' * 32}")
        assert "forged" not in str(refused.value)
        assert "proxy.resource_uri_taken" in logged(errlog)


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_the_sdk_cannot_take_is_named_to_a_direct_tools_caller(mode: str) -> None:
    """A job's failure named it (`ValidationError: ... content.0 ...`); a direct tool's caller got the SDK's bare
    "Error executing tool bogus", the reason kept on the proxy's side (review helper-93)."""
    async with proxied(options=("--direct", "bogus"), mode=mode) as (client, _):
        direct = await client.call_tool("bogus", {})
    said = " ".join(texts(direct))
    assert direct.is_error and "upstream" in said and "ValidationError" in said and "bogus" in said, said
    assert direct.structured_content is not None and direct.structured_content["error"]["code"] == "upstream_result"


async def test_a_schema_whose_checks_double_at_each_reference_does_not_hold_the_proxy() -> None:
    """An input schema of 61 `$defs`, each naming the next twice under `allOf`, has the validator check an argument
    2^60 times: the first call held the proxy's event loop for good (every client and job with it; 16 levels took
    2.4 s). So did an output schema of that shape on the upstream's own result. The checks are held to a cost
    (review helper-150): the call is refused naming the problem, the result fails its job, the proxy serves on."""
    async with proxied() as (client, _):
        with anyio.fail_after(15):
            refused = await client.call_tool("doubling", {"v": "x"})
            assert refused.is_error, refused
            assert "cannot be checked against the upstream's schema" in " ".join(texts(refused)), refused
            msg = await until(client, started(await client.call_tool("doubled", {})), ("completed", "failed"))
            assert msg["status"] == "failed" and "output schema" in " ".join(texts(msg["result"])), msg
            assert await completed(client, "ok") == ["ok done"]


async def test_an_enum_of_many_values_and_unique_items_cost_a_look_up_not_a_comparison_with_each() -> None:
    """jsonschema compared an argument with each value of its `enum` (an upstream's of 200,000: 1,000 arguments held
    the proxy's event loop about a minute), and each item of a `uniqueItems` array with every other (the upstream's
    own result of 20,000 objects: a quarter of an hour), every client and job waiting. Both are set look-ups now
    (review helper-150): the checks pass at once, a value not listed is still refused, naming it."""
    async with proxied("--costly") as (client, _):
        with anyio.fail_after(15):
            assert await completed(client, "choices", {"v": ["c199999"] * 1000}) == ["choices done"]
            refused = await client.call_tool("choices", {"v": ["c1", 1, "nope"]})
            said = " ".join(texts(refused))
            assert refused.is_error and "v.1: 1 is not one of the 200,000 values" in said, said
            assert "v.2: 'nope' is not one of" in said, said
            msg = await until(client, started(await client.call_tool("unique", {})), ("completed", "failed"))
            assert msg["status"] == "completed" and len(msg["result"]["structuredContent"]["s"]) == 20_000, str(msg)[
                :300
            ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the proxy's peak memory is read from /proc")
async def test_an_answer_of_many_small_values_fails_its_call_and_costs_the_proxy_little_memory() -> None:
    """Each JSON value of an upstream's answer became Python objects several times over (parsed, validated as
    pydantic models, dumped): 10 MB of empty text blocks took the proxy to 800 MB and seconds of its event loop,
    52 MB to 3.8 GB (a 64 MB line of `{}`s, more). An answer of more values than a stored result keeps fails its
    call, naming the limit, and is never parsed (review helper-150)."""
    async with proxied() as (client, _):
        with anyio.fail_after(20):
            text = " ".join(texts((await until(client, started(await client.call_tool("swarm", {})), FINAL))["result"]))
            assert "JSON values or more, over the proxy's limit of 1,000,000" in text, text[:300]
            peak = await completed(client, "peak")
    assert int(peak[0]) < 300_000, f"the proxy's peak memory: {peak[0]} kB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the proxy's peak memory is read from /proc")
async def test_log_lines_of_megabytes_are_cut_as_they_come_not_held_whole_until_the_job_writes() -> None:
    """An upstream's log line during a job becomes one of its diagnostics, cut to 2,000 characters when stored;
    until then (the job's next progress or its end) the last 100 were held whole: 40 of 8 MB took the proxy
    past 400 MB, 100 of 60 MB would take it to 6 GB. Each is cut as it comes (review helper-150)."""
    async with proxied() as (client, _):
        with anyio.fail_after(30):
            msg = await until(client, started(await client.call_tool("chatty", {})), FINAL)
            peak = await completed(client, "peak")
    diagnostics = msg["details"]["diagnostics"]
    assert msg["status"] == "completed" and len(diagnostics) == 40, str(msg)[:500]
    assert diagnostics[-1].startswith("upstream info: 39xxx") and len(diagnostics[-1]) <= 2000, diagnostics[-1][:100]
    assert int(peak[0]) < 300_000, f"the proxy's peak memory: {peak[0]} kB"


async def test_tool_names_shown_as_the_proxys_own_are_not_served() -> None:
    """A name with an invisible character (a zero-width space, a word joiner), a right-to-left override or a line
    separator was served: the client listed a second `get-job-result` or `cancel-job`, the upstream's, for an agent
    to send its job ids to (review helper-150). Such a name is not served, as one with a control character is not."""
    async with proxied("--posing") as (client, errlog):
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert "ok" in listed and not listed & set(POSING), sorted(listed)
        assert await completed(client, "ok") == ["ok done"]
        log = logged(errlog)
        assert log.count("proxy.tool_name_unusable") == len(POSING), log[-3000:]
        assert "U+200B" in log and "U+202E" in log, log[-3000:]


async def test_a_question_left_open_by_the_call_that_asked_it_is_cancelled_without_an_error() -> None:
    """An upstream that asks an elicitation during a call and then answers the call (its own time-out, or it did
    not need the answer after all) ended the job with its question open: the proxy's handler of the request
    raised NotWaiting, logged as an error with a traceback, and the upstream got an internal error naming the
    proxy's job id and question id. The upstream is answered `cancel` (review helper-150)."""
    async with proxied() as (client, errlog):
        asker = started(await client.call_tool("asker", {}))
        with anyio.fail_after(20):
            while True:
                if "waitingFor" in await status(client, asker):
                    break
                await anyio.sleep(0.05)  # polling a condition under a deadline: the question reaching the job
            assert await completed(client, "release") == ["release done"]
            assert (await until(client, asker, FINAL))["status"] == "completed"
            while True:
                if (reply := await completed(client, "reply")) != ["null"]:
                    break
                await anyio.sleep(0.05)  # the same: the proxy's answer reaching the upstream
        log = logged(errlog)
    assert json.loads(reply[0]) == {"action": "cancel"}, reply
    assert '"level": "error"' not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the proxy's peak memory is read from /proc")
async def test_listings_of_ever_new_uris_do_not_grow_the_proxy_for_ever() -> None:
    """The proxy remembered which upstream listed each resource URI and template, from every listing ever made:
    an upstream listing 3 MB of URIs it never listed before, and templates as many, grew the proxy by 6 MB at each
    client's listing (a client lists again at each `list_changed`, which the upstream sends when it likes): 20
    listings of each took it from 115 to 227 MB. It keeps those of the latest listing (review helper-150)."""
    async with proxied("--new-uris") as (client, _):
        with anyio.fail_after(60):
            for _ in range(20):
                assert len((await client.list_resources()).resources) == 1 + 1001  # jobs://recent, the upstream's
                assert len((await client.list_resource_templates()).resource_templates) == 1 + 1000  # job://{jobId}
            peak = await completed(client, "peak")
    assert int(peak[0]) < 170_000, f"the proxy's peak memory: {peak[0]} kB"


async def test_a_completion_of_the_proxys_own_job_template_is_never_asked_of_an_upstream() -> None:
    """A client completing the `jobId` of the proxy's `job://{jobId}` template had its request sent to the upstream,
    which learnt the id being typed and answered ids of its own choosing; the proxy's own URIs are never asked of
    an upstream, as for reads (review helper-150). Another template's completion still reaches it."""
    async with proxied() as (client, _):
        own = ResourceTemplateReference(type="ref/resource", uri="job://{jobId}")
        assert (await client.complete(own, {"name": "jobId", "value": "1a2b"})).completion.values == []
        assert await completed(client, "asked") == ["null"]
        theirs = ResourceTemplateReference(type="ref/resource", uri="file:///{x}")
        assert (await client.complete(theirs, {"name": "x", "value": "a"})).completion.values == ["0" * 32]
        assert json.loads((await completed(client, "asked"))[0])["argument"] == {"name": "x", "value": "a"}


async def test_a_flood_of_requests_the_proxy_declines_is_logged_as_it_doubles() -> None:
    """Each request of an upstream's that the proxy declined was a warning line of its own: 2,000 sampling
    requests asked at once (the job takes one question at a time) wrote 1,999, and a million would write a
    million. They are logged as they double, with their count, as the upstream's broken lines are (review
    helper-150); each is still answered."""
    async with proxied() as (client, errlog):
        with anyio.fail_after(60):
            msg = await until(client, started(await client.call_tool("pester", {})), FINAL)
        log = logged(errlog)
    assert msg["status"] == "completed", str(msg)[:300]
    declined = [json.loads(line) for line in log.splitlines() if "proxy.upstream_request_declined" in line]
    assert [line["declined"] for line in declined] == [2**n for n in range(11)], [d.get("declined") for d in declined]
    assert "one question at a time" in declined[0]["reason"], declined[0]
