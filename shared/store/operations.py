"""Reads for operators: the scheduler's gauges and the `jobctl` listing commands.

Every statement is in `operations.sql`; these wrappers give them typed signatures. Nothing here
writes: operator actions (retry, cancel, pause) go through `shared.control`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from shared.models.states import ACTIVE_JOB_STATES
from shared.store.rows import Executor
from shared.store.sql import query


@dataclass(frozen=True)
class QueueOverview:
    name: str
    paused: bool
    dispatch_window: int | None
    concurrency_limit: int | None
    rate_limit: int | None
    rate_period_seconds: float | None
    retention_seconds: int
    waiting: int
    scheduled: int
    queued: int
    dispatched: int
    running: int
    oldest_queued_at: datetime | None  # the oldest due job not yet handed to the broker
    oldest_dispatched_at: datetime | None  # the oldest due time among jobs in the broker
    last_dispatched_at: datetime | None  # the newest dispatch among jobs still in flight
    now: datetime

    def counts(self) -> dict[str, int]:
        # One field per active state (queue_overview counts each through its partial index).
        return {str(state): int(getattr(self, state)) for state in ACTIVE_JOB_STATES}

    def oldest_waiting_seconds(self) -> float:
        """Age of the oldest job that is due and has not started (queued or in the broker), from its due time."""
        due = [t for t in (self.oldest_queued_at, self.oldest_dispatched_at) if t is not None]
        return max(0.0, (self.now - min(due)).total_seconds()) if due else 0.0


@dataclass(frozen=True)
class CronFire:
    id: int
    lateness_seconds: float


@dataclass(frozen=True)
class JobFilter:
    """`None` or empty means no filter on that field; times bound `created_at` as [since, until)."""

    queues: Sequence[str] = ()
    types: Sequence[str] = ()
    states: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


def queue_overview(db: Executor, now: datetime | None = None) -> list[QueueOverview]:
    rows = db.execute(query("queue_overview"), {"now": now}).mappings().all()
    return [QueueOverview(**row) for row in rows]


def oldest_overdue_scheduled(db: Executor, now: datetime | None = None) -> datetime | None:
    return db.execute(query("oldest_overdue_scheduled"), {"now": now}).scalar()


def count_live_workers(db: Executor, stale_after_seconds: float, now: datetime | None = None) -> int:
    return int(db.execute(query("count_live_workers"), {"stale_after": stale_after_seconds, "now": now}).scalar() or 0)


def newest_job_id(db: Executor) -> int:
    return int(db.execute(query("newest_job_id")).scalar() or 0)


def cron_fires_after(db: Executor, after_id: int, limit: int = 10_000) -> list[CronFire]:
    rows = db.execute(query("cron_fires_after"), {"after": after_id, "limit": limit}).all()
    return [CronFire(row.id, float(row.lateness_seconds)) for row in rows]


def find_jobs(db: Executor, where: JobFilter) -> list[dict[str, Any]]:
    params = {
        "queues": list(where.queues) or None,
        "types": list(where.types) or None,
        "states": list(where.states) or None,
        "since": where.since,
        "until": where.until,
        "limit": where.limit,
    }
    return [dict(row) for row in db.execute(query("find_jobs"), params).mappings().all()]


def finished_since(db: Executor, queues: Sequence[str], minutes: int, now: datetime | None = None) -> dict[tuple[str, str], int]:
    """(queue, final state) -> jobs that ended in the last `minutes`."""
    rows = db.execute(query("finished_since"), {"queues": list(queues), "minutes": minutes, "now": now}).all()
    return {(row.queue, row.state): int(row.jobs) for row in rows}


def failures_since(
    db: Executor, queues: Sequence[str], minutes: int, limit: int = 20, now: datetime | None = None
) -> list[dict[str, Any]]:
    params = {"queues": list(queues), "minutes": minutes, "limit": limit, "now": now}
    return [dict(row) for row in db.execute(query("failures_since"), params).mappings().all()]
