"""Reads and operator actions on single jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.rows import Executor
from shared.store.sql import query


def get_job(db: Executor, job_id: int) -> dict[str, Any] | None:
    row = db.execute(query("get_job"), {"job_id": job_id}).mappings().first()
    return dict(row) if row is not None else None


def get_executions(db: Executor, job_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query("get_executions"), {"job_id": job_id}).mappings().all()]


def job_state(db: Executor, job_id: int) -> str | None:
    return db.execute(query("job_state"), {"job_id": job_id}).scalar()


def retry_job(db: Executor, job_id: int, now: datetime | None = None) -> bool:
    return db.execute(query("retry_job"), {"job_id": job_id, "now": now}).first() is not None


def cancel_waiting_job(db: Executor, job_id: int, reason: str, now: datetime | None = None) -> bool:
    return db.execute(query("cancel_waiting_job"), {"job_id": job_id, "reason": reason, "now": now}).first() is not None


def get_job_logs(db: Executor, job_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query("get_job_logs"), {"job_id": job_id, "limit": limit}).mappings().all()]
