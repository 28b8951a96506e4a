"""Shared fixtures: a fake clock, and a JobManager on the in-memory store driven by it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from vibe_jobs.events import EventBus
from vibe_jobs.logs import configure_logging
from vibe_jobs.manager import JobManager
from vibe_jobs.settings import Settings
from vibe_jobs.store import MemoryStore

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
def make_manager(clock: FakeClock, settings: Settings) -> ManagerFactory:
    """Build a JobManager on a fresh MemoryStore with the fake clock; keyword overrides allowed."""

    def make(**kwargs: Any) -> JobManager:
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("bus", EventBus())
        store = kwargs.pop("store", None) or MemoryStore()
        return JobManager(store, **kwargs)

    return make


@pytest.fixture
def manager(make_manager: ManagerFactory) -> JobManager:
    return make_manager()


@pytest.fixture
def store(manager: JobManager) -> MemoryStore:
    """The manager's store, typed as the inspectable MemoryStore."""
    assert isinstance(manager.store, MemoryStore)
    return manager.store
