"""Job dependencies: edges, and resolving waiting jobs when their parents settle."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from shared.store.rows import Executor
from shared.store.sql import query


def lock_parents(db: Executor, parent_ids: Sequence[int]) -> dict[int, str]:
    """Parent id -> state, with the parents locked until the transaction ends."""
    rows = db.execute(query("lock_parents"), {"ids": list(parent_ids)}).all()
    return {row.id: row.state for row in rows}


def add_dependencies(db: Executor, job_id: int, parent_ids: Sequence[int]) -> None:
    db.execute(query("insert_dependencies"), {"job_id": job_id, "parents": list(parent_ids)})
    db.execute(query("flag_parents"), {"ids": list(parent_ids)})


def resolve_after(db: Executor, parent_id: int, now: datetime | None = None) -> list[tuple[int, str]]:
    """Resolve the waiting dependents of a parent that just settled, cascading cancellations."""
    waiting = list(db.execute(query("lock_waiting_dependents"), {"parent_id": parent_id}).scalars())
    return resolve(db, waiting, now)


def resolve(db: Executor, job_ids: Sequence[int], now: datetime | None = None) -> list[tuple[int, str]]:
    """Settle the given waiting jobs where their parents allow; (id, new state) pairs, including
    the dependents of any job this cancelled, and theirs."""
    settled: list[tuple[int, str]] = []
    pending = list(job_ids)
    while pending:
        rows = db.execute(query("resolve_waiting"), {"ids": pending, "now": now}).all()
        settled.extend((row.id, row.state) for row in rows)
        pending = []
        for row in rows:
            if row.state == "cancelled" and row.has_dependents:
                pending.extend(db.execute(query("lock_waiting_dependents"), {"parent_id": row.id}).scalars())
    return settled


def waiting_page(db: Executor, after: int, limit: int) -> list[int]:
    return list(db.execute(query("waiting_jobs"), {"after": after, "limit": limit}).scalars())
