"""/metrics and /readyz of the real `vibe-jobs serve`, with the store made unreachable for real."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import (
    BASE_ENV,
    ROOT,
    SERVER,
    HttpServer,
    free_port,
    http_client_for,
    start_http,
    stop,
    wait_for_port,
)  # fmt: skip
from tests.e2e.test_jobs_e2e import start, structured
from tests.faults import pgcluster

pytestmark = pytest.mark.timeout(180)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(server: HttpServer) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{server.port}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_move_by_exactly_the_jobs_run() -> None:
    with start_http("streamable-http") as server:
        async with http_client_for(server, "auto") as client:
            await start(client, "noop", {})  # every family has its labels before the first scrape
            before = await scrape(server)
            ids = [await start(client, "echo", {"text": f"job {i}"}) for i in range(100)]
            long_polls = 0
            for job_id in ids:
                status = "pending"
                while status not in ("completed", "failed", "cancelled"):
                    result = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 10})
                    long_polls += 1
                    status = structured(result)["status"]
                assert status == "completed"
            after = await scrape(server)
    assert moved(before, after, "vibe_jobs_jobs_created_total", tool="echo") == 100
    assert moved(before, after, "vibe_jobs_jobs_finished_total", tool="echo", status="completed") == 100
    assert moved(before, after, "vibe_jobs_jobs_finished_total", tool="echo", status="failed") == 0
    assert moved(before, after, "vibe_jobs_job_duration_seconds_count", tool="echo") == 100
    assert moved(before, after, "vibe_jobs_job_queue_wait_seconds_count", tool="echo") == 100
    assert moved(before, after, "vibe_jobs_polls_total", outcome="long_poll") == long_polls
    assert moved(before, after, "vibe_jobs_store_operation_seconds_count", op="insert") == 100
    assert after[("vibe_jobs_jobs_running", ())] == 0
    assert {k[1] for k in after if k[0] == "vibe_jobs_jobs_pending"} == {
        (("priority", p),) for p in ("low", "medium", "high", "critical")
    }
    assert not [k for k in after if any(name in ("jobId", "job_id", "principal") for name, _ in k[1])]


async def ready(port: int) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/readyz")
    return answer.status_code, answer.json()


async def until_ready(port: int, want: int, seconds: float = 30) -> dict[str, str]:
    """/readyz until it answers `want` (a restarted PostgreSQL takes a moment to accept connections)."""
    with anyio.fail_after(seconds):
        while True:
            code, body = await ready(port)
            if code == want:
                return body
            await anyio.sleep(0.2)  # the probe's answer changes when the store comes back: poll it, bounded


CAPS = "-dac_override,-dac_read_search"


def without_root_reads() -> list[str]:
    """A command prefix that makes file modes bind root too (it drops the capabilities that bypass them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE (root reads any file)")
    return ["setpriv", f"--inh-caps={CAPS}", f"--bounding-set={CAPS}"]


@contextmanager
def serve_store(url: str, prefix: list[str] | None = None) -> Iterator[tuple[int, int]]:
    """`vibe-jobs serve` on the store `url` (its command behind `prefix`); yields (port, pid)."""
    port = free_port()
    cmd = [*(prefix or []), *SERVER, "--transport", "streamable-http", "--port", str(port)]
    cmd[cmd.index("memory://")] = url
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **BASE_ENV}, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            wait_for_port(port, proc)
            yield port, proc.pid
        finally:
            stop(proc)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_readyz_turns_503_when_the_sqlite_file_is_unreadable_and_200_after() -> None:
    with tempfile.TemporaryDirectory(prefix="vj-readyz-") as tmp:
        db = Path(tmp) / "jobs.db"
        with serve_store(f"sqlite:///{db}", without_root_reads()) as (port, pid):
            assert await ready(port) == (200, {"status": "ready"})
            os.chmod(db, 0)
            code, body = await ready(port)
            assert code == 503 and "Permission denied" in body["reason"], body
            os.chmod(db, 0o644)
            assert (await ready(port))[0] == 200
            # the store's own process stops answering (stopped, not killed): the probe's time-out says so
            (store_pid,) = children(pid)
            os.kill(store_pid, signal.SIGSTOP)
            try:
                code, body = await ready(port)
                assert code == 503 and "did not answer within" in body["reason"], body
            finally:
                os.kill(store_pid, signal.SIGCONT)
            await until_ready(port, 200)


