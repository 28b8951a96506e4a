"""The real `vibe-jobs serve` under tight process limits (setrlimit in the child before it starts), pushed past them."""

from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client

from tests.e2e.conftest import BASE_ENV, ROOT, SERVER, free_port, stop, wait_for_port
from tests.e2e.test_jobs_e2e import read, start, structured, texts

pytestmark = pytest.mark.timeout(60)


def limited(**limits: int) -> Callable[[], None]:
    """A preexec_fn that sets each `RLIMIT_<NAME>` given (soft and hard) in the child before it starts."""

    def preexec() -> None:
        for name, value in limits.items():
            resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (value, value))

    return preexec


@dataclass
class Limited:
    proc: subprocess.Popen[bytes]
    port: int
    errlog: IO[bytes]
    home: Path

    def stderr(self) -> str:
        self.errlog.seek(0)
        return self.errlog.read().decode(errors="replace")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def get(self, path: str, timeout: float = 2.0) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as answer:
            return int(answer.status)


@contextmanager
def limited_http(
    preexec: Callable[[], None], store: str = "memory://", env: dict[str, str] | None = None, logged: int = 0
) -> Iterator[Limited]:
    """A streamable-HTTP `vibe-jobs serve` started under the limits `preexec` sets; stderr kept in a file that
    holds `logged` bytes already."""
    port = free_port()
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        errlog = stack.enter_context(tempfile.TemporaryFile())
        errlog.write(b"x" * logged)
        errlog.flush()
        environ = {**os.environ, **BASE_ENV, "VIBE_JOBS_ROOTS": str(home), **(env or {})}
        cmd = [*SERVER, "--store", store, "--transport", "streamable-http", "--port", str(port)]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=errlog, preexec_fn=preexec
        )
        try:
            wait_for_port(port, proc)
            yield Limited(proc, port, errlog, home)
        finally:
            stop(proc)


def health(connection: http.client.HTTPConnection) -> dict[str, Any]:
    connection.request("GET", "/health")
    answer = connection.getresponse()
    return dict(json.loads(answer.read()))


def until_answered(server: Limited, path: str, seconds: float) -> float:
    """Seconds until `path` answers 200 (each try given up after a second), or AssertionError at `seconds`."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        try:
            if server.get(path, timeout=1.0) == 200:
                return time.monotonic() - began
        except OSError:
            pass  # timed out in the backlog, or refused: try again
    raise AssertionError(f"{path} did not answer within {seconds} s\n{server.stderr()[-2000:]}")


def test_more_clients_than_open_files_neither_spin_nor_flood_and_the_server_recovers() -> None:
    """Past RLIMIT_NOFILE, accepting fails with EMFILE: asyncio retried it 2,048 times per wake-up (65,000 log
    lines with tracebacks in 17 s, the loop at 44 % CPU). Now: one line naming the limit, an idle loop, health
    degraded naming it (asked on a connection opened before), and once the clients leave, new connections are
    served again."""
    with limited_http(limited(nofile=64)) as server, ExitStack() as clients:
        kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)  # opened before the files ran out
        clients.callback(kept.close)
        assert health(kept)["status"] == "healthy"
        for _ in range(100):  # idle connections, twice the limit: each the server accepts takes a file
            clients.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        began = server.cpu_seconds()
        deadline = time.monotonic() + 1.5
        while "http.out_of_files" not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the log: there is no event for a line another process writes
        time.sleep(0.7)  # the measured time: CPU used while out of files
        assert server.cpu_seconds() - began < 0.2
        said = health(kept)
        assert said["status"] == "degraded" and "RLIMIT_NOFILE 64" in " ".join(said["reasons"]), said
        clients.close()
        until_answered(server, "/healthz", 4.0)
        assert server.proc.poll() is None
        log = server.stderr()
    assert log.count("http.out_of_files") == 1, log[-2000:]
    assert "out of system resource" not in log and "Traceback" not in log, log[-3000:]
    assert len(log.splitlines()) < 60, log[-2000:]


def test_a_store_that_cannot_grow_at_start_names_the_file_size_limit(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE the schema's COMMIT failed and rolled back itself; the ROLLBACK after it then failed
    ("cannot rollback - no transaction is active") and hid why. Now the refusal names the limit."""
    env = {**os.environ, **BASE_ENV}
    cmd = [*SERVER[:3], "serve", "--store", f"sqlite:///{tmp_path / 'jobs.db'}"]
    done = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        preexec_fn=limited(fsize=200_000),
    )
    said = done.stderr.decode(errors="replace")
    assert done.returncode != 0 and done.stdout == b"", said
    assert "RLIMIT_FSIZE" in said and "200,000 bytes" in said and "cannot rollback" not in said, said
    assert "Traceback" not in said, said


