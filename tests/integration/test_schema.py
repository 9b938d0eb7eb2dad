"""The schema: migrations round-trip without drift; the database itself refuses bad rows;
the dispatcher's claim stays an index scan with millions of finished rows."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool, text
from sqlalchemy.exc import IntegrityError

from shared import migrate
from shared.models import Base
from shared.store.sql import query
from tests.history import history_inserts


# SQLAlchemy's reflection of a NOT VALID check constraint (migration 0004) warns about its
# dialect options; alembic does not compare check constraints, so nothing is lost.
@pytest.mark.filterwarnings("ignore:Can't validate argument 'dialect_options'")
def test_upgrade_downgrade_upgrade_without_drift(fresh_database_url):
    migrate.upgrade(fresh_database_url)
    migrate.downgrade(fresh_database_url, "base")
    engine = create_engine(fresh_database_url, poolclass=pool.NullPool)
    assert inspect(engine).get_table_names() == ["alembic_version"]
    migrate.upgrade(fresh_database_url)
    assert migrate.current_revision(fresh_database_url) == migrate.head_revision(fresh_database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("statement, constraint", [
    ("UPDATE jobs SET progress = 1.5", "ck_jobs_progress_range"),
    ("UPDATE jobs SET state = 'exploded'", "ck_jobs_state_valid"),
    ("UPDATE jobs SET priority = 10", "ck_jobs_priority_range"),
    ("INSERT INTO jobs (type, payload) VALUES ('test.record', '[1, 2]')", "ck_jobs_payload_is_object"),
    ("INSERT INTO jobs (type, queue) VALUES ('test.record', 'nope')", "fk_jobs_queue_queues"),
    ("INSERT INTO proxies (type, host, port, health_score) VALUES ('http', 'h', 1, 101)", "ck_proxies_health_score_range"),
    ("INSERT INTO proxies (type, host, port) VALUES ('ftp', 'h', 1)", "ck_proxies_type_valid"),
    ("INSERT INTO queues (name) VALUES ('Bad Name!')", "ck_queues_name_format"),
])
def test_database_refuses_bad_rows(db, statement, constraint):
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (type, payload) VALUES ('test.record', '{\"key\": \"k\"}')"))
    with pytest.raises(IntegrityError) as caught:
        with db.engine.begin() as connection:
            connection.execute(text(statement))
    assert constraint in str(caught.value)


def _plan(connection, statement: str, params: dict) -> str:
    compiled = text("EXPLAIN (FORMAT JSON) " + statement).bindparams(**params)
    return json.dumps(connection.execute(compiled).scalar())


def test_dispatch_claim_is_an_index_scan_with_a_million_finished_rows(db):
    with db.engine.begin() as connection, history_inserts(connection):
        connection.execute(text("""
            INSERT INTO jobs (type, queue, state, payload, finished_at, created_at)
            SELECT 'test.record', (ARRAY['default','low','bulk'])[1 + g % 3], 'succeeded', '{"key": "x"}', now(), now()
            FROM generate_series(1, 1000000) AS g"""))
        connection.execute(text("""
            INSERT INTO jobs (type, payload) SELECT 'test.record', '{"key": "q"}' FROM generate_series(1, 200)"""))
        connection.execute(text("ANALYZE jobs"))
        dispatch = _plan(connection, str(query("dispatch_queue")), {"queue": "default", "limit": 100, "now": None})
        claim = _plan(connection, str(query("claim_job")), {"job_id": 5, "job_type": "test.record", "worker_id": "w", "task_id": "t", "now": None})
        in_flight = _plan(connection, str(query("queue_in_flight")), {"queue": "default"})
    assert "ix_jobs_runnable" in dispatch and "Seq Scan" not in dispatch
    # By primary key, or through the small partial index of dispatched jobs: both bounded.
    assert ("pk_jobs" in claim or "ix_jobs_dispatched" in claim) and "Seq Scan" not in claim
    assert "Seq Scan" not in in_flight
