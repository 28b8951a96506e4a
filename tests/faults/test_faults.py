"""The bounded fault runs (`.ci/run`, `make faults-ci`): both flavours with a fixed seed, 0 violations.

cluster: 90 s of faults on 2 replicas and 3 workers over PostgreSQL (see run.py and nemesis.py);
sqlite: one server SIGKILLed 20 times under load. Each prints the checker's table. `make faults`
runs the long profile (MINUTES, SEED) outside pytest.

Marked slow and `faults`: they run only when selected explicitly or with RUN_FAULTS=1 (conftest.py).
Needs PostgreSQL 15's binaries (the run starts a cluster of its own; the server on 5432 is not used).

Every violation, of any kind, fails the test (the product bugs these runs found are fixed, each with a
focused test: tests/engine/test_takeovers.py, tests/faults/test_pg_restart.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import pgcluster
from tests.faults.run import Config, run

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

SEED = 20260716


def _needs_postgres_binaries() -> None:
    reason = pgcluster.available()
    if reason is None:
        return
    if os.environ.get("VIBE_JOBS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"VIBE_JOBS_REQUIRE_POSTGRES=1 but the fault run cannot start PostgreSQL: {reason}")
    pytest.skip(reason)


@pytest.fixture
def out() -> Iterator[Path]:
    """The run directory: kept when the test fails (pytest's tmp_path is recycled by any other pytest run on
    the machine, and a failed run's history is the evidence), deleted when it passes."""
    path = Path(tempfile.mkdtemp(prefix="vj-faults-ci-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _judge(cfg: Config) -> None:
    violations, text = run(cfg)
    print(f"\n{text}\n\nhistory: {cfg.out}")
    unexpected = [str(v) for v in violations]
    if unexpected:
        keep = Path(tempfile.mkdtemp(prefix="vj-faults-failed-"))
        shutil.copytree(cfg.out, keep, dirs_exist_ok=True)
        pytest.fail("\n".join([f"{len(unexpected)} violations (history kept in {keep}):", *unexpected[:30]]))


def test_a_cluster_on_postgresql_under_faults_keeps_its_promises(out: Path) -> None:
    _needs_postgres_binaries()
    _judge(Config("cluster", SEED, out / "cluster", seconds=90, rate=15, limit=8))


def test_one_server_on_sqlite_killed_twenty_times_keeps_its_promises(out: Path) -> None:
    _judge(Config("sqlite", SEED, out / "sqlite", kills=20, rate=10, limit=4))
