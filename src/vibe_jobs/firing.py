"""When a schedule fires: pure functions of the schedule's timing and a time given by the caller.

Nothing here reads a clock, a store or the network, so every rule is tested with plain numbers.
Times are epoch milliseconds; a tick is the instant a firing is due (and, with the schedule id,
its identity: each tick fires at most once).

- `everySeconds`: ticks at `anchor + k * every` (the anchor is `startAt`, else the creation time
  plus one period).
- `cron`: 5 fields (minute hour day-of-month month day-of-week), or 6 with a leading seconds field,
  or a name (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`/`@annually`, `@midnight`),
  parsed by croniter and read as wall-clock time in the schedule's IANA timezone (zoneinfo).
  DST: a wall time that does not exist (spring forward) fires once, at the end of the gap; a wall
  time that exists twice (fall back) fires once, at its first occurrence. Every tick of a cron
  schedule is the first instant whose local wall time is at or past the cron time (`instant_of`).
- Misfires (ticks passed by more than `grace_ms`, or by more than one period when that is shorter, e.g.
  after downtime): `skip` drops them, `run_once` fires the latest of them once, `catch_up` fires the
  latest `max_catch_up` of them.
- Overlap (the previous firing's job still pending or running): `allow` fires anyway, `skip` drops
  the due ticks, `queue` holds them until that job finishes and then fires one job at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vibe_jobs.models import MAX_EPOCH_MS

if TYPE_CHECKING:
    from croniter import croniter

__all__ = [
    "CRON_NAMES",
    "DEFAULT_GRACE_MS",
    "Misfire",
    "Overlap",
    "Plan",
    "Timing",
    "check_cron",
    "check_zone",
    "instant_of",
    "next_tick",
    "plan",
    "prev_tick",
    "zone",
]

CRON_NAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
DEFAULT_GRACE_MS = 5_000  # a tick fired this late is still on time; later, it is a misfire
_SCAN_LIMIT = 100_000  # cron steps one search takes at most (a pathological expression never hangs)


class Misfire(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    CATCH_UP = "catch_up"


class Overlap(StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    QUEUE = "queue"


# Where a schedule is made (`ScheduleSpec.cron`), not at each evaluation: one stored before the cap still fires.
# croniter parses an expression at every evaluation: a 100 KB one took half a second.
MAX_CRON_CHARS = 200
_RANDOM = re.compile(r"r(\(\d+-\d+\))?(/\d+)?", re.IGNORECASE)  # croniter's R: a new draw at every parse


def check_cron(expr: str) -> str:
    """The expression, normalised, or ValueError naming what is wrong with it."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in CRON_NAMES:
            raise ValueError(f"cron {expr!r}: unknown name; use one of {', '.join(CRON_NAMES)}")
        return text.lower()
    if len(text.split(" ")) not in (5, 6):
        raise ValueError(
            f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"or 6 with a leading seconds field; got {len(text.split())}"
        )
    if any(_RANDOM.fullmatch(part) for field in text.split(" ") for part in field.split(",")):
        raise ValueError(f"cron {expr!r}: R (a random value) is not supported; name the value")
    try:
        _cron(text)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        raise ValueError(f"cron {expr!r} is not valid: {exc}") from None
    return text


@lru_cache(maxsize=256)
def _cron(text: str) -> croniter:
    it = _iterator(text, datetime(2000, 1, 1))
    it.get_next(datetime)  # an expression that can never match fails here, not at its first tick
    return it


def _iterator(text: str, begin: datetime) -> croniter:
    """croniter's iterator of a checked expression from `begin`. Imported at first use: importing croniter runs
    `file` on the interpreter (platform.architecture), a process for every command and server started."""
    from croniter import croniter

    return croniter(text, begin, second_at_beginning=len(text.split(" ")) == 6)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Etc"), a name too long
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'") from None


