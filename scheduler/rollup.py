"""The metrics roll-up: each minute, per queue and per job type, counts and percentiles of the
last minutes are recomputed from the raw rows into `queue_metrics` and `job_metrics`.

Recomputing and upserting whole buckets (never adding to them) makes the roll-up idempotent:
a restart, a repeated round or a second replica writes the same figures. The last few minutes
are recomputed every round, so completions committed a little after their timestamp still
count; after downtime the missed minutes are caught up (up to an hour).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.db import Database
from shared.settings import Settings
from shared.store import maintenance
from scheduler.service import Service

log = logging.getLogger("scheduler.rollup")

MINUTE = timedelta(minutes=1)
# Candidates for settings (see the report): read through getattr so they can move there.
RECOMPUTE_MINUTES = 3  # recent buckets redone every round, for late commits
CATCH_UP_MINUTES = 60  # how far back a restarted roll-up fills in missed minutes


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Rollup(Service):
    name = "rollup"
    leader_only = True  # a second replica would only write the same figures

    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        super().__init__()
        self.database = database
        self.clock = clock
        self.delay_seconds = settings.rollup_delay_seconds

    def tick(self) -> int:
        """Roll up the complete minutes not yet final; returns how many were written."""
        with self.database.session() as session:
            now = maintenance.database_now(session, self.clock.sql_now())
            stop = floor_minute(now)
            start = stop - RECOMPUTE_MINUTES * MINUTE
            latest = maintenance.latest_queue_metrics_bucket(session)
            if latest is not None and latest < start:
                start = max(latest, stop - CATCH_UP_MINUTES * MINUTE)
            maintenance.rollup(session, start, stop, stop - MINUTE, now)
        return int((stop - start) / MINUTE)

    def wait(self, stop: threading.Event, did: int) -> None:
        now = self.clock.now()
        due = floor_minute(now) + MINUTE + timedelta(seconds=self.delay_seconds)
        stop.wait(max(0.0, (due - now).total_seconds()))
