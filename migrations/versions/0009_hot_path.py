"""hot path: roll-up index on job_executions.started_at, jobs fillfactor 90 (HOT room)

Measured (docs/benchmarks.md, "Row versions and HOT"): every state change of a job writes a
non-HOT version, whatever the fillfactor, because `state` is in the predicates of the partial
indexes that keep dispatch, claim and the window exact at any history size (PostgreSQL 15 counts
predicate columns as indexed). What can be HOT is: the execution's finish (no index covers
job_executions.state or finished_at: 100 % HOT at the default fillfactor, kept by indexing only
started_at, written once), and updates of a running job's progress or cancel request (93 % HOT at
fillfactor 100, 96 % at 90). The roll-up reads executions by started_at and by job id.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 04:20:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_job_executions_started_at'), 'job_executions', ['started_at'], unique=False)
    # Applies to pages written from now on; existing pages keep their fill until rewritten.
    op.execute("ALTER TABLE jobs SET (fillfactor = 90)")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs RESET (fillfactor)")
    op.drop_index(op.f('ix_job_executions_started_at'), table_name='job_executions')
