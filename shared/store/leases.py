"""Leader leases for the scheduler's singleton services."""

from __future__ import annotations

from datetime import datetime

from shared.store.rows import Executor
from shared.store.sql import query


def hold_lease(db: Executor, name: str, holder: str, ttl_seconds: float, now: datetime | None = None) -> bool:
    params = {"name": name, "holder": holder, "ttl": ttl_seconds, "now": now}
    return db.execute(query("hold_lease"), params).first() is not None


def release_lease(db: Executor, name: str, holder: str) -> None:
    db.execute(query("release_lease"), {"name": name, "holder": holder})
