"""`vibe-jobs health` (exit 0/1) and `vibe-jobs dashboard` (the dashboard alone) against a real SQLite store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.conftest import ROOT, free_port, stop, wait_for_port
from tests.pg import postgres_url, with_new_schema
from vibe_jobs.cli import main
from vibe_jobs.manager import JobManager
from vibe_jobs.models import Priority, TaskSpec
from vibe_jobs.redact import MASK
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.server.http.dashboard import PAGE_POLICY
from vibe_jobs.store import open_store
from vibe_jobs.store.base import ScheduleStore

pytestmark = pytest.mark.timeout(60)
created: dict[str, int] = {}  # job id -> created_at, of every job `fill` made


def fill(url: str, jobs: int, failed: int = 0) -> list[str]:
    """`jobs` pending jobs and `failed` failed ones, written through the manager; their ids in creation order."""

    async def go() -> list[str]:
        async with JobManager(open_store(url)) as m:
            ids = [await m.create_job("demo", {"n": i, "api_key": "hunter2"}) for i in range(jobs)]
            created.update({i: (await m.get_record(i)).created_at for i in ids})
            for job_id in ids[:failed]:
                await m.start_job(job_id)
                await m.fail_job(job_id, "demo failure", diagnostics=["demo diagnostic"])
            return ids

    return anyio.run(go)


def test_health_exits_0_for_a_store_that_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    fill(url, 1)
    assert main(["health", "--store", url]) == 0
    assert capsys.readouterr().out.strip() == "ready"


def test_health_exits_1_naming_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path}/nothing-here.db"
    assert main(["health", "--store", missing]) == 1
    assert "no SQLite database at" in capsys.readouterr().err
    assert not (tmp_path / "nothing-here.db").exists(), "the probe created the file it probed"
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    assert main(["health", "--store", closed, "--timeout", "3"]) == 1
    assert "not ready" in capsys.readouterr().err
    assert main(["health", "--store", "bogus://x"]) == 1  # a probe answers 0 or 1 (it was 2, a usage error)
    assert "not ready: unknown store URL 'bogus://x'" in capsys.readouterr().err
    malformed = "postgresql://u:hunter2-pw@[::1/test"  # urlsplit's ValueError went up as a traceback (helper-95)
    assert main(["health", "--store", malformed]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vibe-jobs: not ready: ") and "Invalid IPv6 URL" in err and "hunter2" not in err, err


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command",
    [["jobs", "list"], ["schedules", "list"], ["health"], ["dashboard", "--port", "0"]],
    ids=["jobs", "schedules", "health", "dashboard"],
)
def test_the_operator_s_commands_refuse_a_postgresql_schema_no_server_made(command: list[str]) -> None:
    """`?schema=` mistyped: each operator command created the schema and its tables in the database, migrated them,
    and answered "no jobs" (or "ready", or an empty dashboard), where a mistyped SQLite file is refused. Refused as
    that is, naming the schema; nothing is made."""
    url = with_new_schema(postgres_url("the operator's commands on PostgreSQL"), "vj_typo")
    schema = url.rsplit("schema=", 1)[1]
    cmd = [sys.executable, "-m", "vibe_jobs", *command, "--store", url]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, input="")
    assert done.returncode != 0 and done.stdout in ("", "\n"), (done.stdout, done.stderr)
    assert f"no job store in schema '{schema}'" in done.stderr, done.stderr
    assert "start `vibe-jobs serve` on it first" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not anyio.run(schema_dropped, url, schema), "the command made the store it was pointed at"


@pytest.mark.parametrize(
    "command",
    [["jobs", "list"], ["schedules", "list"], ["health"], ["dashboard", "--port", "0"]],
    ids=["jobs", "schedules", "health", "dashboard"],
)
@pytest.mark.parametrize("made", ["another program's", "empty"])
def test_the_operator_s_commands_refuse_a_sqlite_database_no_server_made(
    tmp_path: Path, command: list[str], made: str
) -> None:
    """`--store sqlite:///` naming another program's database (or an empty file): each operator command migrated
    the job store's tables into it and answered "no jobs" (or "ready", or an empty dashboard). Refused, naming the
    file; the file is left as it was."""
    path = tmp_path / "other.db"
    path.touch()
    if made != "empty":
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("CREATE TABLE notes (body TEXT)")
            other.commit()
    before = path.read_bytes()
    cmd = [sys.executable, "-m", "vibe_jobs", *command, "--store", f"sqlite:///{path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, input="")
    assert done.returncode != 0 and done.stdout in ("", "\n"), (done.stdout, done.stderr)
    assert f"the SQLite database at {path} holds no job store" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and path.read_bytes() == before, "the command changed the file"


async def schema_dropped(url: str, schema: str) -> bool:
    """Whether `schema` was there (dropped now: a test that failed leaves nothing)."""
    import asyncpg

    conn = await asyncpg.connect(url.split("?", 1)[0])
    try:
        found = bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return found
    finally:
        await conn.close()


def test_the_dashboard_refuses_a_sqlite_file_that_does_not_exist_as_jobs_does(tmp_path: Path) -> None:
    """`dashboard --store sqlite:///typo.db` created an empty database and served an empty dashboard, where `jobs`,
    `schedules` and `health` refuse a file that does not exist: the same refusal, exit 2, no file made."""
    url = f"sqlite:///{tmp_path}/typo.db"
    cmd = [sys.executable, "-m", "vibe_jobs", "dashboard", "--store", url, "--port", "0"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20, check=False, input="")
    listed = subprocess.run(
        [sys.executable, "-m", "vibe_jobs", "jobs", "list", "--store", url],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, input="",
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == listed.stderr, (done.stderr, listed.stderr)
    assert done.stderr.startswith(f"vibe-jobs: no SQLite database at {tmp_path}/typo.db"), done.stderr
    assert "start `vibe-jobs serve` on it first" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "typo.db").exists(), "the dashboard created the store it was to show"


@contextmanager
def dashboard(url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    with dashboard_process(url, env) as (base, _):
        yield base


@contextmanager
def dashboard_process(url: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "vibe_jobs", "dashboard", "--store", url, "--port", str(port)]
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errlog, env={**os.environ, **(env or {})}
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            stop(proc)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f]{32})"', html)


def test_the_dashboard_alone_pages_through_a_store_newest_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    ids = fill(url, 120)
    newest_first = sorted(ids, key=lambda i: (created[i], i), reverse=True)  # a tie in ms: by id
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        first = http.get("/")
        assert first.status_code == 200
        assert rows(first.text) == newest_first[:50]
        following = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert following is not None
        second = http.get(following.group(1).replace("&amp;", "&"))
        assert rows(second.text) == newest_first[50:100]
        assert http.get("/", params={"status": "nonsense"}).status_code == 400
        assert http.get("/jobs/" + "0" * 32).status_code == 404


def test_the_jobs_page_filters_by_tool_under_its_name_and_under_list_jobs_name(tmp_path: Path) -> None:
    """The filter is `tool` on the page and `toolName` in list-jobs: a link written with either filters."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    demo = fill(url, 3)

    async def other() -> str:
        async with JobManager(open_store(url)) as m:
            return await m.create_job("other", {})

    other_id = anyio.run(other)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        assert set(rows(http.get("/").text)) == {*demo, other_id}
        for name in ("tool", "toolName"):
            assert rows(http.get("/", params={name: "other"}).text) == [other_id], name
            assert set(rows(http.get("/", params={name: "demo"}).text)) == set(demo), name


