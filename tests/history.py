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

from shared.db import Database
from shared.models.platform import Job
from shared.store.rows import Executor

GUARD = "jobs_insert_contract"


@contextmanager
def history_inserts(db: Executor) -> Iterator[None]:
    """Inside the caller's transaction: inserts into jobs may set any state and counter."""
    db.execute(text(f"ALTER TABLE jobs DISABLE TRIGGER {GUARD}"))
    yield
    db.execute(text(f"ALTER TABLE jobs ENABLE TRIGGER {GUARD}"))


def fill_finished_jobs(db: Executor, rows: int) -> None:
    """`rows` finished jobs in one statement, one a second up to now: 1 % failed, spread over the
    four queues (the console's tests and its benchmark). Inside `history_inserts`."""
    db.execute(text("""
        INSERT INTO jobs (type, queue, state, payload, attempt, max_attempts, run_at, created_at, started_at,
                          finished_at, last_error)
        SELECT 'bench.noop', (ARRAY['high','default','low','bulk'])[1 + g % 4],
               CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'succeeded' END,
               jsonb_build_object('n', g), 1, 1, t, t, t, t + interval '5 ms',
               CASE WHEN g % 100 = 0 THEN 'boom' END
        FROM generate_series(1, :rows) g, LATERAL (SELECT now() - make_interval(secs => :rows - g) AS t) at_
    """), {"rows": rows})


@contextmanager
def old_rows_allowed(database: Database, *constraints: str) -> Iterator[None]:
    """The named check constraints of jobs are dropped (committed), so rows from before
    migration 0004 can be made, and added back NOT VALID (as the migration adds them) at the
    end, whatever happens: later tests find the schema as it was."""
    checks = {c.name: str(c.sqltext) for c in Job.__table__.constraints if c.name in constraints}
    assert set(checks) == set(constraints), f"unknown constraints: {set(constraints) - set(checks)}"
    with database.engine.begin() as connection:
        for name in checks:
            connection.execute(text(f"ALTER TABLE jobs DROP CONSTRAINT {name}"))
    try:
        yield
    finally:
        with database.engine.begin() as connection:
            for name, condition in checks.items():
                connection.execute(text(f"ALTER TABLE jobs ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"))