def check_zone(name: str) -> ZoneInfo:
    """The IANA timezone a new schedule may name, or ValueError: also refused are the names of files that each
    machine's copy of the zone database has its own way (`localtime`: a link to the machine's own zone;
    `posixrules`: a file some builds have and the tzdata package lacks; the `posix/` and `right/` directories), so
    one schedule fired at different instants, or never, on the processes that share its store. (Where a stored
    schedule is read, `zone` takes them: one made before keeps firing.)"""
    if name in ("localtime", "posixrules") or name.startswith(("posix/", "right/")):
        raise ValueError(
            f"timezone {name!r} is read differently on each machine, not an IANA name: use one such as 'UTC' or "
            "'Europe/Berlin'"
        )
    return zone(name)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule's ticks fall: exactly one of `cron` and `every_ms`."""

    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    start_at: int | None = None
    end_at: int | None = None
    created_at: int = 0

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise ValueError("give exactly one of cron and everySeconds")
        if self.every_ms is not None and self.every_ms < 1000:
            raise ValueError(f"everySeconds must be at least 1, got {self.every_ms / 1000:g}")
        if self.cron is not None:
            check_cron(self.cron)
        zone(self.timezone)
        if self.start_at is not None and self.end_at is not None and self.end_at < self.start_at:
            raise ValueError("endAt is before startAt")

    @property
    def anchor(self) -> int:
        """The first tick of an `everySeconds` schedule."""
        assert self.every_ms is not None
        return self.start_at if self.start_at is not None else self.created_at + self.every_ms


def _wall(ms: int, tz: ZoneInfo) -> datetime:
    """The local wall time (naive) at instant `ms`."""
    return datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None)


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def instant_of(wall: datetime, tz: ZoneInfo) -> int:
    """The first instant whose local wall time is at or past `wall`: the wall time itself when it exists
    once; its first occurrence when it exists twice; the end of the gap when it does not exist."""
    first, second = _ms(wall.replace(tzinfo=tz, fold=0)), _ms(wall.replace(tzinfo=tz, fold=1))
    if first <= second:
        return first  # exists (once, or twice: the first occurrence)
    lo, hi = second, first  # a gap: its end lies between the two readings, at a whole second
    while hi - lo > 1000:
        mid = lo + (hi - lo) // 2000 * 1000
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _latest_wall_before(ms: int, tz: ZoneInfo) -> datetime:
    """Where a backward walk from instant `ms` begins: its wall time, or, in the second pass of a repeated hour
    (fall back), that wall time plus the hour repeated: a tick fires at its wall time's first pass, so the first
    pass's ticks at later wall times (02:45 when `ms` is the second 02:10) are before `ms` too."""
    at = datetime.fromtimestamp(ms / 1000, tz)
    if not at.fold:
        return at.replace(tzinfo=None)
    first, second = at.replace(fold=0).utcoffset(), at.utcoffset()
    assert first is not None and second is not None
    return at.replace(tzinfo=None) + max(first - second, timedelta(0))


def _cron_walk(t: Timing, start: int, forward: bool) -> Iterator[int]:
    """Cron ticks after (or before) `start`, strictly, in order; each distinct."""
    assert t.cron is not None
    tz = zone(t.timezone)
    text = check_cron(t.cron)
    try:
        begin = _wall(start, tz) if forward else _latest_wall_before(start, tz)
    except (OverflowError, ValueError):  # past year 9999 where the zone is (ahead of UTC): no ticks
        return
    it = _iterator(text, begin)
    last = start
    for _ in range(_SCAN_LIMIT):
        try:
            tick = instant_of(it.get_next(datetime) if forward else it.get_prev(datetime), tz)
        except (OverflowError, ValueError):  # past year 9999 (or before year 1): no more ticks
            return
        if (tick > last) if forward else (tick < last):
            last = tick
            yield tick


