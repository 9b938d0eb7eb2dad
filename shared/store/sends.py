"""Send-time limits: the named statements of sends.sql, typed (shared/workloads/pacing.py
explains the rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from shared.store.rows import Executor
from shared.store.sql import query


@dataclass(frozen=True)
class SendDecision:
    ok: bool
    started_at: datetime  # the database's clock when the keys were locked
    wait_seconds: float
    blocking_key: str | None
    slot_ids: list[int]


def reserve_send(
    db: Executor, keys: Sequence[str], limits: Sequence[int], periods: Sequence[float], *,
    holder: int | None, hold_seconds: float,
) -> SendDecision:
    params = {"keys": list(keys), "limits": list(limits), "periods": list(periods), "holder": holder,
              "hold": hold_seconds}
    row = db.execute(query("reserve_send"), params).one()
    return SendDecision(row.ok, row.started_at, row.wait_seconds, row.blocking_key, list(row.slot_ids or []))


def finish_send_slots(db: Executor, ids: Sequence[int], ended: datetime) -> None:
    if ids:
        db.execute(query("finish_send_slots"), {"ids": list(ids), "ended": ended})
