"""sql contract: finite timestamps and numbers, and what a plain INSERT INTO jobs may set

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00.000000

Check constraints are added NOT VALID: a deployment holding an old row that breaks one still
migrates (the dispatcher fails such a row alone when it meets it), while every new row and
every update is checked. `ALTER TABLE ... VALIDATE CONSTRAINT` may be run later, at leisure.

The insert guard is a BEFORE INSERT row trigger whose WHEN clause is the violation itself: the
executor evaluates it per row without a function call, and the plpgsql function (which only
words the error) runs for a bad row alone, so bulk enqueue keeps its speed.
"""

from __future__ import annotations

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The same numbers as shared/models/platform.py (the models mirror this migration).
PAYLOAD_MAX_BYTES = 1048576
METADATA_MAX_BYTES = 32768  # twice the API's 16 KiB of compact JSON: PostgreSQL's text form is wider
MAX_ATTEMPTS_MAX = 1000
TIMEOUT_MAX_SECONDS = 2592000
UNIQUE_PERIOD_MAX_SECONDS = 315360000

# (table, constraint name without the ck_<table>_ prefix, condition). NULL passes a CHECK.
CHECKS = [
    ('jobs', 'run_at_finite', 'isfinite(run_at)'),
    ('jobs', 'created_at_finite', 'isfinite(created_at)'),
    ('jobs', 'dispatched_at_finite', 'isfinite(dispatched_at)'),
    ('jobs', 'started_at_finite', 'isfinite(started_at)'),
    ('jobs', 'finished_at_finite', 'isfinite(finished_at)'),
    ('jobs', 'cancel_requested_at_finite', 'isfinite(cancel_requested_at)'),
    ('jobs', 'fire_time_finite', 'isfinite(fire_time)'),
    # PostgreSQL sorts NaN above Infinity: one comparison refuses both.
    ('jobs', 'timeout_finite', "timeout_seconds < 'Infinity'::float8"),
    ('jobs', 'unique_period_finite', "unique_period_seconds < 'Infinity'::float8"),
    ('job_executions', 'started_at_finite', 'isfinite(started_at)'),
    ('job_executions', 'finished_at_finite', 'isfinite(finished_at)'),
    ('schedules', 'next_fire_at_finite', 'isfinite(next_fire_at)'),
    ('schedules', 'last_fire_at_finite', 'isfinite(last_fire_at)'),
    ('schedules', 'jitter_finite', "jitter_seconds < 'Infinity'::float8"),
    ('queues', 'rate_period_finite', "rate_period_seconds < 'Infinity'::float8"),
]

# The violation, as the trigger's WHEN clause. Each term is NULL-safe in the direction that
# matters: a NULL makes the term NULL, the row passes here, and the column's NOT NULL (or the
# default) decides.
INSERT_VIOLATION = f"""
    NEW.state NOT IN ('waiting', 'scheduled', 'queued')
    OR NEW.attempt <> 0
    OR NEW.max_attempts NOT BETWEEN 1 AND {MAX_ATTEMPTS_MAX}
    OR NEW.timeout_seconds NOT BETWEEN 1 AND {TIMEOUT_MAX_SECONDS}
    OR NEW.unique_period_seconds NOT BETWEEN 0 AND {UNIQUE_PERIOD_MAX_SECONDS}
    OR NEW.dispatched_at IS NOT NULL OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL
    OR NEW.worker_id IS NOT NULL OR NEW.progress IS NOT NULL OR NEW.cancel_requested_at IS NOT NULL
    OR NEW.unique_released
    OR octet_length(NEW.payload::text) > {PAYLOAD_MAX_BYTES}
    OR octet_length(NEW.metadata::text) > {METADATA_MAX_BYTES}
"""


def _refuse(column: str, message: str, *args: str) -> str:
    params = "".join(f", {a}" for a in args)
    return (
        f"RAISE EXCEPTION 'jobs insert refused: {message}'{params}\n"
        f"            USING ERRCODE = 'check_violation', TABLE = 'jobs', COLUMN = '{column}',\n"
        f"                  CONSTRAINT = 'jobs_insert_contract',\n"
        f"                  HINT = 'see docs/sql-contract.md: an insert enqueues; the platform moves the job on';"
    )


