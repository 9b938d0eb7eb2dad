"""control features: unique periods, per-key limits, rate windows, dependents flag

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:43:09.910202
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_windows',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('recent', postgresql.ARRAY(sa.DateTime(timezone=True)), server_default=sa.text("'{}'"), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_windows'))
    )
    op.add_column('jobs', sa.Column('unique_period_seconds', sa.Double(), server_default=sa.text('0'), nullable=False))
    op.add_column('jobs', sa.Column('unique_released', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    op.add_column('jobs', sa.Column('has_dependents', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    op.create_index('ix_jobs_limit_key_in_flight', 'jobs', ['limit_key'], unique=False, postgresql_where=sa.text("limit_key IS NOT NULL AND state IN ('dispatched', 'running')"))
    op.create_index('ix_jobs_waiting', 'jobs', ['id'], unique=False, postgresql_where=sa.text("state = 'waiting'"))
    op.create_check_constraint(op.f('ck_jobs_unique_period_not_negative'), 'jobs', 'unique_period_seconds >= 0')
    # Finished jobs held their key until now: release them, then swap the index (new one first,
    # so uniqueness is never unguarded).
    op.execute("UPDATE jobs SET unique_released = true WHERE unique_key IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')")
    op.create_index('uq_jobs_unique_key_held', 'jobs', ['unique_key'], unique=True, postgresql_where=sa.text('unique_key IS NOT NULL AND NOT unique_released'))
    op.drop_index(op.f('uq_jobs_unique_key_active'), table_name='jobs', postgresql_where="((unique_key IS NOT NULL) AND (state <> ALL (ARRAY['succeeded'::text, 'failed'::text, 'cancelled'::text])))")


def downgrade() -> None:
    op.drop_index('ix_jobs_waiting', table_name='jobs', postgresql_where=sa.text("state = 'waiting'"))
    op.drop_index('ix_jobs_limit_key_in_flight', table_name='jobs', postgresql_where=sa.text("limit_key IS NOT NULL AND state IN ('dispatched', 'running')"))
    op.create_index(op.f('uq_jobs_unique_key_active'), 'jobs', ['unique_key'], unique=True, postgresql_where="((unique_key IS NOT NULL) AND (state <> ALL (ARRAY['succeeded'::text, 'failed'::text, 'cancelled'::text])))")
    op.drop_index('uq_jobs_unique_key_held', table_name='jobs', postgresql_where=sa.text('unique_key IS NOT NULL AND NOT unique_released'))
    op.drop_constraint(op.f('ck_jobs_unique_period_not_negative'), 'jobs', type_='check')
    op.drop_column('jobs', 'has_dependents')
    op.drop_column('jobs', 'unique_released')
    op.drop_column('jobs', 'unique_period_seconds')
    op.drop_table('rate_windows')
