"""Pruning and the metrics roll-up (statements in maintenance.sql)."""

from __future__ import annotations

from datetime import datetime

from shared.store.rows import Executor
from shared.store.sql import query


def prune_finished_jobs(db: Executor, queue: str, retention_seconds: float, limit: int, now: datetime | None = None) -> int:
    """Delete one batch of a queue's finished jobs past retention; returns how many."""
    params = {"queue": queue, "retention": retention_seconds, "limit": limit, "now": now}
    return len(db.execute(query("prune_finished_jobs"), params).all())


def prune_stopped_workers(db: Executor, retention_seconds: float, limit: int, now: datetime | None = None) -> int:
    params = {"retention": retention_seconds, "limit": limit, "now": now}
    return len(db.execute(query("prune_stopped_workers"), params).all())


def prune_metrics(db: Executor, retention_seconds: float, limit: int, now: datetime | None = None) -> int:
    """One batch of queue and job metric rows older than retention."""
    params = {"retention": retention_seconds, "limit": limit, "now": now}
    return len(db.execute(query("prune_queue_metrics"), params).all()) + len(
        db.execute(query("prune_job_metrics"), params).all()
    )


def prune_proxy_logs(db: Executor, retention_seconds: float, limit: int, now: datetime | None = None) -> int:
    """One batch of proxy health logs, and of finished sweeps, older than retention; returns how
    many health logs went (the pruner repeats while a batch comes back full)."""
    params = {"retention": retention_seconds, "limit": limit, "now": now}
    db.execute(query("prune_proxy_sweeps"), params)
    return len(db.execute(query("prune_proxy_health_logs"), params).all())


def database_now(db: Executor, now: datetime | None = None) -> datetime:
    value: datetime = db.execute(query("database_now"), {"now": now}).scalar_one()
    return value


def latest_queue_metrics_bucket(db: Executor) -> datetime | None:
    value: datetime | None = db.execute(query("latest_queue_metrics_bucket")).scalar()
    return value


def rollup(db: Executor, start: datetime, stop: datetime, snapshot_bucket: datetime | None, now: datetime) -> None:
    """Recompute and upsert queue and job metrics for the minutes in [start, stop)."""
    params = {"start": start, "stop": stop, "snapshot_bucket": snapshot_bucket, "now": now}
    db.execute(query("rollup_queue_metrics"), params)
    db.execute(query("rollup_job_metrics"), {"start": start, "stop": stop})