async def test_readyz_probes_at_once_on_a_healthy_sqlite_store_all_answer_ready() -> None:
    """/readyz is unauthenticated, and a kubelet, a load balancer and a person may ask at the same moment: a
    probe that came while another one's check of the file ran answered 503 "did not answer within 2 s" at
    once, so anybody who reached the port could take a healthy server out of rotation (helper-106)."""
    with (
        tempfile.TemporaryDirectory(prefix="vj-readyz-") as tmp,
        serve_store(f"sqlite:///{Path(tmp) / 'jobs.db'}") as (port, _),
    ):
        answers: list[tuple[int, str]] = []
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:

            async def probe() -> None:
                answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                answers.append((answer.status_code, answer.text))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(probe)
    assert answers == [(200, '{"status":"ready"}')] * 20, sorted(set(answers))


async def test_a_flood_of_health_probes_costs_the_store_one_count_at_a_time() -> None:
    """/health and /metrics are unauthenticated and count the store's jobs (about 15 ms at 100,000 SQLite jobs):
    40 probes at once, while the store is slow (its process stopped), cost it a count or two, not 40."""
    with (
        tempfile.TemporaryDirectory(prefix="vj-probes-") as tmp,
        serve_store(f"sqlite:///{Path(tmp) / 'jobs.db'}") as (port, pid),
    ):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:
            before = samples((await http.get(f"{base}/metrics")).text)
            (store_pid,) = children(pid)
            codes: list[int] = []

            async def probe() -> None:
                codes.append((await http.get(f"{base}/health")).status_code)

            os.kill(store_pid, signal.SIGSTOP)
            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(40):
                        tg.start_soon(probe)
                    # /readyz gives up on the stopped store after 2 s: by then the probes sent before it wait
                    code, body = await ready(port)
                    assert code == 503 and "did not answer within" in body["reason"], body
                    os.kill(store_pid, signal.SIGCONT)
            finally:
                os.kill(store_pid, signal.SIGCONT)
            after = samples((await http.get(f"{base}/metrics")).text)
    assert codes == [200] * 40
    counts = moved(before, after, "vibe_jobs_store_operation_seconds_count", op="counts")
    assert 2 <= counts <= 5, counts  # the first probe's, one shared by the others (a late one's), the scrape's


