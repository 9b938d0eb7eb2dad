"""Cron fire times in a time zone, with a daylight-saving policy that can be proved.

croniter matches cron fields against *naive* wall-clock times only (naive datetimes carry no
zone, so it does no DST arithmetic of its own: its tz-aware mode fires a daily 02:30 job twice
on the fall-back day). Turning a matching wall time into an instant is done here, with zoneinfo:

- a wall time that exists once fires at that instant;
- a wall time inside the spring-forward gap fires at the first instant after the gap (the
  transition); every gap wall time and the first wall time after the gap collapse into that one
  fire (a daily 02:30 in Europe/Berlin fires at 03:00 CEST = 01:00 UTC on the spring day);
- a wall time that occurs twice (fall-back) fires at its first occurrence only, unless the
  schedule's hour field matches every hour (`* * * * *`, `0 * * * *`, ...): such a schedule
  follows real time and fires at both occurrences, so an hourly job fires once per real hour
  on both transition days (23 fires on the spring day, 25 on the fall-back day).

Why this is exact: let f0 map a matching wall time to its first occurrence (gaps to the
transition) and h to its last occurrence; both are non-decreasing in the wall time. So the
first fire after an instant t is f0 (and, for every-hour schedules, h) of the first matching
wall time past a threshold computed from t alone; no scanning, no guessing of offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from shared.errors import ScheduleInvalid
from shared.models.states import MisfirePolicy

UTC = timezone.utc
ONE_SECOND = timedelta(seconds=1)
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# croniter's `R` (random) would give every process a different schedule, and `H` (hashed)
# depends on an id; a fire time must be a pure function of the expression.
_RANDOM_OR_HASHED = re.compile(r"(?:^|[,/-])[HhRr](?:$|[,/(-])")
# Expressions that match nothing for this long are refused: they would never fire.
_MAX_YEARS_BETWEEN_FIRES = 8


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression in an IANA zone."""

    expression: str
    timezone: str
    with_seconds: bool  # six fields, seconds first
    follows_real_time: bool  # the hour field matches every hour
    zone: ZoneInfo = field(compare=False, repr=False)

    def next_after(self, instant: datetime) -> datetime:
        return next_fire(self, instant)


@lru_cache(maxsize=1024)
def parse(expression: str, tz: str = "UTC") -> CronSpec:
    """Validate an expression and a zone; raises ScheduleInvalid naming the field."""
    zone = _zone(tz)
    text = " ".join(str(expression).split())
    with_seconds = _check_fields(text)
    try:
        valid = croniter.is_valid(text, strict=True, second_at_beginning=with_seconds)
        matcher = croniter(text, datetime(2000, 1, 1), second_at_beginning=with_seconds,
                           max_years_between_matches=_MAX_YEARS_BETWEEN_FIRES)
        matcher.get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleInvalid(f"cron {text!r} never fires", field="cron") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ScheduleInvalid(f"cron {text!r} is invalid: {exc}", field="cron") from None
    if not valid:
        raise ScheduleInvalid(f"cron {text!r} is invalid (a field is out of range or never matches)", field="cron")
    hours = matcher.expanded[1]
    every_hour = hours == ["*"] or len(set(hours)) == 24
    return CronSpec(text, tz, with_seconds, every_hour, zone)


def _zone(tz: str) -> ZoneInfo:
    if not isinstance(tz, str) or not tz or tz != tz.strip():
        raise ScheduleInvalid(f"time zone {tz!r} is not an IANA zone name like 'Europe/Berlin'", field="timezone")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleInvalid(
            f"unknown time zone {tz!r}: use an IANA name like 'Europe/Berlin' or 'UTC'", field="timezone"
        ) from None


def _check_fields(text: str) -> bool:
    """True when the expression has seconds (6 fields, seconds first)."""
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise ScheduleInvalid(f"cron {text!r}: unknown alias (known: {', '.join(_ALIASES)})", field="cron")
        return False
    fields = text.split(" ") if text else []
    if len(fields) not in (5, 6):
        raise ScheduleInvalid(
            f"cron {text!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
            "or 6 with seconds first (second minute hour day month weekday)",
            field="cron",
        )
    if any(_RANDOM_OR_HASHED.search(f) for f in fields):
        raise ScheduleInvalid(f"cron {text!r}: random (R) and hashed (H) fields are not allowed", field="cron")
    return len(fields) == 6


def _first_match_after(spec: CronSpec, wall: datetime) -> datetime:
    """The first matching naive wall time strictly after `wall` (whole seconds)."""
    start = wall.replace(microsecond=0)
    matcher = croniter(spec.expression, start, second_at_beginning=spec.with_seconds,
                       max_years_between_matches=_MAX_YEARS_BETWEEN_FIRES)
    return matcher.get_next(datetime)


