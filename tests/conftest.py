"""Shared fixtures: a fake clock, and a JobManager driven by it on a store: the in-memory store, or
every store kind (`STORE_KINDS`) for the tests of a module marked `every_store`, as the contract suite
(tests/store/test_contract.py) runs the stores themselves."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vibe_jobs.events import EventBus
from vibe_jobs.logs import configure_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.settings import Settings
from vibe_jobs.store import JobQuery, JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

# Logs go to stderr (never stdout) and only warnings and above, so test output stays readable.
configure_logging("warning")

START = 1_700_000_000.0  # epoch seconds: 2023-11-14


class FakeClock:
    """A clock for `JobManager(clock=...)`: epoch seconds as a float, moved only by `advance`.

    Time is kept in whole nanoseconds so that repeated advances do not drift, and
    `int(clock() * 1000)` (the manager's `now()`) is exact at millisecond steps.
    """

    def __init__(self, start: float = START) -> None:
        self._ns = round(start * 1_000_000_000)

    def __call__(self) -> float:
        return self._ns / 1_000_000_000

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._ns += round(seconds * 1_000_000_000)

    @property
    def ms(self) -> int:
        """Now in epoch milliseconds (what the manager stamps on jobs)."""
        return self._ns // 1_000_000


ManagerFactory = Callable[..., JobManager]
STORE_KINDS = ("memory", "sqlite")  # PostgreSQL runs the manager through tests/engine and tests/e2e


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `every_store` run once per store kind (the `store_kind` fixture)."""
    if "store_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("every_store"):
        metafunc.parametrize("store_kind", STORE_KINDS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` run only when RUN_SLOW=1 (`make test-all`, `.ci/run`)."""
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run it")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store the test's managers use: memory, unless the test is marked `every_store`."""
    kind: str = getattr(request, "param", "memory")
    return kind


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[JobStore]:
    """The (open) store `make_manager` builds managers on."""
    s: JobStore = MemoryStore() if store_kind == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def make_manager(clock: FakeClock, settings: Settings, store: JobStore) -> ManagerFactory:
    """Build a JobManager on the test's store with the fake clock; keyword overrides allowed."""

    def make(**kwargs: Any) -> JobManager:
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("bus", EventBus())
        return JobManager(kwargs.pop("store", None) or store, **kwargs)

    return make


@pytest.fixture
def manager(make_manager: ManagerFactory) -> JobManager:
    return make_manager()


async def stored_ids(store: JobStore) -> list[str]:
    """The ids of every job the store holds, newest first."""
    return [rec.id for rec in await store.query(JobQuery(limit=1_000_000))]
