"""The IO worker class: one process running a hundred threads keeps every attempt's state its
own, cancels the right one, and holds a bounded number of database connections."""

from __future__ import annotations


import pytest
from sqlalchemy import text

from shared.control import cancel_job, get_job
from shared.enqueue import enqueue_many_now
from tests.acceptance.test_lifecycle import all_done, states
from tests.processes import wait_for
from tests.rigs.connections import ConnectionSampler

pytestmark = pytest.mark.acceptance

THREADS = 100
JOBS = 500
LINES = 3
CONNECTIONS = 10  # JOBS_WORKER_DB_CONNECTIONS


def test_hundred_threads_keep_each_attempt_state_their_own(db, processes):
    worker = processes.worker(concurrency=THREADS, pool="threads", env={"JOBS_WORKER_DB_CONNECTIONS": str(CONNECTIONS)})
    processes.scheduler(env={"JOBS_DISPATCH_WINDOW": str(2 * THREADS)})
    marks = {f"j{i}": round((i + 1) / (JOBS + 1), 6) for i in range(JOBS)}
    with ConnectionSampler(db, worker.pid) as sampler:
        ids = enqueue_many_now("test.own_state", [{"key": k, "lines": LINES, "mark": m} for k, m in marks.items()])
        wait_for(lambda: all_done(db, JOBS), 180, f"{JOBS} jobs succeed, have {states(db)}")
    with db.session() as s:
        keys = dict(s.execute(text("SELECT id, payload->>'key' FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}).all())
        logs = s.execute(text("SELECT job_id, attempt, message FROM job_logs WHERE job_id = ANY(:ids)"), {"ids": ids}).all()
        seen = s.execute(text("SELECT key, job_id, event FROM test_effects WHERE key LIKE 'j%'")).all()
        concurrent = s.execute(text(
            "SELECT max((SELECT count(*) FROM job_executions o WHERE o.started_at <= e.started_at AND o.finished_at > e.started_at)) "
            "FROM job_executions e WHERE e.job_id = ANY(:ids)"
        ), {"ids": ids}).scalar()
    assert concurrent >= 20, f"jobs really ran side by side (most at once: {concurrent})"
    # Every log line of a job names that job and its key, and no line is missing or extra.
    assert len(logs) == JOBS * LINES
    for job_id, attempt, message in logs:
        assert attempt == 1 and message.endswith(f"of {keys[job_id]} (job {job_id})"), (job_id, message)
    # Each handler read back its own progress from its own row: written for its own attempt.
    assert len(seen) == JOBS
    for key, job_id, event in seen:
        assert keys[job_id] == key and event == f"progress {marks[key]}", (key, job_id, event)
    # One heartbeat connection plus the pool shared by a hundred threads, whatever the load.
    print(f"connections held by a worker with {THREADS} threads: at most {sampler.connections}")
    assert 1 <= sampler.connections <= CONNECTIONS


def test_cancel_reaches_the_right_thread(db, processes):
    processes.worker(concurrency=16, pool="threads")
    processes.scheduler()
    ids = enqueue_many_now("test.stoppable", [{"key": f"c{i}", "seconds": 60, "cooperative": True} for i in range(6)])
    wait_for(lambda: all(get_job(i).state == "running" for i in ids), 30, f"all running, have {states(db)}")
    for job_id in ids[:2]:
        assert cancel_job(job_id, "only this one") == "cancelling"
    wait_for(lambda: all(get_job(i).state == "cancelled" for i in ids[:2]), 15, "the two are cancelled")
    assert all(get_job(i).state == "running" for i in ids[2:]), "the others run on"
    for job_id in ids[2:]:
        cancel_job(job_id)
    wait_for(lambda: all(get_job(i).state == "cancelled" for i in ids), 15, "then the rest")


def test_a_handler_that_checks_in_stops_at_its_deadline(db, processes):
    """On threads the deadline is cooperative first: `ctx.checkpoint()` raises at the timeout."""
    processes.worker(concurrency=4, pool="threads")
    processes.scheduler()
    [job_id] = enqueue_many_now("test.stoppable", [{"key": "late", "seconds": 60, "cooperative": True}], timeout=1.0,
                                max_attempts=1)
    wait_for(lambda: get_job(job_id).state == "failed", 30, f"timed out, have {states(db)}")
    [execution] = get_job(job_id).executions
    assert execution["state"] == "timed_out" and execution["error_class"] == "AttemptTimedOut"
