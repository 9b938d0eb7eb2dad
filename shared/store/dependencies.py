"""Job dependencies: edges, and settling waiting jobs when their parents settle."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from shared.models.states import JobState
from shared.store.queues import notify_ready
from shared.store.rows import Executor
from shared.store.sql import query


def lock_parents(db: Executor, parent_ids: Sequence[int]) -> dict[int, str]:
    """Parent id -> state, with the parents locked until the transaction ends."""
    rows = db.execute(query("lock_parents"), {"ids": list(parent_ids)}).all()
    return {row.id: row.state for row in rows}


def add_dependencies(db: Executor, job_id: int, parent_ids: Sequence[int]) -> None:
    db.execute(query("insert_dependencies"), {"job_id": job_id, "parents": list(parent_ids)})
    db.execute(query("flag_parents"), {"ids": list(parent_ids)})


def settle(
    db: Executor, now: datetime | None = None, *, ended: Sequence[int] = (), waiting: Sequence[int] = ()
) -> list[tuple[int, str]]:
    """The one place waiting jobs are settled, in the caller's transaction: the waiting
    dependents of `ended` (jobs that just reached a terminal state: a finish, a rescue, an
    operator's cancel) and the `waiting` jobs named (a new dependent whose parent already
    failed, the sweep's page).

    A waiting job whose parents all succeeded becomes queued (scheduled while its run_at is
    later); one with a failed or cancelled parent is cancelled naming it, and so are its own
    dependents, transitively. The dispatcher is woken when any became runnable. Returns the
    (id, new state) pairs."""
    pending = list(waiting)
    if ended:
        pending.extend(db.execute(query("lock_waiting_dependents"), {"ids": list(ended)}).scalars())
    settled: list[tuple[int, str]] = []
    while pending:
        rows = db.execute(query("resolve_waiting"), {"ids": pending, "now": now}).all()
        settled.extend((row.id, row.state) for row in rows)
        cancelled = [row.id for row in rows if row.state == JobState.CANCELLED and row.has_dependents]
        pending = list(db.execute(query("lock_waiting_dependents"), {"ids": cancelled}).scalars()) if cancelled else []
    if any(state != JobState.CANCELLED for _, state in settled):
        notify_ready(db)
    return settled


def waiting_page(db: Executor, after: int, limit: int) -> list[int]:
    return list(db.execute(query("waiting_jobs"), {"after": after, "limit": limit}).scalars())
