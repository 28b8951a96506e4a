"""One call at a time, shared by the callers that ask while it waits: a read that anybody may ask for as often
as they like (a health probe, a metrics scrape: unauthenticated, at any rate) costs the store one call at a
time, however many ask, and every answer is still as fresh as the caller's own call would have been."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class SharedCall(Generic[T]):
    """`await shared()` answers what `fn()` returned in a call that began after the caller asked.

    One call runs at a time. Callers that ask while one runs cannot use it (it may have read before they
    asked): they wait for it to end and share the one call that begins next, its value or its error (a store
    that fails costs one failure at a time, not one per caller in turn). A call that was cancelled (its caller
    went away) gives nobody its outcome: the next caller in line makes a call of its own.
    """

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = anyio.Lock()  # fair: callers take turns in the order they asked
        self._begun = 0  # calls begun so far; the number of a call is its place in that count
        # (the number of the call, what it returned or raised)
        self._last: tuple[int, T | None, Exception | None] | None = None

    async def __call__(self) -> T:
        asked = self._begun  # a call numbered higher than this began after this caller asked
        async with self._lock:
            last = self._last
            if last is not None and last[0] > asked:
                return _outcome(last[1], last[2])
            self._begun += 1
            number = self._begun
            try:
                value = await self._fn()
            except Exception as exc:
                self._last = (number, None, exc)
                raise
            self._last = (number, value, None)
            return value


def _outcome(value: T | None, error: Exception | None) -> T:
    if error is not None:
        raise error
    return value  # type: ignore[return-value]  # a call that raised nothing returned a T
