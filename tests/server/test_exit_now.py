"""`stopping.exit_now`: a process that leaves work behind ends after its exit handlers ran, each as at a normal exit,
however long one takes (a watchdog). It is called from inside the event loop (`jobserver.leave_work_behind`), so a
handler that runs a loop of its own (`asyncio.run`: an async client's last flush) must not meet the running one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

PROGRAM = """
import asyncio, atexit, sys, time
import anyio
from vibe_jobs.server.stopping import exit_now

async def goodbye():
    await asyncio.sleep(0)
    return "async handler ran"

def run_a_loop():
    print(asyncio.run(goodbye()), flush=True)

atexit.register(print, "plain handler ran", flush=True)  # runs last (handlers run last registered first)
atexit.register(run_a_loop)
{extra}

async def main():
    exit_now(3, {within})

anyio.run(main)
print("after the loop", flush=True)
"""


def _run(extra: str = "", within: float = 5.0) -> tuple[subprocess.CompletedProcess[str], float]:
    source = textwrap.dedent(PROGRAM).format(extra=extra, within=within)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - began


def test_an_exit_handler_that_runs_a_loop_of_its_own_runs() -> None:
    done, _ = _run()
    assert done.returncode == 3, done.stderr
    # before: "RuntimeError: asyncio.run() cannot be called from a running event loop", the handler lost
    assert done.stdout.splitlines() == ["async handler ran", "plain handler ran"], done.stderr[-2000:]


def test_a_handler_that_hangs_is_cut_short_by_the_watchdog() -> None:
    done, took = _run("atexit.register(time.sleep, 60)", within=0.5)
    assert done.returncode == 3, done.stderr
    assert took < 10, took
    assert "plain handler ran" not in done.stdout  # cut short at the hanging one (it runs first)