def next_tick(t: Timing, after: int) -> int | None:
    """The first tick strictly after `after` within [startAt, endAt], or None when there is none."""
    if t.start_at is not None and after < t.start_at:
        after = t.start_at - 1
    if t.every_ms is not None:
        anchor = t.anchor
        tick = anchor if after < anchor else anchor + ((after - anchor) // t.every_ms + 1) * t.every_ms
    else:
        found = next(_cron_walk(t, after, True), None)
        if found is None:
            return None
        tick = found
    if (t.end_at is not None and tick > t.end_at) or tick > MAX_EPOCH_MS:
        return None
    return tick


def _backward(t: Timing, before: int) -> Iterator[int]:
    """Ticks strictly before `before`, latest first, down to startAt (endAt is the caller's limit)."""
    if t.every_ms is not None:
        anchor, every = t.anchor, t.every_ms
        tick = anchor + ((before - anchor - 1) // every) * every
        ticks: Iterator[int] = iter(range(tick, anchor - 1, -every)) if before > anchor else iter(())
    else:
        ticks = _cron_walk(t, before, False)
    for tick in ticks:
        if t.start_at is not None and tick < t.start_at:
            return
        yield tick


def prev_tick(t: Timing, before: int) -> int | None:
    """The last tick strictly before `before` and at or after startAt (endAt is the caller's limit)."""
    return next(_backward(t, before), None)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now: fire `ticks` (in order); the schedule's next tick is then `next_fire_at` (None:
    no tick is left before endAt); `held` when ticks wait for the previous run (overlap queue)."""

    ticks: list[int] = field(default_factory=list)
    next_fire_at: int | None = None
    held: bool = False
    dropped: int = 0  # due ticks passed over without firing (misfire skip, overlap skip, catch-up limit)


def _due(t: Timing, first: int, now: int, grace_ms: int, late_wanted: int) -> tuple[list[int], list[int], int]:
    """(late ticks wanted, on-time ticks, late ticks passed over) among the ticks in [first, now],
    walking back from `now` (so downtime of any length costs a bounded walk)."""
    on_time: list[int] = []
    late: list[int] = []
    passed = 0
    top = now if t.end_at is None else min(now, t.end_at)
    for tick in _backward(t, top + 1):
        if tick < first or passed >= 1000:  # past 1000 passed over, the count says "many"
            break
        if not on_time and not late:  # the latest due tick: a tick is late by more than its period, too
            grace_ms = min(grace_ms, _period(t, tick) or grace_ms)
        if tick > now - grace_ms:
            on_time.append(tick)
        elif len(late) < late_wanted:
            late.append(tick)
        else:
            passed += 1
    return late[::-1], on_time[::-1], passed


def _period(t: Timing, tick: int) -> int | None:
    """The time from `tick` to the tick after it (None: none follows)."""
    if t.every_ms is not None:
        return t.every_ms
    after = next(_cron_walk(t, tick, True), None)
    return after - tick if after is not None else None


def plan(
    t: Timing,
    next_fire_at: int | None,
    now: int,
    *,
    misfire: Misfire = Misfire.RUN_ONCE,
    max_catch_up: int = 10,
    overlap: Overlap = Overlap.ALLOW,
    previous_active: bool = False,
    grace_ms: int = DEFAULT_GRACE_MS,
) -> Plan:
    """The ticks to fire at `now`, given the first tick not yet dealt with (`next_fire_at`)."""
    if next_fire_at is None or next_fire_at > now:
        return Plan([], next_fire_at)
    if previous_active and overlap is Overlap.QUEUE:
        return Plan([], next_fire_at, held=True)
    wanted = {Misfire.SKIP: 0, Misfire.RUN_ONCE: 1, Misfire.CATCH_UP: max(0, max_catch_up)}[misfire]
    late, on_time, passed = _due(t, next_fire_at, now, grace_ms, wanted)
    ticks = late + on_time
    after = next_tick(t, now)
    if previous_active and overlap is Overlap.SKIP:
        return Plan([], after, dropped=passed + len(ticks))
    if overlap is Overlap.QUEUE and len(ticks) > 1:
        return Plan(ticks[:1], ticks[1], dropped=passed)  # one at a time; the rest wait their turn
    if overlap is Overlap.SKIP and len(ticks) > 1:
        # the first fires; each later one is due while that job is pending: dropped (all fired at once, they ran
        # side by side, what skip is there to prevent)
        return Plan(ticks[:1], after, dropped=passed + len(ticks) - 1)
    return Plan(ticks, after, dropped=passed)
