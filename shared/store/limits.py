"""Dispatch under limits: candidates, in-flight counts per key, sliding rate windows."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from shared.store.rows import Candidate, DispatchedJob, Executor
from shared.store.sql import query


_START = (-1, datetime.min.replace(tzinfo=timezone.utc), 0)


def runnable_candidates(
    db: Executor, queue: str, limit: int, now: datetime | None = None, after: Candidate | None = None
) -> list[Candidate]:
    """The next `limit` runnable jobs of a queue in dispatch order, after `after` if given."""
    position = (after.priority, after.run_at, after.id) if after else _START
    params = {"queue": queue, "limit": limit, "now": now,
              "after_priority": position[0], "after_run_at": position[1], "after_id": position[2]}
    return [Candidate(row.id, row.limit_key, row.priority, row.run_at)
            for row in db.execute(query("runnable_candidates"), params).all()]


def job_candidate(db: Executor, job_id: int) -> Candidate | None:
    """One runnable job as a candidate (a one-at-a-time round under limits)."""
    row = db.execute(query("job_candidate"), {"job_id": job_id}).first()
    return Candidate(row.id, row.limit_key, row.priority, row.run_at) if row is not None else None


def mark_dispatched(db: Executor, ids: Sequence[int], now: datetime | None = None) -> list[DispatchedJob]:
    if not ids:
        return []
    rows = db.execute(query("mark_dispatched"), {"ids": list(ids), "now": now}).all()
    jobs = [DispatchedJob(**row._asdict()) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.run_at, j.id))
    return jobs


def keys_in_flight(db: Executor, keys: Sequence[str]) -> dict[str, int]:
    if not keys:
        return {}
    return {row.limit_key: row.n for row in db.execute(query("keys_in_flight"), {"keys": list(keys)}).all()}


def lock_rate_windows(db: Executor, keys: Sequence[str], now: datetime | None = None) -> tuple[dict[str, list[datetime]], datetime | None]:
    """Scope -> recent start times (locked), and the database's time for this round."""
    if not keys:
        return {}, None
    db.execute(query("ensure_rate_windows"), {"keys": list(keys)})
    rows = db.execute(query("lock_rate_windows"), {"keys": list(keys), "now": now}).all()
    round_time = rows[0].now if rows else None
    return {row.key: list(row.recent) for row in rows}, round_time


def save_rate_window(db: Executor, key: str, recent: Sequence[datetime]) -> None:
    db.execute(query("save_rate_window"), {"key": key, "recent": list(recent)})


def set_queue_limits(
    db: Executor, name: str, *, concurrency: int | None, rate_limit: int | None, rate_period: float | None,
    window: int | None = None, now: datetime | None = None,
) -> bool:
    params = {"name": name, "concurrency": concurrency, "rate_limit": rate_limit, "rate_period": rate_period,
              "window": window, "now": now}
    return db.execute(query("set_queue_limits"), params).first() is not None
