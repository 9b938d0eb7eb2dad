"""send-time limits (send_windows, send_slots) and proxy sweeps (proxy_sweeps)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 03:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0008'
down_revision = '0007'  # the lead re-chains it after the other wave-2 migrations
branch_labels = None
depends_on = None


# The send-time rule (shared/workloads/pacing.py explains it), in one call so the keys' row locks
# are held for one statement and the commit. PL/pgSQL because each statement in it reads a new
# snapshot: the slots are read after the locks are granted, so a reservation committed while
# this one waited is seen. Sends in flight count until answered (their end is unknown; for the
# estimate of the wait they are assumed to answer now); a send whose holder died counts until
# its expiry. Returns whether the send may go now; if so its slot ids, else the wait and the
# key holding it back. Waiters of a key with room for several sends are told successive slots
# (retry_tail), so they do not all wake at once.
SEND_RESERVE = """
CREATE FUNCTION send_reserve(p_keys text[], p_limits integer[], p_periods double precision[],
                             p_holder bigint, p_hold double precision)
RETURNS TABLE (ok boolean, started_at timestamptz, wait_seconds double precision, blocking_key text, slot_ids bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now timestamptz;
    v_start timestamptz;
    v_latest timestamptz;
    v_key text;
    v_limit integer;
    v_period interval;
    v_count integer;
    v_nth timestamptz;
    v_tail timestamptz;
    v_ids bigint[];
BEGIN
    INSERT INTO send_windows (key) SELECT unnest(p_keys) ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM send_windows WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
    v_now := clock_timestamp();
    FOR i IN 1 .. array_length(p_keys, 1) LOOP
        v_period := make_interval(secs => p_periods[i]);
        SELECT count(*), (array_agg(e ORDER BY e DESC))[p_limits[i]] INTO v_count, v_nth
        FROM (SELECT CASE WHEN ended_at IS NULL AND expires_at > v_now THEN v_now
                          ELSE coalesce(ended_at, expires_at) END AS e
              FROM send_slots WHERE key = p_keys[i]) s
        WHERE e > v_now - v_period;
        IF v_count >= p_limits[i] THEN
            v_start := v_nth + v_period;
            SELECT retry_tail INTO v_tail FROM send_windows WHERE key = p_keys[i];
            IF p_limits[i] > 1 AND v_tail > v_now THEN
                v_start := greatest(v_start, v_tail + v_period / p_limits[i]);
            END IF;
            IF v_latest IS NULL OR v_start > v_latest THEN
                v_latest := v_start; v_key := p_keys[i]; v_limit := p_limits[i];
            END IF;
        END IF;
    END LOOP;
    IF v_latest IS NOT NULL THEN
        IF v_limit > 1 THEN
            UPDATE send_windows SET retry_tail = v_latest WHERE key = v_key;
        END IF;
        RETURN QUERY SELECT false, v_now, extract(epoch FROM v_latest - v_now)::double precision, v_key, NULL::bigint[];
        RETURN;
    END IF;
    DELETE FROM send_slots s USING unnest(p_keys, p_periods) AS h(key, period)
    WHERE s.key = h.key AND coalesce(s.ended_at, s.expires_at) <= v_now - make_interval(secs => h.period);
    WITH taken AS (
        INSERT INTO send_slots (key, holder, started_at, expires_at)
        SELECT unnest(p_keys), p_holder, v_now, v_now + make_interval(secs => p_hold) RETURNING id
    ) SELECT array_agg(id) INTO v_ids FROM taken;
    RETURN QUERY SELECT true, v_now, 0.0::double precision, NULL::text, v_ids;
END;
$$
"""


def upgrade() -> None:
    op.create_table('proxy_sweeps',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('checked', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('healthy', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('batches', sa.Integer(), nullable=False),
    sa.Column('job_ids', postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('checked >= 0 AND checked <= total', name=op.f('ck_proxy_sweeps_checked_within_total')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proxy_sweeps'))
    )
    op.create_table('send_windows',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('retry_tail', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_send_windows'))
    )
    op.create_table('send_slots',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('holder', sa.BigInteger(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key'], ['send_windows.key'], name=op.f('fk_send_slots_key_send_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_slots'))
    )
    op.create_index('ix_send_slots_key', 'send_slots', ['key'], unique=False)
    op.execute(SEND_RESERVE)


def downgrade() -> None:
    op.execute("DROP FUNCTION send_reserve(text[], integer[], double precision[], bigint, double precision)")
    op.drop_index('ix_send_slots_key', table_name='send_slots')
    op.drop_table('send_slots')
    op.drop_table('send_windows')
    op.drop_table('proxy_sweeps')
