"""messages: "outcome unknown, an operator decides" is the state needs_review, as for publications

A proactive message flagged for review was `pending` with a `needs_review` boolean beside it,
while a publication in the same situation has the state `needs_review`. One model for both: the
message's state. Flagged pending messages become `needs_review`; the column goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_STATES_BEFORE = "'pending', 'sent', 'failed', 'cancelled'"
_STATES_AFTER = "'pending', 'sent', 'failed', 'cancelled', 'needs_review'"


def upgrade() -> None:
    op.drop_constraint(op.f('ck_proactive_messages_state_valid'), 'proactive_messages', type_='check')
    op.create_check_constraint(op.f('ck_proactive_messages_state_valid'), 'proactive_messages',
                               f"state IN ({_STATES_AFTER})")
    # The flag only ever meant something on a pending message (the handler and the operator's
    # verdict both required pending); on a settled one it was a leftover, and the state wins.
    op.execute("UPDATE proactive_messages SET state = 'needs_review' WHERE needs_review AND state = 'pending'")
    op.drop_column('proactive_messages', 'needs_review')


def downgrade() -> None:
    op.add_column('proactive_messages', sa.Column('needs_review', sa.Boolean(), server_default=sa.text('false'),
                                                  nullable=False))
    op.execute("UPDATE proactive_messages SET state = 'pending', needs_review = true WHERE state = 'needs_review'")
    op.drop_constraint(op.f('ck_proactive_messages_state_valid'), 'proactive_messages', type_='check')
    op.create_check_constraint(op.f('ck_proactive_messages_state_valid'), 'proactive_messages',
                               f"state IN ({_STATES_BEFORE})")