CREATE_GUARD = f"""
CREATE FUNCTION jobs_insert_contract() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    size integer;
BEGIN
    IF NEW.state NOT IN ('waiting', 'scheduled', 'queued') THEN
        {_refuse('state', 'state % cannot be inserted (waiting, scheduled or queued only)', 'quote_literal(NEW.state)')}
    END IF;
    IF NEW.attempt <> 0 THEN
        {_refuse('attempt', 'attempt must be 0, not %', 'NEW.attempt')}
    END IF;
    IF NEW.max_attempts NOT BETWEEN 1 AND {MAX_ATTEMPTS_MAX} THEN
        {_refuse('max_attempts', f'max_attempts must be 1..{MAX_ATTEMPTS_MAX}, not %', 'NEW.max_attempts')}
    END IF;
    IF NEW.timeout_seconds NOT BETWEEN 1 AND {TIMEOUT_MAX_SECONDS} THEN
        {_refuse('timeout_seconds', f'timeout_seconds must be NULL or 1..{TIMEOUT_MAX_SECONDS}, not %', 'NEW.timeout_seconds')}
    END IF;
    IF NEW.unique_period_seconds NOT BETWEEN 0 AND {UNIQUE_PERIOD_MAX_SECONDS} THEN
        {_refuse('unique_period_seconds', f'unique_period_seconds must be 0..{UNIQUE_PERIOD_MAX_SECONDS}, not %', 'NEW.unique_period_seconds')}
    END IF;
    IF NEW.dispatched_at IS NOT NULL THEN
        {_refuse('dispatched_at', 'dispatched_at must be NULL (the dispatcher sets it)')}
    END IF;
    IF NEW.started_at IS NOT NULL THEN
        {_refuse('started_at', 'started_at must be NULL (a worker sets it)')}
    END IF;
    IF NEW.finished_at IS NOT NULL THEN
        {_refuse('finished_at', 'finished_at must be NULL (a worker sets it)')}
    END IF;
    IF NEW.worker_id IS NOT NULL THEN
        {_refuse('worker_id', 'worker_id must be NULL (a worker sets it)')}
    END IF;
    IF NEW.progress IS NOT NULL THEN
        {_refuse('progress', 'progress must be NULL (a running job sets it)')}
    END IF;
    IF NEW.cancel_requested_at IS NOT NULL THEN
        {_refuse('cancel_requested_at', 'cancel_requested_at must be NULL (the control API sets it)')}
    END IF;
    IF NEW.unique_released THEN
        {_refuse('unique_released', 'unique_released must be false')}
    END IF;
    size := octet_length(NEW.payload::text);
    IF size > {PAYLOAD_MAX_BYTES} THEN
        {_refuse('payload', f'payload is % bytes as text, over the {PAYLOAD_MAX_BYTES}-byte limit', 'size')}
    END IF;
    size := octet_length(NEW.metadata::text);
    IF size > {METADATA_MAX_BYTES} THEN
        {_refuse('metadata', f'metadata is % bytes as text, over the {METADATA_MAX_BYTES}-byte limit', 'size')}
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_insert_contract BEFORE INSERT ON jobs
    FOR EACH ROW WHEN ({INSERT_VIOLATION}) EXECUTE FUNCTION jobs_insert_contract();
"""
DROP_GUARD = """
DROP TRIGGER IF EXISTS jobs_insert_contract ON jobs;
DROP FUNCTION IF EXISTS jobs_insert_contract();
"""


def upgrade() -> None:
    for table, name, condition in CHECKS:
        op.create_check_constraint(op.f(f'ck_{table}_{name}'), table, condition, postgresql_not_valid=True)
    op.execute(CREATE_GUARD)


def downgrade() -> None:
    op.execute(DROP_GUARD)
    for table, name, _ in reversed(CHECKS):
        op.drop_constraint(op.f(f'ck_{table}_{name}'), table, type_='check')