def _transition(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose offset is hi's (a transition lies in between)."""
    target = hi.astimezone(zone).utcoffset()
    low, high = int(lo.timestamp()), int(hi.timestamp())
    while high - low > 1:  # transitions fall on whole seconds
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _instants(zone: ZoneInfo, wall: datetime) -> tuple[datetime, datetime]:
    """(first, last) instant of a wall time; both the transition instant inside a gap."""
    early = wall.replace(tzinfo=zone, fold=0)
    late = wall.replace(tzinfo=zone, fold=1)
    if early.utcoffset() == late.utcoffset():
        instant = early.astimezone(UTC)
        return instant, instant
    first, second = early.astimezone(UTC), late.astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:  # exists twice (fall-back)
        return first, second
    # In the gap: fold=1 reads the wall with the later offset, giving the earlier instant.
    moment = _transition(zone, second, first)
    return moment, moment


def _thresholds(spec: CronSpec, instant: datetime) -> tuple[datetime, datetime]:
    """Wall times w0, wh such that first(w) > instant iff w > w0, and last(w) > instant iff w > wh."""
    local = instant.astimezone(spec.zone)
    wall = local.replace(tzinfo=None)
    first, second = _instants(spec.zone, wall.replace(microsecond=0))
    if first == second:
        return wall, wall
    moment = _transition(spec.zone, first, second)
    before = first.astimezone(spec.zone).utcoffset() or timedelta(0)
    after = second.astimezone(spec.zone).utcoffset() or timedelta(0)
    repeat_start = (moment + after).replace(tzinfo=None)  # wall times from here to repeat_end occur twice
    repeat_end = (moment + before).replace(tzinfo=None)
    if local.fold == 0:  # the first pass: every second occurrence is still ahead
        return wall, repeat_start - ONE_SECOND
    return repeat_end - ONE_SECOND, wall  # the second pass: first occurrences are behind


def next_fire(spec: CronSpec, instant: datetime) -> datetime:
    """The first fire time strictly after `instant` (an aware datetime), in UTC."""
    if instant.tzinfo is None:
        raise ValueError("next_fire needs a timezone-aware instant")
    first_wall, last_wall = _thresholds(spec, instant)
    found = _instants(spec.zone, _first_match_after(spec, first_wall))[0]
    if spec.follows_real_time:
        found = min(found, _instants(spec.zone, _first_match_after(spec, last_wall))[1])
    return found


def fires_between(spec: CronSpec, start: datetime, end: datetime, limit: int = 100_000) -> list[datetime]:
    """Fire times in [start, end], oldest first, at most `limit`."""
    fires: list[datetime] = []
    moment = next_fire(spec, start - timedelta(microseconds=1))
    while moment <= end and len(fires) < limit:
        fires.append(moment)
        moment = next_fire(spec, moment)
    return fires


def last_fires(spec: CronSpec, start: datetime, end: datetime, count: int) -> list[datetime]:
    """The last `count` fire times in [start, end), oldest first, without listing the whole
    range: windows grow backwards from `end`, so a long outage costs a few look-ups."""
    found: list[datetime] = []
    high, span = end, timedelta(minutes=1)
    while len(found) < count and high > start:
        low = max(start, high - span)
        found = [f for f in fires_between(spec, low, high) if f < high] + found
        high, span = low, span * 4
    return found[-count:] if count > 0 else []


@dataclass(frozen=True)
class FirePlan:
    """What one cron round does for one schedule."""

    fires: list[tuple[datetime, bool]]  # (fire time, missed), oldest first
    next_fire_at: datetime
    missed_from: datetime | None  # the oldest missed fire, when the schedule missed any


def plan_fires(
    spec: CronSpec, due_from: datetime, now: datetime, policy: str, catch_up_limit: int, grace_seconds: float
) -> FirePlan:
    """The jobs to enqueue for fires in [due_from, now], by misfire policy.

    A fire later than `grace_seconds` was missed (the scheduler was down or took over): skip
    drops missed fires, run_once enqueues one job for the latest of them, catch_up enqueues the
    latest `catch_up_limit`. Fires within the grace period are on time and always enqueued.
    """
    boundary = now - timedelta(seconds=grace_seconds)
    first = next_fire(spec, due_from - timedelta(microseconds=1))
    missed: list[datetime] = []
    if first < boundary:
        keep = {MisfirePolicy.SKIP: 0, MisfirePolicy.RUN_ONCE: 1}.get(MisfirePolicy(policy), catch_up_limit)
        missed = last_fires(spec, first, boundary, keep)
    on_time = fires_between(spec, max(first, boundary), now)
    return FirePlan(
        fires=[(f, True) for f in missed] + [(f, False) for f in on_time],
        next_fire_at=next_fire(spec, now),
        missed_from=first if first < boundary else None,
    )
