"""The product's processes in a fault run: `vibe-jobs serve` replicas and `vibe-jobs worker`s.

A `Slot` is one role (worker-0, replica-1, server) whose process the nemesis kills, pauses and
restarts; every start and every unexpected exit goes to the history. Each process logs to its own
stderr file in the run directory (O_APPEND: restarts of one slot append to it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import ROOT, wait_for_port
from tests.faults.history import HistoryWriter


@dataclass
class Slot:
    name: str
    args: list[str]
    env: dict[str, str]
    directory: Path
    history: HistoryWriter
    port: int | None = None  # an MCP server's port
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    expected_exit: bool = False
    stderr_from: int = 0  # where the current process's output begins in the slot's stderr file

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"{self.name}.stderr"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "vibe_jobs", *self.args]
        self.stderr_from = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=err
            )
        self.expected_exit = False
        self.pids.append(self.proc.pid)
        self.history.emit("harness", "proc-start", process_name=self.name, pid=self.proc.pid, port=self.port)

    def wait_ready(self, seconds: float = 60) -> None:
        if self.port is not None and self.proc is not None:
            wait_for_port(self.port, self.proc, seconds)

    def listening(self) -> bool:
        """Whether its MCP port accepts connections (always true for a process without one)."""
        if self.port is None:
            return True
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (after SIGCONT would be pointless: a stopped process dies of SIGKILL too)."""
        if self.proc is None:
            return
        self.expected_exit = True
        self.signal(signal.SIGKILL)
        self.proc.wait(30)

    def store_process(self) -> int | None:
        """The pid of its SQLite store's server process (a child running store/sqlite/server.py), if one runs."""
        if self.proc is None:
            return None
        for child in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue  # it ended meanwhile
            if b"sqlite/server.py" in cmdline:
                return int(child)
        return None

    def exited_unexpectedly(self) -> int | None:
        """The exit code of a process that ended without the harness killing it (once), else None."""
        if self.proc is None or self.expected_exit:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self.expected_exit = True
        return code

    def exit_reason(self) -> str:
        """What the current process said last on its way out: its last `vibe-jobs: ...` line (the CLI's
        one-line error; library log noise may follow it), else its last line."""
        with self.stderr_path.open("rb") as f:
            f.seek(self.stderr_from)
            lines = f.read().decode(errors="replace").strip().splitlines()
        ours = [line for line in lines if line.startswith("vibe-jobs:")]
        return (ours or lines or [""])[-1][-500:]

    def stop(self) -> None:
        """End of run: a clean SIGTERM (a stopped process is resumed first), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.expected_exit = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
