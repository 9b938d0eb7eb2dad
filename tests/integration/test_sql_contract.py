"""The SQL contract is defended by the database: a plain INSERT INTO jobs may only enqueue.

Each refused insert is refused with the error docs/sql-contract.md documents (SQLSTATE 23514,
the column named) and writes nothing; valid inserts, the enqueue API and the migration's
upgrade over old bad rows keep working; the docs' SQL runs as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import IntegrityError

from shared import migrate
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.models import Base
from tests.history import history_inserts

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql-contract.md"
BIG = 50 * 1024 * 1024


def refused(db, sql: str, params: dict | None = None) -> psycopg.Error:
    with pytest.raises(IntegrityError) as caught:
        with db.engine.begin() as connection:
            connection.execute(text(sql), params or {})
    with db.engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 0, "a refused insert wrote a row"
    error = caught.value.orig
    assert isinstance(error, psycopg.errors.CheckViolation)
    return error


def insert(columns: str, values: str) -> str:
    return f"INSERT INTO jobs (type, payload, {columns}) VALUES ('test.record', '{{\"key\": \"k\"}}', {values})"


GUARDED = [  # (columns, values, the column named, the message's words)
    ("state", "'running'", "state", "state 'running' cannot be inserted (waiting, scheduled or queued only)"),
    ("state", "'succeeded'", "state", "state 'succeeded' cannot be inserted"),
    ("state", "'dispatched'", "state", "state 'dispatched' cannot be inserted"),
    ("state", "'failed'", "state", "state 'failed' cannot be inserted"),
    ("attempt", "99", "attempt", "attempt must be 0, not 99"),
    ("max_attempts", "0", "max_attempts", "max_attempts must be 1..1000, not 0"),
    ("max_attempts", "1001", "max_attempts", "max_attempts must be 1..1000, not 1001"),
    ("timeout_seconds", "'NaN'", "timeout_seconds", "timeout_seconds must be NULL or 1..2592000, not NaN"),
    ("timeout_seconds", "'Infinity'", "timeout_seconds", "not Infinity"),
    ("timeout_seconds", "0.5", "timeout_seconds", "not 0.5"),
    ("timeout_seconds", "2592001", "timeout_seconds", "not 2592001"),
    ("unique_period_seconds", "'NaN'", "unique_period_seconds", "unique_period_seconds must be 0..315360000, not NaN"),
    ("dispatched_at", "now()", "dispatched_at", "dispatched_at must be NULL"),
    ("started_at", "now()", "started_at", "started_at must be NULL"),
    ("finished_at", "now()", "finished_at", "finished_at must be NULL"),
    ("worker_id", "'w1'", "worker_id", "worker_id must be NULL"),
    ("progress", "0.5", "progress", "progress must be NULL"),
    ("cancel_requested_at", "now()", "cancel_requested_at", "cancel_requested_at must be NULL"),
    ("unique_key, unique_released", "'k', true", "unique_released", "unique_released must be false"),
]


@pytest.mark.parametrize("columns, values, column, words", GUARDED, ids=[f"{g[0]}={g[1]}" for g in GUARDED])
def test_an_insert_may_only_enqueue(db, columns, values, column, words):
    error = refused(db, insert(columns, values))
    assert error.diag.column_name == column and error.diag.constraint_name == "jobs_insert_contract"
    assert error.diag.message_primary.startswith("jobs insert refused: ")
    assert words in error.diag.message_primary


@pytest.mark.parametrize("size, column", [(BIG, "payload"), (2 * 1024 * 1024, "payload"), (1048565, "payload"),
                                          (32769 - 12, "metadata")])
def test_oversized_payload_and_metadata_are_refused(db, size, column):
    # {"blob": "x...x"} is the string's length plus 12 bytes as text.
    error = refused(db, f"INSERT INTO jobs (type, {column}) VALUES ('test.record', jsonb_build_object('blob', repeat('x', :n)))",
                    {"n": size})
    assert error.diag.column_name == column
    limit = 1048576 if column == "payload" else 32768
    assert error.diag.message_primary == f"jobs insert refused: {column} is {size + 12} bytes as text, over the {limit}-byte limit"


def test_sizes_up_to_the_limit_are_accepted(db):
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO jobs (type, payload, metadata) VALUES "
            "('test.record', jsonb_build_object('blob', repeat('x', 1048564)), jsonb_build_object('blob', repeat('x', 32756)))"))
        sizes = connection.execute(text("SELECT octet_length(payload::text), octet_length(metadata::text) FROM jobs")).one()
    assert tuple(sizes) == (1048576, 32768)


@pytest.mark.parametrize("columns, values, constraint", [
    ("run_at", "'-infinity'", "ck_jobs_run_at_finite"),
    ("run_at", "'infinity'", "ck_jobs_run_at_finite"),
    ("created_at", "'infinity'", "ck_jobs_created_at_finite"),
    ("fire_time", "'-infinity'", "ck_jobs_fire_time_finite"),
])
def test_timestamps_must_be_finite(db, columns, values, constraint):
    error = refused(db, insert(columns, values))
    assert error.diag.constraint_name == constraint


@pytest.mark.parametrize("assignment, constraint", [
    ("run_at = '-infinity'", "ck_jobs_run_at_finite"),
    ("finished_at = 'infinity'", "ck_jobs_finished_at_finite"),
    ("timeout_seconds = 'NaN'", "ck_jobs_timeout_finite"),
    ("timeout_seconds = 'Infinity'", "ck_jobs_timeout_finite"),
    ("unique_period_seconds = 'Infinity'", "ck_jobs_unique_period_finite"),
    ("progress = 'NaN'", "ck_jobs_progress_range"),
])
def test_updates_are_checked_too(db, assignment, constraint):
    with db.engine.begin() as connection:
        connection.execute(text(insert("state", "'queued'")))
    with pytest.raises(IntegrityError) as caught:
        with db.engine.begin() as connection:
            connection.execute(text(f"UPDATE jobs SET {assignment}"))
    assert caught.value.orig.diag.constraint_name == constraint


@pytest.mark.parametrize("table, sql, constraint", [
    ("job_executions", "INSERT INTO job_executions (job_id, attempt, started_at) VALUES (:job, 1, '-infinity')",
     "ck_job_executions_started_at_finite"),
    ("schedules", "INSERT INTO schedules (name, cron, job_type, queue, next_fire_at) "
                  "VALUES ('s', '* * * * *', 'test.record', 'default', 'infinity')", "ck_schedules_next_fire_at_finite"),
    ("schedules", "INSERT INTO schedules (name, cron, job_type, queue, jitter_seconds) "
                  "VALUES ('s', '* * * * *', 'test.record', 'default', 'NaN')", "ck_schedules_jitter_finite"),
    ("queues", "UPDATE queues SET rate_limit = 1, rate_period_seconds = 'Infinity' WHERE name = 'default'",
     "ck_queues_rate_period_finite"),
])
def test_other_tables_refuse_infinite_values(db, table, sql, constraint):
    with db.engine.begin() as connection:
        job = connection.execute(text(insert("state", "'queued'") + " RETURNING id")).scalar()
    with pytest.raises(IntegrityError) as caught:
        with db.engine.begin() as connection:
            connection.execute(text(sql), {"job": job})
    assert caught.value.orig.diag.constraint_name == constraint


def test_valid_inserts_and_the_enqueue_api_still_work(db):
    with db.engine.begin() as connection:
        connection.execute(text(insert("state, run_at", "'scheduled', now() + interval '1 hour'")))
        connection.execute(text(insert("state, max_attempts, timeout_seconds, unique_key, unique_period_seconds",
                                       "'waiting', 1000, 2592000, 'u', 315360000")))
        connection.execute(text(insert("priority, metadata", "0, '{\"source\": \"billing\"}'")))
    single = enqueue_now("test.record", {"key": "api"}, max_attempts=7)
    unique = enqueue_now("test.unique", {"key": "u1"})
    assert enqueue_now("test.unique", {"key": "u1"}).id == unique.id
    many = enqueue_many_now("test.record", [{"key": f"m{i}"} for i in range(500)])
    assert len(many) == 500 and single.id and not unique.duplicate
    with db.engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 3 + 2 + 500


def test_a_refused_row_in_a_bulk_insert_refuses_the_whole_statement(db):
    refused(db, "INSERT INTO jobs (type, payload, state) "
                "SELECT 'test.record', '{\"key\": \"k\"}', CASE WHEN g = 500 THEN 'running' ELSE 'queued' END "
                "FROM generate_series(1, 1000) AS g")


def test_model_declares_every_check_constraint_the_database_has(db):
    tables = ("jobs", "job_executions", "schedules", "queues")
    declared = {c.name for t in tables for c in Base.metadata.tables[t].constraints if c.__class__.__name__ == "CheckConstraint"}
    with db.engine.begin() as connection:
        actual = set(connection.execute(text(
            "SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid::regclass::text = ANY(:t)"),
            {"t": list(tables)}).scalars())
    assert declared == actual


def test_the_migration_upgrades_over_old_bad_rows_and_downgrades(fresh_database_url):
    migrate.upgrade(fresh_database_url, "0003")
    engine = create_engine(fresh_database_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO queues (name) VALUES ('default')"))
            connection.execute(text(insert("state, run_at", "'running', '-infinity'")))
        migrate.upgrade(fresh_database_url, "0004")  # NOT VALID: the old row does not stop it
        with engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM jobs WHERE run_at = '-infinity'")).scalar() == 1
        with pytest.raises(IntegrityError):
            with engine.begin() as connection:
                connection.execute(text(insert("state", "'running'")))
        migrate.downgrade(fresh_database_url, "0003")
        with engine.begin() as connection:
            connection.execute(text(insert("state, run_at", "'running', 'infinity'")))
            assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 2
    finally:
        engine.dispose()


def test_history_fixtures_switch_the_guard_off_for_their_transaction_only(db):
    with db.engine.begin() as connection, history_inserts(connection):
        connection.execute(text(insert("state, attempt, finished_at", "'succeeded', 1, now()")))
    refused_error = None
    try:
        with db.engine.begin() as connection:
            connection.execute(text(insert("state", "'succeeded'")))
    except IntegrityError as exc:
        refused_error = exc
    assert refused_error is not None


# -- the docs' SQL runs as written -------------------------------------------------------------

def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def statements(block: str) -> list[tuple[str, str | None]]:
    """(statement, the error its following `-- ERROR:` comment expects, if any)."""
    found: list[tuple[str, str | None]] = []
    current: list[str] = []
    for line in block.splitlines():
        if line.startswith("-- ERROR:") and found:
            found[-1] = (found[-1][0], line.removeprefix("-- ERROR:").strip())
            continue
        current.append(line)
        if line.rstrip().endswith(";") or re.search(r";\s+--", line):
            statement = "\n".join(current).strip()
            current = []
            if statement and not all(l.lstrip().startswith("--") for l in statement.splitlines()):
                found.append((statement, None))
    return found


def test_the_docs_sql_runs_as_written(db, database_url):
    blocks = sql_blocks()
    assert len(blocks) >= 4
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    checked = 0
    with psycopg.connect(url, autocommit=True) as connection:
        for block in blocks:
            for statement, error in statements(block):
                if error is None:
                    connection.execute(statement)
                else:
                    with pytest.raises(psycopg.Error) as caught:
                        connection.execute(statement)
                    message = f"{caught.value.sqlstate}: {caught.value.diag.message_primary}"
                    assert error in message, f"{statement!r} failed with {message!r}, the docs say {error!r}"
                    checked += 1
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert checked >= 5
