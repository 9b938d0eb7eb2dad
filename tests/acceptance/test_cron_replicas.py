"""Cron with three real scheduler processes: every second fires exactly once for a minute, and
when the leader is killed a follower takes over within 10 s and fills the hole by each
schedule's misfire policy. Real PostgreSQL, real `python -m scheduler` processes."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from shared.settings import get_settings
from shared.schedules import cron_lateness
from tests.processes import wait_for
from tests.schedules_fixture import CATCH_UP, CATCH_UP_LIMIT, QUEUE, RUN_ONCE, SKIP

pytestmark = pytest.mark.acceptance

ENV = {"JOBS_IMPORTS": "tests.jobs,tests.schedules_fixture"}
SECOND = timedelta(seconds=1)
WINDOW = 60


def db_now(db) -> datetime:
    with db.session() as s:
        return s.execute(text("SELECT clock_timestamp()")).scalar_one()


def fires(db, name: str) -> list[tuple[datetime, datetime, bool]]:
    """(fire_time, created_at, misfired) of a schedule's jobs, oldest fire first."""
    with db.session() as s:
        return [(r.fire_time, r.created_at, bool(r.metadata.get("misfired"))) for r in s.execute(text(
            "SELECT j.fire_time, j.created_at, j.metadata FROM jobs j JOIN schedules s ON s.id = j.schedule_id "
            "WHERE s.name = :n AND j.fire_time IS NOT NULL ORDER BY j.fire_time"), {"n": name})]


def leader(db) -> str | None:
    with db.session() as s:
        return s.execute(text("SELECT holder FROM leases WHERE name = 'scheduler' AND expires_at > now()")).scalar()


def seconds(start: datetime, stop: datetime) -> list[datetime]:
    count = int((stop - start).total_seconds())
    return [start + k * SECOND for k in range(count)]


def test_three_replicas_fire_every_second_exactly_once_and_a_follower_takes_over(db, processes):
    with db.session() as s:
        s.execute(text("INSERT INTO queues (name, paused) VALUES (:q, true)"), {"q": QUEUE})
    replicas = [processes.scheduler(env=ENV) for _ in range(3)]
    wait_for(lambda: leader(db), 15, "a leader is elected")
    wait_for(lambda: all(fires(db, d.name) for d in (SKIP, RUN_ONCE, CATCH_UP)), 15, "the code schedules fire")

    # A minute of fires: 60 jobs per schedule, no duplicates, no gaps, none late.
    start = db_now(db).replace(microsecond=0) + 2 * SECOND
    stop = start + WINDOW * SECOND
    # Each schedule's fires are made in order: once one at or past `stop` exists, the window is
    # complete (a real minute: the wait is the window's length, then an event, not a margin).
    wait_for(lambda: all(any(f >= stop for f, _, _ in fires(db, d.name)) for d in (SKIP, RUN_ONCE, CATCH_UP)),
             WINDOW + 30, "every schedule fired past the window")
    for definition in (SKIP, RUN_ONCE, CATCH_UP):
        window = [f for f in fires(db, definition.name) if start <= f[0] < stop]
        assert [f for f, _, _ in window] == seconds(start, stop), definition.name
        assert not any(missed for _, _, missed in window)
    for definition in (SKIP, RUN_ONCE, CATCH_UP):
        lateness = cron_lateness(definition.name, since=start, until=stop)
        print(f"\n{definition.name}: lateness over {lateness.fires} fires: p50 {lateness.p50_ms:.1f} ms, "
              f"p99 {lateness.p99_ms:.1f} ms, max {lateness.max_ms:.1f} ms")
        assert lateness.fires == WINDOW and lateness.p99_ms is not None and lateness.p99_ms < 1000

    # kill -9 the leader: a follower takes over within 10 s.
    holder = leader(db)
    assert holder is not None
    victim = next(p for p in replicas if p.pid == int(holder.split(":")[1]))
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = db_now(db)
    wait_for(lambda: leader(db) not in (None, holder), 12, "a follower holds the lease")
    wait_for(lambda: any(c > killed_at for _, c, _ in fires(db, SKIP.name)), 12, "the new leader fires")
    took_over = min(c for _, c, _ in fires(db, SKIP.name) if c > killed_at)
    print(f"takeover {(took_over - killed_at).total_seconds():.2f} s after kill -9")
    assert took_over - killed_at < 10 * SECOND
    # The takeover round is over for every schedule once each has an on-time fire after it.
    wait_for(lambda: all(any(f > took_over + SECOND and not missed for f, c, missed in fires(db, d.name) if c > killed_at)
                         for d in (SKIP, RUN_ONCE, CATCH_UP)), 12, "every schedule fires on time after the takeover")

    # The fires nobody made in time follow each schedule's misfire policy: all three were in
    # the new leader's first round, so they missed the same M fires.
    holes = {}
    for definition in (SKIP, RUN_ONCE, CATCH_UP):
        made = fires(db, definition.name)
        last_before = max(f for f, c, _ in made if c <= killed_at)
        after = [(f, missed) for f, c, missed in made if f > last_before]
        expected = seconds(last_before + SECOND, after[-1][0] + SECOND)
        have = [f for f, _ in after]
        missing = [f for f in expected if f not in have]
        assert missing == expected[: len(missing)], f"{definition.name}: the hole is not one stretch before the takeover"
        assert have == expected[len(missing):]
        # Missed means later than the grace period when the new leader's first round ran.
        grace = get_settings().cron_misfire_grace_seconds * SECOND
        assert all(f < took_over - grace for f in missing + [f for f, missed in after if missed])
        assert all(f > took_over - grace - 0.2 * SECOND for f, missed in after if not missed)
        holes[definition.name] = (len(missing), [f for f, missed in after if missed])
    missed = holes[SKIP.name][0]
    assert missed >= 1, "the takeover was faster than the grace period: nothing was missed"
    assert holes[SKIP.name] == (missed, [])
    kept = min(CATCH_UP_LIMIT, missed)
    assert holes[RUN_ONCE.name][0] == missed - 1 and len(holes[RUN_ONCE.name][1]) == 1
    assert holes[CATCH_UP.name][0] == missed - kept and len(holes[CATCH_UP.name][1]) == kept
    print(f"missed {missed} fires: skip made 0, run_once 1, catch_up {kept}")
