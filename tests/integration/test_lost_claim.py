"""Claims commit without waiting for the disk (shared/store/queries.sql, claim_job): a crash of
PostgreSQL can lose a claim whose attempt then runs to its end. The runner writes that end
with the claim (`finish_lost_claim`), once, and never over a claim someone else made since.

The loss is made by hand, in the handler: the job is put back as the crash would leave it
(dispatched, the attempt before, no execution), on a connection of its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from shared.clock import SystemClock
from shared.enqueue import enqueue_now
from shared.jobtypes.registry import registry
from shared.outcomes import Retry
from shared.settings import get_settings
from shared.store import jobs as job_store
from worker.runner import JobRunner



def lose_the_claim(db, job_id: int) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        s.execute(text("DELETE FROM job_executions WHERE job_id = :j AND state = 'running'"), {"j": job_id})
        s.execute(text("UPDATE jobs SET state = 'dispatched', attempt = attempt - 1, worker_id = NULL "
                       "WHERE id = :j"), {"j": job_id})


def dispatched(db, key: str) -> int:  # type: ignore[no-untyped-def]
    job_id = enqueue_now("test.record", {"key": key}).id
    with db.session() as s:
        s.execute(text("UPDATE jobs SET state = 'dispatched', dispatched_at = now() WHERE id = :j"), {"j": job_id})
    return job_id


def run(db, job_id: int, handler: Any):  # type: ignore[no-untyped-def]
    runner = JobRunner(get_settings(), SystemClock(), db, f"w-{uuid.uuid4().hex[:8]}")
    try:
        return runner.run(registry.get("test.record"), handler, job_id, f"task-{job_id}")
    finally:
        runner.connection.close()


def job_and_executions(db, job_id: int):  # type: ignore[no-untyped-def]
    with db.session() as s:
        job = s.execute(text("SELECT state, attempt, worker_id, finished_at FROM jobs WHERE id = :j"), {"j": job_id}).one()
        executions = s.execute(text("SELECT attempt, state, task_id FROM job_executions WHERE job_id = :j ORDER BY attempt"),
                               {"j": job_id}).all()
    return job, executions


def test_the_end_of_an_attempt_whose_claim_was_lost_is_written_with_its_claim(db):
    job_id = dispatched(db, "lost")
    ran = []

    def handler(payload, context):  # type: ignore[no-untyped-def]
        ran.append(context.attempt)
        lose_the_claim(db, job_id)

    attempt = run(db, job_id, handler)
    assert ran == [1] and attempt is not None and attempt.recorded
    job, executions = job_and_executions(db, job_id)
    assert (job.state, job.attempt, job.worker_id) == ("succeeded", 1, None) and job.finished_at is not None
    assert [(e.attempt, e.state, e.task_id) for e in executions] == [(1, "succeeded", f"task-{job_id}")]
    # Its message, delivered again, finds the job done: the handler does not run twice.
    assert run(db, job_id, handler) is None and ran == [1]


def test_a_retry_after_a_lost_claim_keeps_its_backoff(db):
    job_id = dispatched(db, "lost-retry")

    def handler(payload, context):  # type: ignore[no-untyped-def]
        lose_the_claim(db, job_id)
        raise Retry(30, reason="later")

    assert run(db, job_id, handler).recorded
    with db.session() as s:
        row = s.execute(text("SELECT state, attempt, run_at > now() + interval '20 seconds' AS later FROM jobs "
                             "WHERE id = :j"), {"j": job_id}).one()
    assert (row.state, row.attempt, row.later) == ("scheduled", 1, True)


def test_a_lost_claim_someone_else_made_since_is_not_overwritten(db):
    job_id = dispatched(db, "taken")

    def handler(payload, context):  # type: ignore[no-untyped-def]
        lose_the_claim(db, job_id)
        with db.session() as s:  # another worker got the job's message again and claimed it
            assert job_store.claim_job(s, job_id, "test.record", "other-worker", "other-task") is not None

    attempt = run(db, job_id, handler)
    assert attempt is not None and not attempt.recorded
    job, executions = job_and_executions(db, job_id)
    assert (job.state, job.attempt, job.worker_id) == ("running", 1, "other-worker")
    assert [(e.attempt, e.state, e.task_id) for e in executions] == [(1, "running", "other-task")]


def test_the_claims_fast_commit_stays_in_the_claims_transaction(db):
    job_id = dispatched(db, "async")
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        before = connection.execute(text("SHOW synchronous_commit")).scalar()
        assert before != "off"
        assert job_store.claim_job(connection, job_id, "test.record", "w", "t") is not None
        # set_config(..., true) is transaction-local: nothing after the claim on this pooled
        # connection (or on a PgBouncer server connection) inherits it
        assert connection.execute(text("SHOW synchronous_commit")).scalar() == before
