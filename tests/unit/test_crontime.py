"""Fire times in time zones: the DST policy of docs/scheduling.md, in two zones, both
directions; strict validation; misfire planning. Pure functions: no database, no waiting."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from shared.crontime import fires_between, last_fires, next_fire, parse, plan_fires
from shared.errors import ScheduleInvalid

UTC = timezone.utc
# (zone, spring-forward day, fall-back day) in 2026.
ZONES = [("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)), ("America/New_York", (2026, 3, 8), (2026, 11, 1))]


def local_day(tz: str, day: tuple[int, int, int]) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, as UTC instants."""
    zone = ZoneInfo(tz)
    start = datetime(*day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def fires_on(expression: str, tz: str, day: tuple[int, int, int]) -> list[datetime]:
    start, end = local_day(tz, day)
    return [f for f in fires_between(parse(expression, tz), start, end) if f < end]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- the documented examples ------------------------------------------------------------------

def test_daily_0230_berlin_fires_once_at_0300_on_the_spring_day():
    assert fires_on("30 2 * * *", "Europe/Berlin", (2026, 3, 29)) == [utc(2026, 3, 29, 1, 0)]  # 03:00 CEST


def test_daily_0230_berlin_fires_once_at_the_first_0230_on_the_fall_back_day():
    assert fires_on("30 2 * * *", "Europe/Berlin", (2026, 10, 25)) == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST


def test_daily_0130_new_york_fires_once_at_the_first_0130_on_the_fall_back_day():
    assert fires_on("30 1 * * *", "America/New_York", (2026, 11, 1)) == [utc(2026, 11, 1, 5, 30)]  # 01:30 EDT


def test_daily_0230_new_york_fires_once_at_0300_on_the_spring_day():
    assert fires_on("30 2 * * *", "America/New_York", (2026, 3, 8)) == [utc(2026, 3, 8, 7, 0)]  # 03:00 EDT


@pytest.mark.parametrize("tz, spring, fall", ZONES)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 2 * * *", "59 1 * * *", "30 1 * * *", "0 3 * * *", "0 30 2 * * *"])
def test_a_daily_job_fires_exactly_once_on_both_transition_days(tz, spring, fall, expression):
    for day in (spring, fall, (2026, 6, 1)):
        assert len(fires_on(expression, tz, day)) == 1, (day, fires_on(expression, tz, day))


@pytest.mark.parametrize("tz, spring, fall", ZONES)
def test_an_hourly_job_fires_once_per_real_hour_on_both_transition_days(tz, spring, fall):
    for day, hours in ((spring, 23), (fall, 25)):
        fires = fires_on("0 * * * *", tz, day)
        assert len(fires) == hours
        assert all(b - a == timedelta(hours=1) for a, b in zip(fires, fires[1:])), fires
        start, _ = local_day(tz, day)
        assert fires[0] == start


@pytest.mark.parametrize("tz, spring, fall", ZONES)
@pytest.mark.parametrize("expression, step", [("* * * * *", 60), ("*/20 * * * * *", 20), ("*/15 * * * *", 900)])
def test_interval_schedules_keep_their_real_interval_across_both_transitions(tz, spring, fall, expression, step):
    """Every-hour schedules follow real time: no gap, no double fire, on either day. (On the
    spring day the gap's wall times collapse into the one fire at its end, which is exactly
    the next real interval.)"""
    spec = parse(expression, tz)
    for day in (spring, fall):
        start, end = local_day(tz, day)
        fires = fires_between(spec, start + timedelta(hours=1), start + timedelta(hours=6))
        assert all((b - a).total_seconds() == step for a, b in zip(fires, fires[1:]))


@pytest.mark.parametrize("tz, spring, fall", ZONES)
def test_specific_hour_schedules_fire_on_first_occurrences_only(tz, spring, fall):
    """`*/15 1-2 * * *` names hours: on the fall-back day each wall time fires once."""
    fires = fires_on("*/15 1-2 * * *", tz, fall)
    local = [f.astimezone(ZoneInfo(tz)).strftime("%H:%M") for f in fires]
    assert local == ["01:00", "01:15", "01:30", "01:45", "02:00", "02:15", "02:30", "02:45"]
    assert fires == sorted(set(fires))


def test_several_gap_wall_times_collapse_into_one_fire_at_the_end_of_the_gap():
    fires = fires_on("*/30 1-3 * * *", "Europe/Berlin", (2026, 3, 29))
    local = [f.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M%z") for f in fires]
    # 02:00 and 02:30 do not exist; they and 03:00 fire once, at 03:00 CEST.
    assert local == ["01:00+0100", "01:30+0100", "03:00+0200", "03:30+0200"]


# -- the proof by brute force -----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def oracle(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The policy restated instant by instant (independently of the implementation): a whole
    minute u fires when its wall time matches and it is the wall time's first occurrence (or the
    schedule names every hour); or when u ends a DST gap in which some wall time matched."""
    zone = ZoneInfo(tz)
    every_hour = parse(expression, tz).follows_real_time
    fires = []
    u = start
    while u < end:
        local = u.astimezone(zone)
        wall = local.replace(tzinfo=None)
        hit = croniter.match(expression, wall) and (local.fold == 0 or every_hour)
        before = (u - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        gap = [before + timedelta(minutes=k) for k in range(1, int((wall - before).total_seconds() // 60))]
        if any(croniter.match(expression, w) for w in gap):
            hit = True  # u is the first instant after a gap holding a matching wall time
        if hit:
            fires.append(u)
        u += timedelta(minutes=1)
    return fires


@pytest.mark.parametrize("tz, spring, fall", ZONES)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/7 * * * *", "5,35 1-3 * * *", "0 2 * * *", "*/20 2 * * *"])
def test_fire_times_equal_the_policy_computed_instant_by_instant(tz, spring, fall, expression):
    for day in (spring, fall):
        start, end = local_day(tz, day)
        expected = [f for f in oracle(expression, tz, start, end + timedelta(hours=4)) if f < end]
        assert fires_between(parse(expression, tz), start, end - timedelta(seconds=1)) == expected


@pytest.mark.parametrize("tz, spring, fall", ZONES)
def test_next_fire_from_any_instant_is_strictly_after_it_and_is_the_first(tz, spring, fall):
    for expression in ("*/7 * * * *", "30 2 * * *", "0 * * * *"):
        spec = parse(expression, tz)
        for day in (spring, fall):
            start, end = local_day(tz, day)
            expected = oracle(expression, tz, start, end + timedelta(hours=4))  # holds the next 02:30
            t = start
            while t < start + timedelta(hours=8):  # the transitions are at 01:00-03:00 local
                after = next_fire(spec, t)
                assert after == next(f for f in expected if f > t), (expression, t)
                t += timedelta(minutes=3, seconds=17)


# -- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, words", [
    ("60 * * * *", "out of range"),
    ("* * * *", "has 4 fields; give 5"),
    ("* * * * * * *", "has 7 fields"),
    ("*/0 * * * *", "step"),
    ("0 0 30 2 *", "never fires"),
    ("R * * * *", "random (R)"),
    ("H * * * *", "hashed (H)"),
    ("@reboot", "unknown alias"),
    ("a b c d e", "invalid"),
    ("", "has 0 fields; give 5"),
])
def test_an_invalid_cron_is_refused_with_a_clear_message(expression, words):
    with pytest.raises(ScheduleInvalid) as refused:
        parse(expression, "UTC")
    assert refused.value.field == "cron"
    assert words in str(refused.value) and "cron" in str(refused.value)


@pytest.mark.parametrize("zone", ["Europe/Berln", "Mars/Olympus", "", " UTC", "../etc/passwd", "CEST+2"])
def test_an_unknown_zone_is_refused_with_a_clear_message(zone):
    with pytest.raises(ScheduleInvalid) as refused:
        parse("* * * * *", zone)
    assert refused.value.field == "timezone"
    assert repr(zone) in str(refused.value) and "IANA" in str(refused.value)


def test_six_fields_put_seconds_first_and_aliases_work():
    assert parse("*/15 * * * * *").with_seconds
    assert next_fire(parse("15 30 2 * * *"), utc(2026, 1, 1)) == utc(2026, 1, 1, 2, 30, 15)
    assert next_fire(parse("@daily", "Europe/Berlin"), utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 23)


# -- misfire planning -------------------------------------------------------------------------

def plan(policy: str, limit: int = 3, outage: timedelta = timedelta(seconds=10)):
    spec = parse("* * * * * *")
    due_from = utc(2026, 5, 1, 12, 0, 0)
    return plan_fires(spec, due_from, due_from + outage, policy, limit, grace_seconds=2.0)


def test_skip_drops_the_missed_fires_and_keeps_the_on_time_ones():
    result = plan("skip")
    assert [f.second for f, _ in result.fires] == [8, 9, 10] and not any(m for _, m in result.fires)
    assert result.missed_from == utc(2026, 5, 1, 12, 0, 0)
    assert result.next_fire_at == utc(2026, 5, 1, 12, 0, 11)


def test_run_once_enqueues_the_latest_missed_fire_once():
    assert [(f.second, m) for f, m in plan("run_once").fires] == [(7, True), (8, False), (9, False), (10, False)]


def test_catch_up_enqueues_up_to_the_limit_of_the_latest_missed_fires():
    assert [(f.second, m) for f, m in plan("catch_up", 3).fires] == [
        (5, True), (6, True), (7, True), (8, False), (9, False), (10, False)
    ]


def test_no_misfire_within_the_grace_period():
    result = plan("skip", outage=timedelta(seconds=1.5))
    assert [(f.second, m) for f, m in result.fires] == [(0, False), (1, False)] and result.missed_from is None


def test_a_year_long_outage_of_a_per_second_schedule_is_planned_quickly():
    started = time.perf_counter()
    result = plan("catch_up", 5, outage=timedelta(days=365))
    assert time.perf_counter() - started < 2.0
    assert sum(1 for _, m in result.fires if m) == 5 and len(result.fires) == 8


def test_last_fires_spans_a_long_quiet_stretch():
    spec = parse("0 9 1 * *", "Europe/Berlin")  # monthly
    found = last_fires(spec, utc(2025, 1, 1), utc(2026, 1, 15), 3)
    assert [f.month for f in found] == [11, 12, 1] and found[-1] == utc(2026, 1, 1, 8)