async def test_a_write_ahead_log_at_the_file_size_limit_is_emptied_and_jobs_are_stored(tmp_path: Path) -> None:
    """SQLite copies its write-ahead log into the database once a commit finds it past 4 MiB. Under a smaller
    RLIMIT_FSIZE the log reached the limit first: every write failed from then on (jobs stayed running, calls
    failed) while the database itself was 4 KiB. Now a write that finds no room empties the log and is retried."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with limited_http(limited(fsize=3_000_000), store=store) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=30) as client:
            ids = [await start(client, "echo", {"text": f"{i:x}" * 8, "count": 3_000}) for i in range(15)]
            for job_id in ids:  # about 100 KB each: 1.2 MB on top of what the server wrote at start
                answer, body = await read(client, job_id, waitSeconds=10)
                assert body.get("status") == "completed", (answer.content, server.stderr()[-3000:])
        assert server.proc.poll() is None
        log = server.stderr()
    assert "store_error" not in log and "Traceback" not in log, log[-3000:]


async def test_commands_past_the_open_files_limit_fail_naming_it_and_later_ones_run() -> None:
    """Each running command holds its pipes (and a pidfd): past RLIMIT_NOFILE a command cannot start. Its job
    fails at once, naming the limit and its value (it said only "Too many open files"); the jobs that started
    complete, the server serves on, and once they ended a command starts again. The log names the limit once a
    minute, not with a traceback per job."""
    env = {"VIBE_JOBS_ALLOWED_COMMANDS": "sleep"}
    with limited_http(limited(nofile=24), env=env) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=30) as client:
            ids = [await start(client, "run-command", {"command": ["sleep", "0.5"]}) for _ in range(12)]
            messages = {}
            for job_id in ids:
                _, body = await read(client, job_id, waitSeconds=10)
                messages[job_id] = (body["status"], body["message"])
            failed = [message for status, message in messages.values() if status == "failed"]
            assert failed and all("RLIMIT_NOFILE" in m and "is 24" in m for m in failed), messages
            assert any(status == "completed" for status, _ in messages.values()), messages
            _, body = await read(
                client, await start(client, "run-command", {"command": ["sleep", "0"]}), waitSeconds=10
            )
            assert body["status"] == "completed", body
        assert server.proc.poll() is None
        log = server.stderr()
    assert log.count("job.limit_reached") == 1 and "RLIMIT_NOFILE" in log, log[-3000:]  # not a traceback a job
    assert "job.raised" not in log and "Traceback" not in log, log[-3000:]


async def test_a_command_that_could_not_start_on_a_limit_is_retried_when_its_job_allows_retries() -> None:
    """A start that failed on a limit of the server's process (nothing of the command ran; the limit frees as the
    commands running end) failed its job for good, though the caller asked for retries (maxRetries)."""
    env = {"VIBE_JOBS_ALLOWED_COMMANDS": "sleep"}
    with limited_http(limited(nofile=24), env=env) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=30) as client:
            args = {"tool": "run-command", "arguments": {"command": ["sleep", "0.5"]}, "maxRetries": 5}
            ids = [str(structured(await client.call_tool("submit-job", args))["jobId"]) for _ in range(12)]
            outcomes = [(await read(client, job_id, waitSeconds=30))[1] for job_id in ids]
    assert all(body["status"] == "completed" for body in outcomes), [body["message"] for body in outcomes]
    assert any(body["metrics"]["retryCount"] > 0 for body in outcomes), "no start failed: the test proves nothing"


def test_requests_past_the_connection_limit_are_refused_and_said_once() -> None:
    """Past uvicorn's connection limit (the open-files limit less what jobs keep: 64 at least) each request is
    answered 503, and uvicorn logged "Exceeded concurrency limit." for each one: a flood under load. Now the
    log says it once a minute, naming the limit."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with limited_http(limited(nofile=256)) as server, ExitStack() as clients:
        answers = []
        for _ in range(100):  # each kept alive after its answer: 64 held (this one counted), the rest refused
            client = clients.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=2))
            client.sendall(request)
            answers.append(client.recv(4096).split(b" ", 2)[1])
        assert 60 <= answers.count(b"200") <= 64 and answers.count(b"503") == 100 - answers.count(b"200"), answers
        clients.close()
        until_answered(server, "/healthz", 4.0)
        log = server.stderr()
    assert log.count("Exceeded concurrency limit") + log.count("http.connections_limit") == 1, log[-2000:]
    assert "limit of 64 connections" in log, log[-2000:]


