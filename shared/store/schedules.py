"""Schedule rows, and the jobs their fires make (statements in schedules.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from shared.store.rows import Executor
from shared.store.sql import query


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    name: str
    cron: str
    timezone: str
    job_type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    misfire_policy: str
    catch_up_limit: int
    jitter_seconds: float
    enabled: bool
    source: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ScheduleFields:
    """A validated definition, ready to write."""

    name: str
    cron: str
    timezone: str
    job_type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    misfire_policy: str
    catch_up_limit: int
    jitter_seconds: float
    enabled: bool = True

    def params(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["payload"] = json.dumps(self.payload, separators=(",", ":"))
        return values


@dataclass(frozen=True)
class FireJob:
    """What every job of one schedule shares (the job type's defaults already applied)."""

    schedule_id: int
    type: str
    queue: str
    priority: int
    payload_json: str
    max_attempts: int
    timeout_seconds: float | None
    limit_key: str | None


@dataclass(frozen=True)
class Lateness:
    fires: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def _row(row: Any) -> ScheduleRow:
    values = row._asdict()
    values.pop("round_now", None)
    return ScheduleRow(**values)


def insert_schedule(
    db: Executor, fields: ScheduleFields, source: str, next_fire_at: datetime, now: datetime | None = None
) -> ScheduleRow | None:
    """None when a schedule of that name exists."""
    params = {**fields.params(), "source": source, "next_fire_at": next_fire_at, "now": now}
    row = db.execute(query("insert_schedule"), params).first()
    return _row(row) if row is not None else None


def sync_code_schedule(
    db: Executor, fields: ScheduleFields, next_fire_at: datetime, now: datetime | None = None
) -> str:
    """'created', 'updated', 'unchanged', or 'conflict' (an API schedule holds the name)."""
    params = {**fields.params(), "next_fire_at": next_fire_at, "now": now}
    written = db.execute(query("sync_code_schedule"), params).first()
    if written is not None:
        return "created" if written.created else "updated"
    existing = get_schedule(db, fields.name)
    return "unchanged" if existing is not None and existing.source == "code" else "conflict"


def get_schedule(db: Executor, name: str) -> ScheduleRow | None:
    row = db.execute(query("get_schedule"), {"name": name}).first()
    return _row(row) if row is not None else None


def list_schedules(db: Executor) -> list[ScheduleRow]:
    return [_row(r) for r in db.execute(query("list_schedules")).all()]


def set_schedule_cron(
    db: Executor, name: str, cron: str, timezone: str, next_fire_at: datetime, now: datetime | None = None
) -> ScheduleRow | None:
    params = {"name": name, "cron": cron, "timezone": timezone, "next_fire_at": next_fire_at, "now": now}
    row = db.execute(query("set_schedule_cron"), params).first()
    return _row(row) if row is not None else None


def set_schedule_enabled(
    db: Executor, name: str, enabled: bool, next_fire_at: datetime | None, now: datetime | None = None
) -> ScheduleRow | None:
    params = {"name": name, "enabled": enabled, "next_fire_at": next_fire_at, "now": now}
    row = db.execute(query("set_schedule_enabled"), params).first()
    return _row(row) if row is not None else None


def delete_schedule(db: Executor, name: str) -> bool:
    return db.execute(query("delete_schedule"), {"name": name}).first() is not None


def lock_due_schedules(db: Executor, limit: int, now: datetime | None = None) -> tuple[datetime | None, list[ScheduleRow]]:
    """(the round's now, the due schedules held by this transaction)."""
    rows = db.execute(query("lock_due_schedules"), {"limit": limit, "now": now}).all()
    return (rows[0].round_now if rows else None), [_row(r) for r in rows]


def insert_schedule_jobs(
    db: Executor,
    job: FireJob,
    fires: Sequence[tuple[datetime, datetime, str, dict[str, Any]]],
    now: datetime | None = None,
) -> list[tuple[int, datetime]]:
    """Insert (fire time, run_at, state, metadata) fires; returns (id, fire time) of the new ones."""
    if not fires:
        return []
    params = {
        "type": job.type, "queue": job.queue, "priority": job.priority, "payload": job.payload_json,
        "max_attempts": job.max_attempts, "timeout": job.timeout_seconds, "limit_key": job.limit_key,
        "schedule_id": job.schedule_id, "now": now,
        "fire_times": [f[0] for f in fires], "run_ats": [f[1] for f in fires], "states": [f[2] for f in fires],
        "metadatas": [json.dumps(f[3], separators=(",", ":")) for f in fires],
    }
    return [(r.id, r.fire_time) for r in db.execute(query("insert_schedule_jobs"), params).all()]


def insert_manual_run(db: Executor, job: FireJob, metadata: dict[str, Any], now: datetime | None = None) -> int:
    params = {
        "type": job.type, "queue": job.queue, "priority": job.priority, "payload": job.payload_json,
        "max_attempts": job.max_attempts, "timeout": job.timeout_seconds, "limit_key": job.limit_key,
        "schedule_id": job.schedule_id, "metadata": json.dumps(metadata), "now": now,
    }
    return int(db.execute(query("insert_manual_run"), params).scalar_one())


def advance_schedule(db: Executor, schedule_id: int, next_fire_at: datetime | None, last_fire_at: datetime | None) -> None:
    db.execute(query("advance_schedule"), {"id": schedule_id, "next_fire_at": next_fire_at, "last_fire_at": last_fire_at})


def seconds_until_next_fire(db: Executor, now: datetime | None = None) -> float | None:
    """None when no schedule is enabled."""
    value = db.execute(query("seconds_until_next_fire"), {"now": now}).scalar()
    return float(value) if value is not None else None


def cron_lateness(
    db: Executor, schedule: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> Lateness:
    row = db.execute(query("cron_lateness"), {"schedule": schedule, "since": since, "until": until}).one()
    as_float = lambda v: float(v) if v is not None else None  # noqa: E731 - numeric -> float
    return Lateness(int(row.fires), as_float(row.p50_ms), as_float(row.p99_ms), as_float(row.max_ms))
