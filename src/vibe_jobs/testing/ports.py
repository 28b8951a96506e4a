"""Ports of the servers a test or a benchmark starts as a process of its own (`vibe-jobs serve --transport
streamable-http --port N`), and how such a process is stopped. Not loaded by default."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any


def free_port() -> int:
    """A loopback port free now (the server started next binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], seconds: float = 20.0) -> None:
    """Until `proc` listens on `port`: RuntimeError as soon as it exits, TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet: there is no event to wait on
    raise TimeoutError(f"server did not listen on {port} within {seconds} s")


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it has not exited after `grace` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
