"""Firing times, with plain numbers for the clock: every-N-seconds, cron, DST both ways in two zones,
downtime under each misfire policy, overlap policies, start and end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vibe_jobs.firing import Misfire, Overlap, Timing, check_cron, next_tick, plan, prev_tick

S = 1000
H = 3600 * S


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def ticks(t: Timing, after: int, n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):
        nxt = next_tick(t, after)
        if nxt is None:
            break
        out.append(nxt)
        after = nxt
    return out


def test_every_n_seconds_counts_from_creation_or_start() -> None:
    t = Timing(every_ms=5 * S, created_at=1_000_000)
    assert ticks(t, 1_000_000, 3) == [1_005_000, 1_010_000, 1_015_000]
    assert next_tick(t, 1_012_345) == 1_015_000
    started = Timing(every_ms=2 * S, created_at=0, start_at=50_000)
    assert ticks(started, 0, 2) == [50_000, 52_000]
    assert prev_tick(started, 53_000) == 52_000 and prev_tick(started, 50_000) is None


def test_cron_five_and_six_fields_and_names() -> None:
    start = utc(2026, 1, 1, 10, 7)
    assert ticks(Timing(cron="*/5 * * * *"), start, 3) == [utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 15),
                                                             utc(2026, 1, 1, 10, 20)]  # fmt: skip
    seconds = ticks(Timing(cron="*/20 * * * * *"), start, 3)  # the leading field is seconds
    assert seconds == [start + 20 * S, start + 40 * S, start + 60 * S]
    assert next_tick(Timing(cron="@hourly"), start) == utc(2026, 1, 1, 11)
    assert next_tick(Timing(cron="@daily"), start) == utc(2026, 1, 2)
    assert next_tick(Timing(cron="0 9 * * 1"), start) == utc(2026, 1, 5, 9)  # 2026-01-05 is a Monday


def test_cron_reads_wall_time_in_the_timezone() -> None:
    t = Timing(cron="0 9 * * *", timezone="Asia/Tokyo")
    assert next_tick(t, utc(2026, 5, 31, 12)) == utc(2026, 6, 1, 0)  # 09:00 JST


@pytest.mark.parametrize(
    ("zone", "cron", "day_before", "gap_day", "day_after"),
    [
        # Berlin springs forward on 2026-03-29 at 02:00 CET (01:00 UTC) to 03:00 CEST: 02:30 never exists
        ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),
        # New York springs forward on 2026-03-08 at 02:00 EST (07:00 UTC) to 03:00 EDT
        ("America/New_York", "30 2 * * *", utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),
    ],
)
def test_a_wall_time_in_the_spring_gap_fires_once_right_after_it(
    zone: str, cron: str, day_before: int, gap_day: int, day_after: int
) -> None:
    t = Timing(cron=cron, timezone=zone)
    assert ticks(t, day_before - 1, 3) == [day_before, gap_day, day_after]


@pytest.mark.parametrize(
    ("zone", "gap_start_utc"), [("Europe/Berlin", utc(2026, 3, 29, 1)), ("America/New_York", utc(2026, 3, 8, 7))]
)
def test_ticks_inside_the_gap_fold_into_one(zone: str, gap_start_utc: int) -> None:
    t = Timing(cron="*/15 * * * *", timezone=zone)
    # 02:00..02:45 do not exist: one firing at the end of the gap (= 03:00), then 03:15
    got = ticks(t, gap_start_utc - 16 * 60 * S, 4)
    assert got == [gap_start_utc - 15 * 60 * S, gap_start_utc, gap_start_utc + 15 * 60 * S, gap_start_utc + 30 * 60 * S]


@pytest.mark.parametrize(
    ("zone", "cron", "first", "next_day"),
    [
        # Berlin falls back on 2026-10-25 at 03:00 CEST (01:00 UTC) to 02:00 CET: 02:30 exists twice
        ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # New York falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST: 01:30 exists twice
        ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
    ],
)
def test_a_repeated_wall_time_fires_once(zone: str, cron: str, first: int, next_day: int) -> None:
    t = Timing(cron=cron, timezone=zone)
    assert ticks(t, first - 1, 2) == [first, next_day]


@pytest.mark.parametrize(("zone", "fold_start_utc"), [("Europe/Berlin", utc(2026, 10, 25, 0)),
                                                      ("America/New_York", utc(2026, 11, 1, 5))])  # fmt: skip
def test_the_repeated_hour_fires_once_per_wall_time(zone: str, fold_start_utc: int) -> None:
    t = Timing(cron="*/15 * * * *", timezone=zone)
    got = ticks(t, fold_start_utc - 1, 5)
    # four ticks in the first pass of the hour, none in the second, then the hour after it
    q = 15 * 60 * S
    assert got == [fold_start_utc, fold_start_utc + q, fold_start_utc + 2 * q, fold_start_utc + 3 * q,
                   fold_start_utc + 2 * H]  # fmt: skip
    # walking back gives the same ticks (the misfire walk uses it)
    assert prev_tick(t, fold_start_utc + 2 * H) == fold_start_utc + 3 * q


@pytest.mark.parametrize(("zone", "fold_start_utc"), [("Europe/Berlin", utc(2026, 10, 25, 0)),
                                                      ("America/New_York", utc(2026, 11, 1, 5))])  # fmt: skip
@pytest.mark.parametrize(
    ("misfire", "fired", "skipped"), [(Misfire.RUN_ONCE, [3], 2), (Misfire.CATCH_UP, [1, 2, 3], 0)]
)
def test_downtime_that_ends_in_the_second_pass_of_the_repeated_hour_fires_what_it_missed(
    zone: str, fold_start_utc: int, misfire: Misfire, fired: list[int], skipped: int
) -> None:
    """A server down from the first pass of the repeated hour to its second (back at the second 02:10): the first
    pass's 02:15, 02:30 and 02:45 were missed. The walk back from the second 02:10 began at wall time 02:10, found
    02:00 (the first pass's, before the missed ticks) and stopped: run_once fired nothing, and nothing was counted
    as skipped. It now begins where the first pass's ticks before now end."""
    t = Timing(cron="*/15 * * * *", timezone=zone)
    q = 15 * 60 * S
    now = fold_start_utc + H + 10 * 60 * S  # the second 02:10 (01:10 wall time in New York)
    assert prev_tick(t, now) == fold_start_utc + 3 * q
    p = plan(t, fold_start_utc + q, now, misfire=misfire, max_catch_up=10)
    assert p.ticks == [fold_start_utc + k * q for k in fired]
    assert p.dropped == skipped and p.next_fire_at == fold_start_utc + 2 * H


@pytest.mark.parametrize(("zone", "fold_start_utc"), [("Europe/Berlin", utc(2026, 10, 25, 0)),
                                                      ("America/New_York", utc(2026, 11, 1, 5))])  # fmt: skip
@pytest.mark.parametrize("cron", ["*/15 * * * *", "45 1 * * *", "30 2 * * *"])
def test_the_walk_back_finds_the_tick_the_walk_forward_made_last_around_the_repeated_hour(
    zone: str, fold_start_utc: int, cron: str
) -> None:
    """prev_tick(p) is the last tick before p as next_tick makes them, at every 5 minutes of the day around the
    fall-back night: in the second pass of the repeated hour it was a tick of the first pass before the last one
    (or, for a daily 01:45 in New York, the day before's), so a misfire walk from there stopped short."""
    t = Timing(cron=cron, timezone=zone)
    start, end = fold_start_utc - 12 * H, fold_start_utc + 12 * H
    made = [tick for tick in ticks(t, start - 25 * H, 200) if tick <= end]
    for p in range(start, end, 5 * 60 * S):
        assert prev_tick(t, p + 7) == max(tick for tick in made if tick < p + 7), p


def test_end_at_stops_the_ticks() -> None:
    t = Timing(every_ms=10 * S, created_at=0, end_at=35 * S)
    assert ticks(t, 0, 10) == [10 * S, 20 * S, 30 * S]
    assert plan(t, None, 100 * S).ticks == []
    p = plan(t, 30 * S, 31 * S)
    assert p.ticks == [30 * S] and p.next_fire_at is None


EVERY_MINUTE = Timing(every_ms=60 * S, created_at=0, start_at=0)
DOWN_AT = 10 * 60 * S  # the schedule's next tick when the process went down
BACK_AT = DOWN_AT + H + 500  # an hour later (60 ticks missed; the 61st is due now, half a second ago)


@pytest.mark.parametrize(
    ("misfire", "fired"),
    [
        (Misfire.SKIP, [BACK_AT - 500]),  # only the tick that is on time now
        (Misfire.RUN_ONCE, [BACK_AT - 500 - 60 * S, BACK_AT - 500]),  # the latest missed one, once
        (Misfire.CATCH_UP, [BACK_AT - 500 - 60 * S * k for k in (3, 2, 1, 0)]),  # the latest 3 missed
    ],
)
def test_an_hour_of_downtime_under_each_misfire_policy(misfire: Misfire, fired: list[int]) -> None:
    p = plan(EVERY_MINUTE, DOWN_AT, BACK_AT, misfire=misfire, max_catch_up=3)
    assert p.ticks == fired
    assert p.next_fire_at == BACK_AT - 500 + 60 * S  # never fires a past tick again


EVERY_SECOND = Timing(every_ms=S, start_at=0)


@pytest.mark.parametrize(
    ("misfire", "fired"),
    [
        (Misfire.SKIP, [15_000]),  # the tick due now: the four before it, under 5 s late, were missed too
        (Misfire.RUN_ONCE, [14_000, 15_000]),
        (Misfire.CATCH_UP, [12_000, 13_000, 14_000, 15_000]),
    ],
)
def test_a_period_shorter_than_the_grace_is_late_after_one_period(misfire: Misfire, fired: list[int]) -> None:
    """Back 15 s after going down, a schedule of every second fires what a minutely one fires after an hour:
    the tick due now and none, one or maxCatchUp of the missed ones (not every tick of the last 5 s)."""
    p = plan(EVERY_SECOND, 1 * S, 15_300, misfire=misfire, max_catch_up=3)
    assert p.ticks == fired
    assert p.next_fire_at == 16 * S


def test_a_tick_a_little_late_within_its_period_is_on_time() -> None:
    assert plan(EVERY_SECOND, 15 * S, 15_900, misfire=Misfire.SKIP).ticks == [15 * S]
    hourly = Timing(cron="0 * * * *")
    assert plan(hourly, 3_600 * S, 3_604 * S, misfire=Misfire.SKIP).ticks == [3_600 * S]  # the 5 s grace


def test_catch_up_of_everything_missed_when_the_bound_allows() -> None:
    p = plan(EVERY_MINUTE, DOWN_AT, BACK_AT, misfire=Misfire.CATCH_UP, max_catch_up=1000)
    assert p.ticks == list(range(DOWN_AT, BACK_AT, 60 * S)) and len(p.ticks) == 61


def test_a_little_lateness_is_not_a_misfire() -> None:
    """Late by less than the grace and less than a period: on time. (Three ticks of a 1 s schedule passed
    while the process was busy for 3 s were missed: `skip` drops them.)"""
    t = Timing(every_ms=10 * S, created_at=0, start_at=0)
    assert plan(t, 10 * S, 13 * S + 200, misfire=Misfire.SKIP, grace_ms=5 * S).ticks == [10 * S]
    busy = plan(EVERY_SECOND, 10 * S, 13 * S + 200, misfire=Misfire.SKIP, grace_ms=5 * S)
    assert busy.ticks == [13 * S] and busy.next_fire_at == 14 * S and busy.dropped == 3


def test_nothing_due_before_the_next_tick() -> None:
    assert plan(EVERY_MINUTE, 60 * S, 59 * S).ticks == []


def test_overlap_allow_fires_while_the_previous_runs() -> None:
    p = plan(EVERY_MINUTE, 60 * S, 60 * S, overlap=Overlap.ALLOW, previous_active=True)
    assert p.ticks == [60 * S] and p.next_fire_at == 120 * S


def test_overlap_skip_drops_the_tick_while_the_previous_runs() -> None:
    p = plan(EVERY_MINUTE, 60 * S, 60 * S, overlap=Overlap.SKIP, previous_active=True)
    assert p.ticks == [] and p.next_fire_at == 120 * S and p.dropped == 1
    assert plan(EVERY_MINUTE, 60 * S, 60 * S, overlap=Overlap.SKIP).ticks == [60 * S]


@pytest.mark.parametrize("misfire", [Misfire.RUN_ONCE, Misfire.CATCH_UP])
def test_overlap_skip_fires_one_of_the_ticks_due_together(misfire: Misfire) -> None:
    """After downtime, the ticks a misfire rule picks were fired at once: that many jobs side by side."""
    p = plan(EVERY_MINUTE, DOWN_AT, BACK_AT, misfire=misfire, max_catch_up=3, overlap=Overlap.SKIP)
    fired_first = BACK_AT - 500 - 60 * S * (3 if misfire is Misfire.CATCH_UP else 1)
    assert p.ticks == [fired_first] and p.next_fire_at == BACK_AT - 500 + 60 * S
    assert p.dropped == 60, p  # the hour's 61 ticks but the one fired


def test_overlap_queue_holds_the_tick_until_the_previous_finishes_then_fires_one_at_a_time() -> None:
    held = plan(EVERY_MINUTE, 60 * S, 150 * S, overlap=Overlap.QUEUE, previous_active=True)
    assert held.held and held.ticks == [] and held.next_fire_at == 60 * S
    free = plan(EVERY_MINUTE, 60 * S, 150 * S, overlap=Overlap.QUEUE, misfire=Misfire.CATCH_UP, grace_ms=0)
    assert free.ticks == [60 * S] and free.next_fire_at == 120 * S  # the next waits for this one


@pytest.mark.parametrize(
    ("expr", "words"),
    [("61 * * * *", "not valid"), ("* * *", "expected 5 fields"), ("* * * * * * *", "expected 5 fields"),
     ("@sometimes", "unknown name"), ("a b c d e", "not valid")],
)  # fmt: skip
def test_malformed_cron_is_refused_with_the_reason(expr: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_cron(expr)


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one of cron and everySeconds"):
        Timing(cron="* * * * *", every_ms=1000)
    with pytest.raises(ValueError, match="exactly one"):
        Timing()
    with pytest.raises(ValueError, match="at least 1"):
        Timing(every_ms=500)
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        Timing(cron="* * * * *", timezone="Mars/Olympus")
