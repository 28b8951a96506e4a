"""A PostgreSQL cluster of the fault run's own, so the nemesis can restart it.

`initdb` into a temporary directory of its own (the postgres user must reach it, which a pytest
tmp_path under a 0700 parent does not allow; `remove` copies the server log into the run directory
and deletes it), started as the `postgres` OS user (`runuser -u postgres --`
when this process is root, as on these machines), listening on 127.0.0.1 at a port of its own,
trust auth. The shared server on 5432 that other tests use is never touched: every command here
names this cluster's data directory (`pg_ctl -D ...`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(os.environ.get("VIBE_JOBS_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


def available() -> str | None:
    """Why a private cluster cannot run here, or None when it can."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {BIN} (set VIBE_JOBS_FAULTS_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without `runuser` to start PostgreSQL as the postgres user"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no '{OS_USER}' OS user to run PostgreSQL"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgCluster:
    """One data directory (root/pgdata, root a new temporary directory), on 127.0.0.1:`port`."""

    port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vj-faults-pg-")))

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        out = subprocess.run(
            _as_postgres([str(BIN / args[0]), *args[1:]]), capture_output=True, text=True, timeout=timeout, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")

    def init(self) -> None:
        self.data.mkdir()
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        conf = {
            "listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.data}'",
            "max_connections": "300", "shared_buffers": "64MB",
            # Only a crash of the machine (not of PostgreSQL, which is all the nemesis does) needs fsync.
            "fsync": "off", "full_page_writes": "off", "logging_collector": "off",
        }  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")

    def shutdown(self, mode: str) -> None:
        """`pg_ctl stop -m fast|immediate` (immediate: as if PostgreSQL crashed; it recovers from WAL on start)."""
        if mode not in ("fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def start_if_stopped(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            self.start()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.shutdown("immediate")

    def remove(self, keep_log_in: Path) -> None:
        """Stop it, keep its log as `keep_log_in`/postgres.log, delete the data directory."""
        self.stop()
        log = self.data / "server.log"
        if log.exists():
            shutil.copyfile(log, keep_log_in / "postgres.log")
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            ok = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            ).returncode
            if ok == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL on port {self.port} not ready within {seconds} s")
            time.sleep(0.1)  # no event tells us the server is up: poll, bounded