async def health_reasons(server: HttpServer) -> tuple[str, list[str], list[str]]:
    """/health's status and reasons, and the reasons job-stats gives an MCP client (the same report)."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.get(f"http://127.0.0.1:{server.port}/health")).json()
    async with http_client_for(server, "auto") as client:
        stats = structured(await client.call_tool("job-stats", {}))
    return answer["status"], answer["reasons"], stats["health"]["reasons"]


async def test_a_deleted_or_replaced_database_file_is_reported_by_health_readyz_and_job_stats() -> None:
    """The store's connection keeps writing to a deleted file, which nobody can open again: the jobs are gone
    when the server stops. /readyz, /health and job-stats say so, naming the file; and again when another
    file takes its place."""
    with tempfile.TemporaryDirectory(prefix="vj-deleted-") as tmp:
        db = Path(tmp) / "jobs.db"
        with start_http("streamable-http", args=["--store", f"sqlite:///{db}"]) as server:
            async with http_client_for(server, "auto") as client:
                await start(client, "noop", {})
            assert await ready(server.port) == (200, {"status": "ready"})
            status, reasons, via_mcp = await health_reasons(server)
            assert (status, reasons, via_mcp) == ("healthy", [], [])
            db.rename(Path(tmp) / "moved-away.db")
            for what in ("deleted", "replaced"):
                status, reasons, via_mcp = await health_reasons(server)
                assert status != "healthy" and any(f"{db} was {what}" in r for r in reasons), reasons
                assert any(f"{db} was {what}" in r for r in via_mcp), via_mcp
                code, body = await ready(server.port)
                assert code == 503 and f"{db} was {what}" in body["reason"], body
                shutil.copy(Path(tmp) / "moved-away.db", db)  # a copy: a SQLite file, but not the one open


@pytest.mark.parametrize("harm", ["wal deleted", "emptied"])
async def test_a_deleted_write_ahead_log_or_an_emptied_database_file_is_reported(harm: str) -> None:
    """The write-ahead log holds the newest writes (on a quiet server, every job); deleting it, or emptying the
    database file, lost every job at the next start while /health and /readyz said healthy and ready."""
    with tempfile.TemporaryDirectory(prefix="vj-wal-") as tmp:
        db = Path(tmp) / "jobs.db"
        with start_http("streamable-http", args=["--store", f"sqlite:///{db}"]) as server:
            async with http_client_for(server, "auto") as client:
                await start(client, "noop", {})
            assert (await health_reasons(server))[0] == "healthy"
            if harm == "wal deleted":
                os.unlink(f"{db}-wal")
                said = f"the write-ahead log {db}-wal (the writes since the last checkpoint) was deleted or replaced"
            else:
                os.truncate(db, 0)
                said = f"the database file {db} was emptied"
            status, reasons, via_mcp = await health_reasons(server)
            assert status != "healthy" and any(said in r for r in reasons), reasons
            assert any(said in r for r in via_mcp), via_mcp
            code, body = await ready(server.port)
            assert code == 503 and said in body["reason"], body
            assert "a restart does not" in body["reason"] or "before and after it went" in body["reason"], body


async def test_a_deleted_shared_memory_index_is_reported_and_no_second_opener_corrupts_the_database() -> None:
    """With the `-shm` deleted under a running server, one `vibe-jobs jobs list` (a second opener makes a new
    index, and the two overwrite each other's writes) left the file "database disk image is malformed" and lost
    acknowledged jobs, while /health and /readyz said healthy and ready."""
    with tempfile.TemporaryDirectory(prefix="vj-shm-") as tmp:
        db = Path(tmp) / "jobs.db"
        url = f"sqlite:///{db}"
        with start_http("streamable-http", args=["--store", url]) as server:
            async with http_client_for(server, "auto") as client:
                before = [await start(client, "echo", {"text": f"a{i}"}) for i in range(20)]
                os.unlink(f"{db}-shm")
                status, reasons, via_mcp = await health_reasons(server)
                said = f"the shared-memory index {db}-shm was deleted or replaced while open"
                assert status != "healthy" and any(said in r for r in reasons), reasons
                assert any(said in r for r in via_mcp), via_mcp
                cli = [*SERVER[:3], "jobs", "list", "--store", url]
                second = await anyio.run_process(cli, cwd=ROOT, env={**os.environ, **BASE_ENV}, check=False)
                said = second.stderr.decode()
                (holder,) = children(server.proc.pid)  # the store's own process has the file open
                assert second.returncode == 1 and f"is open in process {holder}, whose shared-memory index" in said
                assert "opening it now would corrupt it" in said
                after = [await start(client, "echo", {"text": f"b{i}"}) for i in range(20)]
                for job_id in before + after:
                    done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
                    assert structured(done)["status"] == "completed"
        with closing(sqlite3.connect(db)) as check:
            assert check.execute("PRAGMA quick_check").fetchone() == ("ok",)
            stored = {row[0] for row in check.execute("SELECT id FROM jobs")}
    assert set(before + after) <= stored


@pytest.mark.postgres
async def test_readyz_turns_503_when_postgresql_stops_and_200_after_it_restarts() -> None:
    if (why := pgcluster.available()) is not None:
        pytest.skip(why)
    pg = pgcluster.PgCluster(free_port())  # a cluster of its own: the shared 5432 is never stopped
    try:
        await anyio.to_thread.run_sync(pg.init)
        await anyio.to_thread.run_sync(pg.start)
        with serve_store(pg.url) as (port, _):
            assert await ready(port) == (200, {"status": "ready"})
            await anyio.to_thread.run_sync(pg.shutdown, "fast")
            body = await until_ready(port, 503)
            assert body["status"] == "unavailable" and body["reason"]
            await anyio.to_thread.run_sync(pg.start)
            await until_ready(port, 200)
    finally:
        await anyio.to_thread.run_sync(pg.stop)
        shutil.rmtree(pg.root, ignore_errors=True)