def test_no_page_may_be_framed_by_another_site_leak_its_url_or_be_cached(tmp_path: Path) -> None:
    """A page's cancel and retry buttons could be clicked through from another site's frame (helper-42's note);
    a page (jobs' arguments and results) was kept by a browser's or a shared proxy's cache (helper-106's note)."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    [job_id] = fill(url, 1)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        for path, status in (("/", 200), (f"/jobs/{job_id}", 200), ("/jobs/" + "0" * 32, 404), ("/?status=x", 400)):
            page = http.get(path)
            assert page.status_code == status, path
            assert page.headers["x-frame-options"] == "DENY", path
            assert page.headers["content-security-policy"] == PAGE_POLICY, path
            assert "frame-ancestors 'none'" in PAGE_POLICY and "script-src 'self';" in PAGE_POLICY
            assert page.headers["referrer-policy"] == "same-origin", path
            assert page.headers["cache-control"] == "no-store", path
        bad_cursor = http.get("/", params={"cursor": "not-a-cursor"})
        assert bad_cursor.status_code == 400 and "<title>Bad request" in bad_cursor.text, bad_cursor.text[:300]


def test_changes_need_same_origin_and_the_csrf_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    failed, pending = fill(url, 2, failed=1)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        page = http.get(f"/jobs/{failed}")
        assert "demo failure" in page.text and "demo diagnostic" in page.text
        assert "hunter2" not in page.text and MASK in page.text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert token is not None and http.cookies.get("vibe_jobs_csrf")
        same = {"origin": base}
        cancel = f"/jobs/{pending}/cancel"
        assert http.post(cancel, data={}, headers=same).status_code == 403  # no token
        assert http.post(cancel, data={"csrf": "0" * 64}, headers=same).status_code == 403  # a wrong one
        evil = {"origin": "http://evil.example"}
        assert http.post(cancel, data={"csrf": token.group(1)}, headers=evil).status_code == 403
        assert http.post(cancel, data={"csrf": token.group(1)}).status_code == 403  # no origin at all
        assert 'data-status="pending"' in http.get(f"/jobs/{pending}").text
        done = http.post(cancel, data={"csrf": token.group(1)}, headers=same)
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{pending}"
        assert 'data-status="cancelled"' in http.get(f"/jobs/{pending}").text
        retried = http.post(f"/jobs/{failed}/retry", data={"csrf": token.group(1)}, headers=same)
        assert retried.status_code == 303
        new = http.get(retried.headers["location"])
        assert 'data-status="pending"' in new.text and "demo" in new.text


FORM_BODIES = {  # what no page of ours posts: 64 MiB declared, the first MiB sent, then the answer awaited
    "application/x-www-form-urlencoded": (b"&f=" + b"A" * 4093) * 256,
    "multipart/form-data; boundary=b0": b'--b0\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n'
    + b"A" * (1 << 20),
}


@pytest.mark.parametrize("kind", FORM_BODIES)
def test_a_change_s_body_is_refused_at_once_when_it_is_no_dashboard_form(tmp_path: Path, kind: str) -> None:
    """A cancel's form was read whole before it was checked: a thousand fields of up to 1 MiB each in memory (one
    post of 200 MiB took the process from 80 to 285 MiB), a file of any size spooled to disk. The page posts one
    CSRF field: anything else is answered 400 from its first bytes, the rest never read (review helper-95)."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    [pending] = fill(url, 1)
    with dashboard(url) as base:
        host = base.removeprefix("http://")
        head = (
            f"POST /jobs/{pending}/cancel HTTP/1.1\r\nHost: {host}\r\nOrigin: {base}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {64 << 20}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1]))) as sock:
            sock.sendall(head.encode() + FORM_BODIES[kind])
            sock.settimeout(10)  # the body's own deadline is 30 s: an answer before it is the refusal
            assert sock.recv(1024).startswith(b"HTTP/1.1 400 "), "the server waited for the rest of the body"
        with httpx.Client(base_url=base) as http:
            assert 'data-status="pending"' in http.get(f"/jobs/{pending}").text


def test_a_retry_of_a_job_whose_deadline_passed_is_not_failed_by_it_again(tmp_path: Path) -> None:
    """The retry copied the job's absolute deadline: it failed at once, "deadline passed", every time."""
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def missed() -> str:  # made an hour ago (its clock), with a deadline a minute after that
        async with JobManager(open_store(url), clock=lambda: time.time() - 3600) as m:
            job_id = await m.create_job("demo", {}, task=TaskSpec(deadline=m.now() + 60_000, priority=Priority.HIGH))
            await m.start_job(job_id)
            await m.fail_job(job_id, "deadline passed before it started")
            return job_id

    async def task_of(job_id: str) -> TaskSpec | None:
        async with JobManager(open_store(url)) as m:
            return (await m.get_record(job_id)).task

    failed = anyio.run(missed)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', http.get(f"/jobs/{failed}").text)
        assert token is not None
        retried = http.post(f"/jobs/{failed}/retry", data={"csrf": token.group(1)}, headers={"origin": base})
        assert retried.status_code == 303
    task = anyio.run(task_of, retried.headers["location"].rsplit("/", 1)[1])
    assert task is not None and task.deadline is None and task.priority is Priority.HIGH


def test_the_dashboard_alone_answers_only_under_its_own_host_names(tmp_path: Path) -> None:
    """A page whose name was rebound to 127.0.0.1 read every job and cancelled them (no Host check)."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    (pending,) = fill(url, 1)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        port = base.rsplit(":", 1)[1]
        rebound = {"Host": f"evil.example:{port}"}
        for path in ("/", f"/jobs/{pending}", "/events"):
            assert http.get(path, headers=rebound).status_code == 421, path
        form = {"csrf": "x"}
        cancel = http.post(
            f"/jobs/{pending}/cancel", data=form, headers={**rebound, "Origin": f"http://evil.example:{port}"}
        )
        assert cancel.status_code == 421
        assert http.get("/", headers={"Origin": "http://evil.example"}).status_code == 403
        for probe in ("/healthz", "/metrics"):  # figures, no job data: scraped by addresses nobody lists
            assert http.get(probe, headers=rebound).status_code == 200
        assert http.get(f"/jobs/{pending}").status_code == 200
    assert anyio.run(status_of, url, pending) == "pending"


async def status_of(url: str, job_id: str) -> str:
    async with JobManager(open_store(url)) as m:
        return (await m.get_record(job_id)).status.value


def test_the_dashboard_alone_closes_a_connection_whose_headers_never_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    fill(url, 0)  # the store, made as a server makes it: the dashboard refuses a file that does not exist
    with dashboard(url, {"VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": "1"}) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the headers
        began = time.monotonic()
        slow.settimeout(10)
        assert slow.recv(1024) == b"", "the dashboard closes it (EOF)"
        slow.close()
        assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    "command",
    [["dashboard", "--store", "memory://"], ["serve", "--store", "memory://", "--transport", "streamable-http"]],
)
def test_a_port_in_use_is_one_line_and_exit_2(command: list[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "vibe_jobs", *command, "--port", str(port)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"vibe-jobs: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["dashboard", "--store", "memory://"],
        ["serve", "--store", "memory://", "--transport", "sse"],
        ["serve", "--store", "memory://", "--transport", "streamable-http"],
    ],
)
def test_of_two_servers_started_together_on_one_port_the_second_says_one_line_and_exit_2(command: list[str]) -> None:
    """Both may bind the port (SO_REUSEADDR binds a port nobody listens on yet): the one that listened second
    ended in uvicorn's exception-group traceback with exit status 1."""
    port = free_port()
    cmd = [sys.executable, "-m", "vibe_jobs", *command]
    env = {**os.environ, "VIBE_JOBS_LOG_LEVEL": "warning"}
    both = [
        subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        lost = None
        deadline = time.monotonic() + 30
        while lost is None:  # the loser ends; the winner serves until stopped
            assert time.monotonic() < deadline, "neither server ended"
            for proc in both:
                try:
                    proc.wait(0.1)
                    lost = proc
                except subprocess.TimeoutExpired:
                    continue
        winner = both[1 - both.index(lost)]
        assert winner.poll() is None, "one of them serves"
        said = lost.stderr.read() if lost.stderr else ""
        assert lost.returncode == 2, said
        assert said.strip() == f"vibe-jobs: cannot listen on 127.0.0.1:{port}: Address already in use"
    finally:
        for proc in both:
            stop(proc)
            if proc.stderr:
                proc.stderr.close()


@pytest.mark.parametrize("store", ["postgresql://app:Sup3rSecretPw@127.0.0.1:1/test", "sqlite:///{dir}"])
def test_a_store_the_dashboard_cannot_open_is_one_line_and_exit_2(tmp_path: Path, store: str) -> None:
    """As `serve`: the dashboard said where it served, then uvicorn logged the store's error as a traceback and the
    process exited 3 (the store was opened in the app's lifespan). A path that is there but no file (one not there
    is refused before it is opened: test_the_dashboard_refuses_a_sqlite_file_that_does_not_exist_as_jobs_does)."""
    (tmp_path / "dir").mkdir()
    url = store.format(dir=tmp_path / "dir")
    cmd = [sys.executable, "-m", "vibe_jobs", "dashboard", "--store", url, "--port", "0"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("vibe-jobs: cannot open the job store at "), done.stderr
    assert "Sup3rSecretPw" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["dashboard", "--store", "memory://"], r"vibe-jobs: dashboard of memory:// at http://127\.0\.0\.1:(\d+)/"),
        (
            ["serve", "--store", "memory://", "--transport", "streamable-http"],
            r"vibe-jobs: serving MCP at http://127\.0\.0\.1:(\d+)/mcp",
        ),
    ],
)
def test_port_0_announces_the_port_it_was_given(command: list[str], said: str) -> None:
    """`--port 0` (any free port, as scripts and tests start a server) announced `:0`: nothing says where
    the server is. It announces the port the system gave, and answers there."""
    cmd = [sys.executable, "-m", "vibe_jobs", *command, "--port", "0"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            found = None
            for _ in range(600):  # bounded: the line comes once the server listens
                err.seek(0)
                if found := re.search(said, err.read().decode()):
                    break
                assert proc.poll() is None, "the server ended"
                time.sleep(0.05)
            assert found is not None, "no announcement"
            port = int(found.group(1))
            assert port != 0
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        finally:
            stop(proc)


async def _advance(url: str, job_id: str) -> None:
    async with JobManager(open_store(url)) as m:  # another process, as far as the dashboard knows
        await m.start_job(job_id)
        await m.set_job_result(job_id, {"content": [{"type": "text", "text": "done elsewhere"}]})


async def _create(url: str) -> str:
    async with JobManager(open_store(url)) as m:
        return await m.create_job("demo", {"n": 99})


def _events_until(lines: Iterator[str], wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    kind = ""
    for line in lines:
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and kind == "job":
            event: dict[str, Any] = json.loads(line[5:])
            if wanted(event):
                return event
    raise AssertionError("the stream ended")


def test_the_dashboard_alone_streams_changes_other_processes_make(tmp_path: Path) -> None:
    """Its events came only from its own process's bus: a job run by a server stayed as first shown."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    (job_id,) = fill(url, 1)
    with dashboard(url) as base, httpx.Client(base_url=base, timeout=15) as http:
        with http.stream("GET", f"/events?job={job_id}") as one:
            lines = one.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: hello"
            anyio.run(_advance, url, job_id)
            done = _events_until(lines, lambda ev: ev["status"] == "completed")
        assert done["jobId"] == job_id and done["type"] == "completed"
        with http.stream("GET", "/events") as every:
            lines = every.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: hello"
            new_id = anyio.run(_create, url)
            created = _events_until(lines, lambda ev: ev["jobId"] == new_id)
        assert created["type"] == "created" and created["status"] == "pending"


def _hello(http: httpx.Client, stack: ExitStack) -> tuple[httpx.Response, Iterator[str]]:
    """Open /events and read up to its hello (a refused stream answers at once, with no event). The lines
    are handed back with the response: the stream stays open only while its reader is kept."""
    response = stack.enter_context(http.stream("GET", "/events"))
    lines = response.iter_lines()
    if response.status_code == 200:
        assert next(line for line in lines if line.startswith("event:")) == "event: hello"
    else:
        response.read()
    return response, lines


def test_live_event_streams_are_capped_and_a_closed_one_gives_its_place_back(tmp_path: Path) -> None:
    """Each /events stream reads the store every few seconds: a client opening them without end is refused
    past the cap (429, saying why), the streams already open go on, and a closed stream's place is free again."""
    from vibe_jobs.server.http.live import MAX_EVENT_STREAMS

    url = f"sqlite:///{tmp_path}/jobs.db"
    fill(url, 1)
    limits = httpx.Limits(max_connections=MAX_EVENT_STREAMS + 10)
    with dashboard(url) as base, httpx.Client(base_url=base, timeout=15, limits=limits) as http, ExitStack() as opened:
        streams = [_hello(http, opened) for _ in range(MAX_EVENT_STREAMS)]
        assert all(response.status_code == 200 for response, _ in streams)
        with ExitStack() as extra:
            refused, _ = _hello(http, extra)
        assert refused.status_code == 429 and f"at most {MAX_EVENT_STREAMS}" in refused.text
        assert http.get("/").status_code == 200  # the pages still answer
        streams[0][0].close()
        deadline = time.monotonic() + 10  # the server hears of the closed connection on its own time
        while True:
            with ExitStack() as again:
                if _hello(http, again)[0].status_code == 200:
                    break
            assert time.monotonic() < deadline, "a closed stream's place never came back"
            time.sleep(0.05)


async def _reversing(url: str) -> str:
    """A running job whose tool name and stage start with a right-to-left override (U+202E) they never close."""
    async with JobManager(open_store(url)) as m:
        job_id = await m.create_job("\u202edemo", {})
        await m.start_job(job_id)
        await m.update_progress(job_id, 10, message="copying 12 files", stage="\u202estage")
        return job_id


READS_LEFT_TO_RIGHT = """(sel) => {
  const node = document.querySelector(sel).firstChild, range = document.createRange();
  const left = (i) => {
    range.setStart(node, i); range.setEnd(node, i + 1); return range.getBoundingClientRect().left;
  };
  return left(0) < left(node.length - 1);
}"""


async def test_a_job_s_bidi_override_turns_no_text_around_it(tmp_path: Path) -> None:
    """A tool name's or a stage's unclosed U+202E ran on past it: the job page showed the job's id written right
    to left after the tool name, and the progress message after the stage, on the page and in the jobs list
    (review helper-95). Each job-written text is isolated: its override ends where it does."""
    from tests.e2e.browser import browser_page

    url = f"sqlite:///{tmp_path}/jobs.db"
    job_id = await _reversing(url)
    with dashboard(url) as base:
        async with browser_page() as page:
            await page.goto(f"{base}/jobs/{job_id}")
            assert await page.evaluate(READS_LEFT_TO_RIGHT, "h1 small"), "the job's id reads right to left"
            assert await page.evaluate(READS_LEFT_TO_RIGHT, "#job .msg"), "the message reads right to left"
            await page.goto(base + "/")
            assert await page.evaluate(READS_LEFT_TO_RIGHT, f'tr[data-job="{job_id}"] .msg')


@pytest.mark.postgres
def test_the_dashboard_alone_on_postgresql_reports_the_shared_queue_by_priority(tmp_path: Path) -> None:
    """`vibe-jobs dashboard --store postgresql://...` is the dashboard of every replica and worker (issue 17): its
    `vibe_jobs_jobs_pending{priority}` and its health come from the shared table. It runs no jobs, so it has no
    queue of its own: it put every pending job under `medium` and named no tool that nobody runs."""
    url = with_new_schema(postgres_url("the dashboard on PostgreSQL"), "vj_dash")

    async def submit() -> None:
        async with JobManager(open_store(url)) as m:
            for priority in (Priority.HIGH, Priority.HIGH, Priority.LOW):
                await m.create_job("nobody-runs-this", {}, task=TaskSpec(priority=priority))

    anyio.run(submit)
    try:
        with dashboard(url) as base, httpx.Client(base_url=base) as http:
            metrics = http.get("/metrics").text
            page = http.get("/").text
    finally:
        anyio.run(drop_schema, url)
    pending = re.findall(r'^vibe_jobs_jobs_pending\{priority="(\w+)"\} (\S+)$', metrics, re.M)
    assert {p: float(n) for p, n in pending} == {"low": 1, "medium": 0, "high": 2, "critical": 0}, pending
    assert "no live worker runs tool &#x27;nobody-runs-this&#x27; (3 pending)" in page, page


def test_the_dashboard_alone_on_sqlite_reports_the_queue_of_the_file_by_priority(tmp_path: Path) -> None:
    """Every server on one SQLite file feeds one queue: the dashboard alone (which runs no job) put all of it
    under `medium` and knew no oldest pending job. A job deferred past now is pending but does not wait yet."""
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def submit() -> None:
        async with JobManager(open_store(url)) as m:
            for priority in (Priority.HIGH, Priority.HIGH, Priority.LOW):
                await m.create_job("queued", {}, task=TaskSpec(priority=priority))
            later = m.now() + 3_600_000
            await m.create_job("queued", {}, task=TaskSpec(priority=Priority.CRITICAL), run_at=later)

    anyio.run(submit)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        metrics = http.get("/metrics").text
    pending = re.findall(r'^vibe_jobs_jobs_pending\{priority="(\w+)"\} (\S+)$', metrics, re.M)
    assert {p: float(n) for p, n in pending} == {"low": 1, "medium": 0, "high": 2, "critical": 1}, pending

    async def stats() -> tuple[dict[str, int], int | None]:
        async with JobManager(open_store(url)) as m:
            figures = await m.statistics()
            return figures.queue_depth_by_priority, figures.oldest_pending_age_ms

    depth, age = anyio.run(stats)
    assert depth == {"high": 2, "low": 1, "critical": 1}
    assert age is not None and age >= 0


async def drop_schema(url: str) -> None:
    from vibe_jobs.store.postgres import PostgresStore

    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.drop_schema()


async def _large_result(url: str, text: str) -> str:
    async with JobManager(open_store(url)) as m:
        job_id = await m.create_job("demo", {"n": 1})
        await m.start_job(job_id)
        await m.set_job_result(job_id, {"content": [{"type": "text", "text": text}]})
        return job_id


def test_a_job_page_shows_a_large_result_in_part_not_whole(tmp_path: Path) -> None:
    """A page is an answer over HTTP: it shows at most max_answer_bytes of a result (its start and where to read it
    whole), as get-job-result does; the whole result (up to max_result_bytes, 4 MiB) was escaped into the page."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    text = "".join(f"line {i:07d} of a large result\n" for i in range(10_000))  # 320 kB
    job_id = anyio.run(_large_result, url, text)
    small_answers = {"VIBE_JOBS_MAX_ANSWER_BYTES": "65536"}
    with dashboard(url, small_answers) as base, httpx.Client(base_url=base, timeout=15) as http:
        page = http.get(f"/jobs/{job_id}")
        listing = http.get("/")
    assert page.status_code == 200
    assert len(page.content) < 65536, len(page.content)
    assert "line 0000000 of a large result" in page.text and "line 0009999" not in page.text
    assert "shown in part" in page.text and f"vibe-jobs jobs show {job_id}" in page.text
    assert listing.status_code == 200 and "of a large result" not in listing.text and job_id in listing.text


async def _fired_schedules(url: str, count: int) -> str:
    """`count` schedules (an hour apart) that each fired one job, the same one; its id."""
    async with JobManager(open_store(url)) as m:
        job_id = await m.create_job("demo", {"n": 1})
        now = m.now()
        store: Any = m.store
        for i in range(count):
            hourly = ScheduleRecord(
                f"s{i:04d}", "demo", {}, None, 3600.0, "UTC", None, None, False, "run_once", 10, "allow", "medium",
                None, now, now + 3_600_000, now + i, now + i, last_job_id=job_id,
            )  # fmt: skip
            await store.insert_schedule(hourly)
        return job_id


def store_gets(http: httpx.Client) -> int:
    """The store's reads of jobs by id so far (/metrics): `get` calls and `get_many` calls (each one statement)."""
    text = http.get("/metrics").text
    found = re.findall(r'^vibe_jobs_store_operation_seconds_count\{op="(?:get|get_many)"\} (\S+)$', text, re.M)
    return sum(int(float(count)) for count in found)


def test_a_store_of_many_schedules_costs_a_job_page_none_and_the_jobs_page_one_page_of_them(tmp_path: Path) -> None:
    """Every page (a job's, a form post, an error page) listed every schedule of the store and read the job each
    fired last, one store read a schedule: one principal's default quota (1,000) made each page view ~1,000
    reads (150 ms on SQLite). A job page reads no schedule; the jobs page shows the first SHOWN_SCHEDULES of
    them (the last jobs of those only, read at once: one store read, not one a schedule) and says how many more
    there are."""
    from vibe_jobs.server.http.dashboard import SHOWN_SCHEDULES

    url = f"sqlite:///{tmp_path}/jobs.db"
    job_id = anyio.run(_fired_schedules, url, SHOWN_SCHEDULES + 70)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        before = store_gets(http)
        assert http.get(f"/jobs/{job_id}").status_code == 200
        assert http.get("/jobs/" + "0" * 32).status_code == 404
        after_job_pages = store_gets(http)
        listing = http.get("/")
        after_listing = store_gets(http)
    assert after_job_pages - before == 2, (before, after_job_pages)  # the two jobs asked for, nothing else
    assert listing.status_code == 200
    shown = re.findall(r'<tr data-schedule="(s\d{4})">', listing.text)
    assert shown == [f"s{i:04d}" for i in range(SHOWN_SCHEDULES)], shown
    assert "70 more schedules" in listing.text and "vibe-jobs schedules list" in listing.text
    assert after_listing - after_job_pages <= 2, (after_job_pages, after_listing)  # was SHOWN_SCHEDULES


async def _schedules_with_arguments(url: str, count: int, size: int) -> None:
    """`count` hourly schedules, each with `size` bytes of arguments."""
    async with JobManager(open_store(url)) as m:
        now, store = m.now(), cast(ScheduleStore, m.store)
        for i in range(count):
            hourly = ScheduleRecord(
                f"s{i:04d}", "demo", {"blob": "x" * size}, None, 3600.0, "UTC", None, None, False, "run_once", 10,
                "allow", "medium", None, now, now + 3_600_000, now + i, now + i,
            )  # fmt: skip
            await store.insert_schedule(hourly)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_jobs_page_reads_the_schedules_it_shows_without_their_arguments_and_counts_the_rest(
    tmp_path: Path, kind: str
) -> None:
    """The jobs page shows SHOWN_SCHEDULES schedules and counts the rest, yet read every schedule of the store
    whole: 200 schedules of 500 kB arguments (each within VIBE_JOBS_MAX_PARAMS_BYTES) were 100 MB to read and
    decode a view, the dashboard's peak memory up by hundreds of MiB. Now the first SHOWN_SCHEDULES, without the
    arguments the page never shows, and a count."""
    from vibe_jobs.server.http.dashboard import SHOWN_SCHEDULES

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = with_new_schema(postgres_url("the dashboard on PostgreSQL"), "vj_dash")
    try:
        anyio.run(_schedules_with_arguments, url, 200, 500_000)
        with dashboard_process(url) as (base, proc), httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/jobs/" + "0" * 32).status_code == 404  # the page's machinery, warmed up
            before = peak_memory_mb(proc)
            listing = http.get("/")
            after = peak_memory_mb(proc)
    finally:
        if kind == "postgres":
            anyio.run(drop_schema, url)
    assert listing.status_code == 200
    shown = re.findall(r'<tr data-schedule="(s\d{4})">', listing.text)
    assert shown == [f"s{i:04d}" for i in range(SHOWN_SCHEDULES)], shown
    assert f"{200 - SHOWN_SCHEDULES} more schedules" in listing.text
    assert after - before < 20, (before, after)  # 100 MB of arguments read, before


def peak_memory_mb(proc: subprocess.Popen[bytes]) -> int:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) // 1024  # type: ignore[union-attr]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_the_jobs_page_and_its_live_rows_read_no_job_s_arguments(tmp_path: Path) -> None:
    """The jobs page and its /events watch show no arguments, yet read each of the newest 50 jobs' params whole:
    50 jobs of 500 kB arguments (under the default VIBE_JOBS_MAX_PARAMS_BYTES: anybody who may submit jobs) took
    the dashboard's peak memory from 76 to 123 MiB (of 900 kB: to 162 MiB, 574 ms a view of the page), and an
    open tab read them again every 5 s. A job's own page still shows its arguments."""
    url = f"sqlite:///{tmp_path}/jobs.db"

    async def submit() -> list[str]:
        async with JobManager(open_store(url)) as m:
            return [await m.create_job("demo", {"blob": f"{i:06d}" + "x" * 500_000}) for i in range(50)]

    ids = anyio.run(submit)
    with dashboard_process(url) as (base, proc), httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/jobs/" + "0" * 32).status_code == 404  # the page's machinery, warmed up
        before = peak_memory_mb(proc)
        listing = http.get("/")
        with http.stream("GET", "/events") as events:  # the watch reads the newest 50 at once (its first look)
            assert next(events.iter_lines()) == "event: hello"
        after = peak_memory_mb(proc)
        page = http.get(f"/jobs/{ids[0]}")
    assert listing.status_code == 200 and rows(listing.text) == ids[::-1]
    assert after - before < 20, (before, after)  # 25 MB of arguments, read twice, before
    assert page.status_code == 200 and "000000xxxx" in page.text