async def test_a_log_file_at_the_file_size_limit_drops_lines_and_the_jobs_go_on(tmp_path: Path) -> None:
    """stderr to a file that reached RLIMIT_FSIZE: each log line failed with EFBIG, raised in the code that logged
    it; the executor's `job.raised` then ended the run's task, the job stayed running for ever and its caller's
    long-poll waited. A line that cannot be written is dropped: logging never stops the work."""
    limit = 3_000_000
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"VIBE_JOBS_LOG_LEVEL": "info"}  # the server's first lines fill the room left
    with limited_http(limited(fsize=limit), store=store, env=env, logged=limit - 1000) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=10) as client:
            for _ in range(3):
                job_id = await start(client, "explode", {"message": "boom " * 200})
                _, body = await read(client, job_id, waitSeconds=5)
                assert body["status"] == "failed" and "boom" in body["message"], body
        assert server.proc.poll() is None
        assert len(server.stderr()) == limit


async def test_a_store_at_the_file_size_limit_still_answers_reads_of_finished_jobs(tmp_path: Path) -> None:
    """Once the database itself reached RLIMIT_FSIZE, a write fails with an I/O error (EFBIG), not SQLITE_FULL,
    and was taken for a fault of the store: even reading a finished job (its read is recorded) failed. It is
    the store being full now (`StoreFull`: transient, the log naming the limit): reads are answered, and an
    outcome that finds no room is retried."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with limited_http(limited(fsize=3_000_000), store=store) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=30) as client:
            args = {"text": "0123456789abcdef", "count": 16_000}  # about 250 KB stored a job: full within a dozen
            first = await start(client, "echo", args)
            _, body = await read(client, first, waitSeconds=10)
            assert body["status"] == "completed", body
            for _ in range(30):
                _, body = await read(client, await start(client, "echo", args), waitSeconds=2)
                if body["status"] != "completed":
                    break  # its outcome found no room: retried meanwhile
            else:
                raise AssertionError("the store never filled")
            answer, body = await read(client, first)
            assert not answer.is_error and body["status"] == "completed", texts(answer)
        assert server.proc.poll() is None
        log = server.stderr()
    assert "RLIMIT_FSIZE" in log, log[-2000:]


@pytest.mark.parametrize("files", [7, 9])
def test_a_store_process_that_cannot_start_for_want_of_files_is_one_line(tmp_path: Path, files: int) -> None:
    """The SQLite store runs in a child process reached through a socket pair: under RLIMIT_NOFILE 7 the pair
    could not be made and `serve` died with a traceback (9: the child could not start, one line already)."""
    cmd = [*SERVER[:3], "serve", "--store", f"sqlite:///{tmp_path / 'jobs.db'}"]
    done = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **BASE_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        preexec_fn=limited(nofile=files),
    )
    said = done.stderr.decode(errors="replace")
    assert done.returncode != 0 and done.stdout == b"", said
    assert "Traceback" not in said and "Too many open files" in said and len(said.splitlines()) == 1, said


async def test_a_result_the_server_has_no_memory_to_store_fails_its_job_saying_so() -> None:
    """A result of 400 MB of JSON that is one 4 MB string held 100 times over, under a 250 MB RLIMIT_AS: storing it
    ran out of memory, and the job failed as "a fault in vibe-jobs", which tells its caller nothing to act on. Now it
    fails saying the server ran out of memory storing its result; the server answers on and runs the next job."""
    env = {"VIBE_JOBS_TOOLS": "tests.e2e.memory_tools"}
    with limited_http(limited(**{"as": 250 << 20}), env=env) as server:
        async with Client(f"http://127.0.0.1:{server.port}/mcp", read_timeout_seconds=30) as client:
            job_id = await start(client, "repeated_blocks", {"mb": 4, "times": 100})
            _, body = await read(client, job_id, waitSeconds=20)
            assert body["status"] == "failed", body
            assert "out of memory storing its result" in body["message"], body["message"]
            assert "fault in vibe-jobs" not in body["message"], body["message"]
            _, body = await read(client, await start(client, "echo", {"text": "after"}), waitSeconds=10)
            assert body["status"] == "completed", body
        assert server.proc.poll() is None
        log = server.stderr()
    assert log.count("job.out_of_memory") == 1 and "job.unsettled" not in log, log[-3000:]
