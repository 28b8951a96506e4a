"""The proxy's own restart recovers its jobs as `vibe-jobs serve` does (SQLite, the default kind of store):
`kill -9` the proxy mid-job, start it again on the same file. A job of a tool annotated `idempotentHint: true`
(server-everything's trigger-long-running-operation) runs again and completes; a job of one that is not
(tests/e2e/proxy_upstream.py's slow-write) fails as interrupted, never run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import Client

from tests.e2e.conftest import BASE_ENV, ROOT, free_port, stop, wait_for_port
from tests.e2e.proxy_fixtures import FAKE, TAP, Tap, started, texts, until, upstream_command, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

LONG_TEXT = "Long running operation completed. Duration: 4 seconds, Steps: 4."


@contextmanager
def proxy(db: Path, tap: Tap, everything: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "vibe_jobs", "proxy", "--store", f"sqlite:///{db}",
        "--transport", "streamable-http", "--port", str(port),
        "--upstream", "ev=" + " ".join(everything),
        "--upstream", "fake=" + " ".join([*TAP, str(tap.path), "--", *FAKE]),
    ]  # fmt: skip
    env = {**os.environ, **BASE_ENV, "VIBE_JOBS_LEASE_SECONDS": "1"}
    with (db.parent / f"proxy-{port}.stderr").open("ab") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_port(port, proc, 30)
        yield proc, f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)  # not a second time when the test killed it


async def test_a_killed_proxy_recovers_its_jobs_on_restart(tmp_path: Path) -> None:
    everything, tap, db = upstream_command("everything"), Tap(tmp_path / "tap.log"), tmp_path / "jobs.db"
    with proxy(db, tap, everything) as (proc, url):
        async with Client(url, mode="auto", read_timeout_seconds=60) as client:
            long_id = started(await client.call_tool("ev.trigger-long-running-operation", {"duration": 4, "steps": 4}))
            write_id = started(await client.call_tool("fake.slow-write", {"seconds": 60}))
            await until(client, long_id, ("running",))
            await until(client, write_id, ("running",))
            wait_for(lambda: any(m.get("method") == "tools/call" for m in tap.received()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with proxy(db, tap, everything) as (_, url):
        async with Client(url, mode="auto", read_timeout_seconds=60) as client:
            done = await until(client, long_id, ("completed", "failed", "cancelled"), seconds=60)
            failed = await until(client, write_id, ("completed", "failed", "cancelled"))
    assert done["status"] == "completed" and texts(done["result"]) == [LONG_TEXT]
    assert failed["status"] == "failed" and "interrupted" in failed["message"]
    assert sum(m.get("method") == "tools/call" for m in tap.received()) == 1  # slow-write never ran again
