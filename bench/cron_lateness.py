"""Cron lateness under load: a per-second schedule fires for `--cron-seconds` (default 120)
while a platform worker and scheduler drain a no-op backlog that is kept topped up, so the
platform is as busy as in the throughput benchmark the whole time.

Lateness of a fire = its job's `created_at` minus its `fire_time` (both the database's clock),
from `shared.schedules.cron_lateness`. Fires missing from the expected one-a-second sequence
are counted too: a missed fire is the worst lateness, and the figure must not hide it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from shared.enqueue import enqueue_many_now
from shared.jobtypes import load_declarations
from shared.schedules import add_schedule, cron_lateness

from bench.context import Bench, Figure, Results

SCHEDULE = "bench.cron_lateness"
BACKLOG_LOW_WATER = 2000  # keep at least this many no-op jobs waiting
TOP_UP = 3000


def measure(bench: Bench) -> Results:
    seconds = bench.options.cron_seconds
    load_declarations()
    bench.environment.reset_tables()
    enqueue_many_now("platform.noop", [{}] * (BACKLOG_LOW_WATER + TOP_UP))
    worker, scheduler = bench.platform_worker(), bench.scheduler()
    try:
        add_schedule(SCHEDULE, "platform.noop", "* * * * * *", misfire="catch_up", catch_up_limit=1000)
        time.sleep(3)  # let the first fires settle: lateness is measured from here
        since = _now()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if _waiting(bench) < BACKLOG_LOW_WATER:
                enqueue_many_now("platform.noop", [{}] * TOP_UP)
            time.sleep(1.0)
        until = since + timedelta(seconds=int(seconds))
        time.sleep(2)  # the last fires of the window are enqueued by now
        lateness = cron_lateness(SCHEDULE, since, until)
        done = _succeeded(bench)
    finally:
        bench.stop(worker, scheduler)
        bench.environment.reset_tables()
    expected = int(seconds)
    missed = max(0, expected - lateness.fires)
    bench.say(f"cron lateness: {lateness.fires} of {expected} fires, p50 {lateness.p50_ms} ms, "
              f"p99 {lateness.p99_ms} ms, max {lateness.max_ms} ms, {done} jobs run meanwhile")
    p99 = lateness.p99_ms if lateness.p99_ms is not None and not missed else float("inf")
    figure = Figure("cron lateness p99", "ms", [p99], target=("<=", 1000.0),
                    method=f"per-second schedule for {expected} s while draining a no-op backlog; created_at - fire_time")
    return Results(
        [figure],
        {"cron_lateness_p50_ms": lateness.p50_ms, "cron_lateness_p99_ms": p99, "cron_fires_missed": missed},
        {"cron_lateness": {"fires": lateness.fires, "expected": expected, "max_ms": lateness.max_ms,
                           "jobs_run_meanwhile": done}},
    )


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)


def _waiting(bench: Bench) -> int:
    from sqlalchemy import text

    with bench.environment.database().session() as session:
        return int(session.execute(text(
            "SELECT count(*) FROM jobs WHERE type = 'platform.noop' AND state IN ('queued', 'dispatched')"
        )).scalar() or 0)


def _succeeded(bench: Bench) -> int:
    from sqlalchemy import text

    with bench.environment.database().session() as session:
        return int(session.execute(text("SELECT count(*) FROM jobs WHERE state = 'succeeded'")).scalar() or 0)
