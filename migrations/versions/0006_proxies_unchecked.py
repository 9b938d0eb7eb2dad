"""proxies start unchecked and unscored: status 'unchecked', health_score NULL until a check

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 03:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_STATUSES_BEFORE = "'active', 'degraded', 'dead', 'disabled'"
_STATUSES_AFTER = "'unchecked', 'active', 'degraded', 'dead', 'disabled'"


def upgrade() -> None:
    op.drop_constraint(op.f('ck_proxies_status_valid'), 'proxies', type_='check')
    op.create_check_constraint(op.f('ck_proxies_status_valid'), 'proxies', f"status IN ({_STATUSES_AFTER})")
    op.alter_column('proxies', 'status', server_default=sa.text("'unchecked'"))
    op.alter_column('proxies', 'health_score', nullable=True, server_default=None)
    # A proxy no check has ever recorded had only the old defaults to say it was healthy.
    op.execute(
        "UPDATE proxies SET health_score = NULL, "
        "status = CASE WHEN status = 'active' THEN 'unchecked' ELSE status END "
        "WHERE NOT EXISTS (SELECT FROM proxy_health_logs l WHERE l.proxy_id = proxies.id)"
    )
    op.create_check_constraint(
        op.f('ck_proxies_unchecked_has_no_score'), 'proxies', "status <> 'unchecked' OR health_score IS NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f('ck_proxies_unchecked_has_no_score'), 'proxies', type_='check')
    # The old schema has neither: an unchecked proxy goes back to what it was added as.
    op.execute(
        "UPDATE proxies SET status = CASE WHEN status = 'unchecked' THEN 'active' ELSE status END, "
        "health_score = coalesce(health_score, 100)"
    )
    op.alter_column('proxies', 'health_score', nullable=False, server_default=sa.text('100'))
    op.alter_column('proxies', 'status', server_default=sa.text("'active'"))
    op.drop_constraint(op.f('ck_proxies_status_valid'), 'proxies', type_='check')
    op.create_check_constraint(op.f('ck_proxies_status_valid'), 'proxies', f"status IN ({_STATUSES_BEFORE})")
