"""Every statement of the hot path and of the roll-up stays an index scan with a million
finished jobs (and their executions) in the tables: dispatch, claim, finish, promote, the two
redispatches, the window counts, settling dependents, forced cancellations, and the per-minute
roll-up."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.store.sql import query
from tests.history import history_inserts

HISTORY = 1_000_000
BIG_TABLES = ("jobs", "job_executions", "proxy_health_logs")


def _plan(connection, name: str, params: dict) -> str:  # type: ignore[no-untyped-def]
    statement = str(query(name))
    used = {k: v for k, v in params.items() if re.search(f":{k}\\b", statement)}
    return json.dumps(connection.execute(text("EXPLAIN (FORMAT JSON) " + statement).bindparams(**used)).scalar())


def _scans_of_big_tables(plan: str) -> list[str]:
    """Seq Scans of the tables that grow with history in a JSON plan (queues, a few rows, may be
    scanned)."""
    nodes: list[str] = []

    def walk(node: dict) -> None:  # type: ignore[type-arg]
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
            nodes.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    for entry in json.loads(plan):
        walk(entry["Plan"])
    return nodes


def test_hot_statements_and_the_rollup_are_index_scans_at_a_million_finished_rows(db):
    with db.engine.begin() as connection, history_inserts(connection):
        connection.execute(text("""
            INSERT INTO jobs (type, queue, state, payload, attempt, created_at, run_at, dispatched_at, started_at,
                              finished_at)
            SELECT 'test.record', (ARRAY['default','low','bulk'])[1 + g % 3], 'succeeded', '{"key": "x"}', 1,
                   t, t, t, t, t + interval '5 ms'
            FROM (SELECT g, now() - interval '7 days' + g * (interval '7 days' / :n) - interval '5 minutes' AS t
                  FROM generate_series(1, :n) AS g) AS s"""), {"n": HISTORY})
        connection.execute(text("""
            INSERT INTO job_executions (job_id, attempt, state, worker_id, task_id, started_at, finished_at)
            SELECT id, 1, 'succeeded', 'w', 'job-' || id || '-1', started_at, finished_at FROM jobs"""))
        # A live backlog in every state the hot path reads.
        connection.execute(text("""
            INSERT INTO jobs (type, payload) SELECT 'test.record', '{"key": "q"}' FROM generate_series(1, 200)"""))
        connection.execute(text("""
            INSERT INTO jobs (type, payload, state, run_at)
            SELECT 'test.record', '{"key": "s"}', 'scheduled', now() + interval '1 hour' FROM generate_series(1, 50)"""))
        connection.execute(text("""
            INSERT INTO jobs (type, payload, state, dispatched_at)
            SELECT 'test.record', '{"key": "d"}', 'dispatched', now() - interval '1 hour' FROM generate_series(1, 50)"""))
        connection.execute(text("""
            INSERT INTO jobs (type, payload, state, attempt, started_at, worker_id)
            SELECT 'test.record', '{"key": "r"}', 'running', 1, now(), 'w' FROM generate_series(1, 20)"""))
        connection.execute(text("ANALYZE jobs"))
        connection.execute(text("ANALYZE job_executions"))
        now = datetime.now(timezone.utc)
        stop = now.replace(second=0, microsecond=0)
        params = {
            "queue": "default", "limit": 100, "now": None, "job_id": 5, "job_type": "test.record", "worker_id": "w",
            "task_id": "t", "attempt": 1, "execution_id": 5, "job_state": "succeeded", "execution_state": "succeeded",
            "delay": None, "extra_attempts": 0, "error_class": None, "error_message": None, "traceback": None,
            "cancel_reason": None, "after": 60.0, "grace": 1.0, "ids": [1, 2, 3],
            "start": stop - timedelta(minutes=3), "stop": stop, "snapshot_bucket": stop - timedelta(minutes=1),
        }
        statements = [
            "queues_with_work", "lock_queue", "queue_in_flight", "dispatch_queue", "claim_job", "finish_execution",
            "promote_scheduled", "redispatch_lost", "dispatched_before", "redispatch_vanished",
            "rollup_queue_metrics", "rollup_job_metrics",
            # Settling dependents after a finish, a rescue or a cancel; the rescuer's forced cancellations.
            "lock_waiting_dependents", "resolve_waiting", "force_cancel_overdue",
        ]
        plans = {name: _plan(connection, name, dict(params, now=now) if name.startswith("rollup") else params)
                 for name in statements}
    scanned = {name: found for name, plan in plans.items() if (found := _scans_of_big_tables(plan))}
    assert scanned == {}, scanned
    assert "ix_jobs_runnable" in plans["dispatch_queue"]
    assert "ix_jobs_scheduled_due" in plans["promote_scheduled"]
    assert "ix_jobs_dispatched" in plans["redispatch_lost"] and "ix_jobs_dispatched" in plans["dispatched_before"]
    assert "ix_job_executions_started_at" in plans["rollup_queue_metrics"]
    assert "ix_jobs_finished" in plans["rollup_queue_metrics"] and "ix_jobs_finished" in plans["rollup_job_metrics"]


def test_pruning_proxy_check_records_reads_them_by_age_at_a_million_rows(db):
    with db.engine.begin() as connection:
        proxy = connection.execute(text(
            "INSERT INTO proxies (type, host, port) VALUES ('http', '127.0.0.1', 1) RETURNING id")).scalar_one()
        connection.execute(text("""
            INSERT INTO proxy_health_logs (proxy_id, checked_at, ok)
            SELECT :p, now() - g * interval '2 seconds', g % 7 <> 0 FROM generate_series(1, :n) AS g"""),
            {"p": proxy, "n": HISTORY})
        connection.execute(text("ANALYZE proxy_health_logs"))
        plan = _plan(connection, "prune_proxy_health_logs", {"now": None, "retention": 30 * 86400.0, "limit": 500})
    assert _scans_of_big_tables(plan) == [] and "ix_proxy_health_logs_checked_at" in plan
