"""Store outages: the one rule for work a process does in the background while its store fails.

The database restarts, a connection is cut, SQLite is locked, the disk is full: the store raises a
`StoreError`. Inside a long-lived loop (the maintenance beat: leases, recovery, retention; the claim
round: listening, claims, renewals, sweeps; the local timers; the schedule ticker) or in a write that
must land (a finished job's outcome, a claim, a dependent's failure), that never ends the process:
the failure is logged at warning (stderr), the step waits a backoff (doubling from `first` up to
`most`, started over once the store answers again) and is tried again.

A loop goes on through every store failure (health reports a damaged store meanwhile); a write is
tried again while the failure is transient (`StoreError.transient`) and given up, logged as an error,
on one that is not (a running job given up is recovered once its lease lapses). Steps that run
concurrently (an anyio task group) fail with an exception group: one made of store errors only is a
store failure like any other. Anything else is a bug, and propagates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from vibe_jobs.errors import StoreError
from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.outages")

FIRST_DELAY = 0.1  # seconds before the first retry ...
MOST_DELAY = 2.0  # ... doubling up to this while the store keeps failing


def store_failure(exc: BaseException) -> StoreError | None:
    """The store failure `exc` is: a `StoreError`, or a group of them only (its first); else None."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        errors, rest = exc.split(StoreError)
        if rest is None and errors is not None:
            return store_failure(errors.exceptions[0])
    return None


@dataclass
class StoreRetry:
    """How one loop (or one write) outlives store failures: `event` is what it logs on each of them,
    `on_failure` (the manager's `store_failed`: health) is told of each."""

    event: str
    first: float = FIRST_DELAY
    most: float = MOST_DELAY
    on_failure: Callable[[StoreError], None] | None = None
    failures: int = field(default=0, init=False)  # in a row
    refused: StoreError | None = field(default=None, init=False)  # the last failure `until_done` gave up on

    async def attempt(self, step: Callable[[], Awaitable[Any]], *, pause: bool = True, **fields: Any) -> bool:
        """One run of a loop's `step`: True when it worked; after a store failure (logged), False once
        the backoff has passed (`pause=False`: at once)."""
        failure = await self._once(step)
        if failure is None:
            return True
        delay = self._failed(failure, fields)
        if pause:
            await anyio.sleep(delay)
        return False

    async def until_done(self, step: Callable[[], Awaitable[Any]], **fields: Any) -> bool:
        """Run `step` until it works (True), through transient store failures; False after a store
        failure that is not transient (logged as an error, kept as `refused`: trying the same again at
        once would fail again)."""
        while (failure := await self._once(step)) is not None:
            if not failure.transient:
                self.refused = failure
                log.error(self.event, error=_text(failure), gave_up=True, **fields)
                return False
            await anyio.sleep(self._failed(failure, fields))
        return True

    async def _once(self, step: Callable[[], Awaitable[Any]]) -> StoreError | None:
        """Run `step`: None when it worked (the run of failures is over), else the store failure it met;
        anything that is not a store failure propagates."""
        try:
            await step()
        except Exception as exc:
            failure = store_failure(exc)
            if failure is None:
                raise
            return failure
        self.failures = 0
        return None

    def _failed(self, failure: StoreError, fields: dict[str, Any]) -> float:
        """Note a failure (health, the log); the seconds to wait before trying again."""
        self.failures += 1
        delay = min(self.most, self.first * 2.0 ** min(self.failures - 1, 30))
        if self.on_failure is not None:
            self.on_failure(failure)
        log.warning(self.event, error=_text(failure), retry_in=round(delay, 3), failures=self.failures, **fields)
        return delay


def _text(failure: StoreError) -> str:
    return f"{type(failure).__name__}: {failure}"
