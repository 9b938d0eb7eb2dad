"""outage hardening: heartbeats list the jobs each process holds; jobs count the processes they ended

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 03:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: a process that does not report its holdings (an older version); the rescuer's
    # holdings rule then leaves its jobs to the staleness rule.
    op.add_column('workers', sa.Column('holding', postgresql.ARRAY(sa.BigInteger()), nullable=True))
    op.add_column('jobs', sa.Column('crashes', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.create_check_constraint(op.f('ck_jobs_crashes_not_negative'), 'jobs', 'crashes >= 0')


def downgrade() -> None:
    op.drop_constraint(op.f('ck_jobs_crashes_not_negative'), 'jobs', type_='check')
    op.drop_column('jobs', 'crashes')
    op.drop_column('workers', 'holding')
