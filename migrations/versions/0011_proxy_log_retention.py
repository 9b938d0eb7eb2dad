"""proxy health logs: an index led by checked_at, for the pruner's retention

`proxy_health_logs` grows by every check of every proxy (1,000 proxies swept every 5 minutes:
288,000 rows a day) and was never pruned. The pruner now deletes rows past
JOBS_PROXY_LOG_RETENTION_SECONDS oldest first, in batches; finding them by age needs an index
led by `checked_at` (the existing one is led by `proxy_id`, for a proxy's history).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 07:00:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_proxy_health_logs_checked_at'), 'proxy_health_logs', ['checked_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_proxy_health_logs_checked_at'), table_name='proxy_health_logs')
