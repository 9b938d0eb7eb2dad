"""Rows of the past, for tests that need finished or running jobs without running them.

A plain INSERT INTO jobs may only enqueue (the trigger `jobs_insert_contract`, migration 0004).
Fixtures that stand for history (a million finished jobs, a job some worker is running) are
written with the guard switched off for their own transaction only: ALTER TABLE is
transactional, and its lock keeps every other session out until the commit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text

from shared.store.rows import Executor

GUARD = "jobs_insert_contract"


@contextmanager
def history_inserts(db: Executor) -> Iterator[None]:
    """Inside the caller's transaction: inserts into jobs may set any state and counter."""
    db.execute(text(f"ALTER TABLE jobs DISABLE TRIGGER {GUARD}"))
    yield
    db.execute(text(f"ALTER TABLE jobs ENABLE TRIGGER {GUARD}"))
