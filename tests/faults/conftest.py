"""The fault runs take minutes. Marked `slow`, they need RUN_SLOW=1 like every slow suite (tests/conftest.py);
marked `faults`, they also need to be selected explicitly (their file, or a test of it, named on the command
line, as `make faults-ci` does from `.ci/run`) or RUN_FAULTS=1. So `make test` never runs them, and the
RUN_SLOW=1 `make test` of `.ci/run` does not run them a second time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.faults import pgcluster
from tests.faults.pgcluster import PgCluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: a fault-injection run (minutes); see tests/faults/conftest.py")


def _selected(config: pytest.Config, item: pytest.Item) -> bool:
    here = Path(str(item.path)).resolve()
    for arg in config.args:
        path = Path(str(config.rootpath), arg.split("::")[0]).resolve()
        if path == here:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RUN_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="a fault run: select tests/faults/test_faults.py explicitly or set RUN_FAULTS=1")
    for item in items:
        if item.get_closest_marker("faults") is not None and not _selected(config, item):
            item.add_marker(skip)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own (never the shared server on 5432), which the test may stop,
    crash and start again; skipped without PostgreSQL's binaries (a failure under VIBE_JOBS_REQUIRE_POSTGRES=1)."""
    reason = pgcluster.available()
    if reason is not None:
        if os.environ.get("VIBE_JOBS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"VIBE_JOBS_REQUIRE_POSTGRES=1 but no PostgreSQL cluster can start here: {reason}")
        pytest.skip(reason)
    pg = PgCluster(free_port())
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        pg.remove(tmp_path)  # its server log stays in the test's directory
