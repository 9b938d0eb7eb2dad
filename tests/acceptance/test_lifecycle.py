"""The job lifecycle with real worker and scheduler processes, real PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal

import pytest
from kombu.exceptions import ChannelError
from sqlalchemy import text

from shared.broker import make_celery, publish
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.settings import get_settings
from shared.store import jobs as job_store
from tests.processes import THREADS_PER_PROCESS, wait_for

pytestmark = pytest.mark.acceptance


def states(db) -> dict[str, int]:
    """States of the tests' own jobs (recurring platform schedules may add jobs of their own)."""
    with db.session() as s:
        return dict(s.execute(text("SELECT state, count(*) FROM jobs WHERE type LIKE 'test.%' GROUP BY state")).all())


def executions(db, job_id: int) -> list[tuple[int, str, str | None]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(
            text("SELECT attempt, state, error_message FROM job_executions WHERE job_id = :j ORDER BY attempt"), {"j": job_id}
        ).all()]


def effect_counts(db) -> dict[str, int]:
    with db.session() as s:
        return dict(s.execute(text("SELECT key, count(*) FROM test_effects WHERE event = 'ran' GROUP BY key")).all())


def all_done(db, total: int, state: str = "succeeded") -> bool:
    return states(db).get(state, 0) == total


# The lifecycle on both pools: prefork (CPU-bound job types) and threads (the IO worker class).
POOLS = pytest.mark.parametrize("pool", ["prefork", "threads"])


def start_worker(processes, pool: str, concurrency: int = 2, **options):  # type: ignore[no-untyped-def]
    """A worker on `pool`; a threads worker gets a few threads for each prefork process asked."""
    if pool == "threads":
        concurrency *= THREADS_PER_PROCESS
    return processes.worker(concurrency=concurrency, pool=pool, **options)


def test_happy_path(db, broker, processes):
    processes.worker()
    processes.scheduler()
    ids = enqueue_many_now("test.record", [{"key": f"k{i}"} for i in range(20)])
    wait_for(lambda: all_done(db, 20), 30, f"20 jobs succeed, have {states(db)}")
    assert effect_counts(db) == {f"k{i}": 1 for i in range(20)}
    assert executions(db, ids[0]) == [(1, "succeeded", None)]


@POOLS
def test_retry_then_success(db, processes, pool):
    start_worker(processes, pool)
    processes.scheduler()
    job = enqueue_now("test.flaky", {"key": "f", "fail_times": 2})
    wait_for(lambda: all_done(db, 1), 30, f"flaky job succeeds, have {states(db)}")
    runs = executions(db, job.id)
    assert [(a, s) for a, s, _ in runs] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert runs[0][2] == "flaky failure 1 of 2"


def test_exhausted_retries_end_failed_with_the_error(db, processes):
    processes.worker()
    processes.scheduler()
    job = enqueue_now("test.fail", {"key": "x"})
    wait_for(lambda: all_done(db, 1, "failed"), 30, f"job fails, have {states(db)}")
    assert [(a, s, e) for a, s, e in executions(db, job.id)] == [(n, "failed", "boom") for n in (1, 2, 3)]
    with db.session() as s:
        row = s.execute(text("SELECT last_error, finished_at FROM jobs WHERE id = :j"), {"j": job.id}).one()
        trace = s.execute(text("SELECT traceback, error_class FROM job_executions WHERE job_id = :j AND attempt = 3"), {"j": job.id}).one()
    assert row.last_error == "boom" and row.finished_at is not None
    assert trace.error_class == "ValueError" and "ValueError: boom" in trace.traceback


@pytest.mark.parametrize("kind, job_state, execution_states", [
    ("cancel", "cancelled", ["cancelled"]),
    ("discard", "failed", ["discarded"]),
    ("snooze", "succeeded", ["snoozed", "succeeded"]),
    ("retry", "succeeded", ["failed", "succeeded"]),
])
@POOLS
def test_explicit_outcomes(db, processes, kind, job_state, execution_states, pool):
    start_worker(processes, pool, concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.outcome", {"key": kind, "kind": kind, "after": 0.1}, max_attempts=2)
    wait_for(lambda: all_done(db, 1, job_state), 30, f"{kind} ends {job_state}, have {states(db)}")
    assert [s for _, s, _ in executions(db, job.id)] == execution_states
    if kind == "snooze":  # a snooze does not spend an attempt
        with db.session() as s:
            assert s.execute(text("SELECT max_attempts FROM jobs WHERE id = :j"), {"j": job.id}).scalar() == 3


@POOLS
def test_kill_9_of_the_process_running_a_job(db, broker, processes, pool):
    worker = start_worker(processes, pool, concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.sleep", {"key": "s", "seconds": 2.0})
    pid = wait_for(lambda: _running_pid(db, job.id), 30, "job starts")
    assert pid in processes.pool_pids(worker)
    os.kill(pid, signal.SIGKILL)
    if pool == "threads":  # the process that died was the whole worker: another one takes over
        start_worker(processes, pool, concurrency=1)
    wait_for(lambda: all_done(db, 1), 60, f"job succeeds after the kill, have {states(db)}")
    runs = executions(db, job.id)
    assert [(a, s) for a, s, _ in runs] == [(1, "lost"), (2, "succeeded")]


def _running_pid(db, job_id: int) -> int | None:
    with db.session() as s:
        return s.execute(text(
            "SELECT w.pid FROM jobs j JOIN workers w ON w.id = j.worker_id WHERE j.id = :j AND j.state = 'running'"
        ), {"j": job_id}).scalar()


@POOLS
def test_duplicated_message_runs_the_handler_once(db, broker, processes, pool):
    job = enqueue_now("test.record", {"key": "dup"})
    with db.session() as s:
        dispatched = job_store.dispatch_queue(s, "default", 10)
    assert [j.id for j in dispatched] == [job.id]
    app = make_celery(get_settings())
    publish(app, get_settings(), dispatched * 3)  # the same message three times
    start_worker(processes, pool)
    wait_for(lambda: all_done(db, 1), 60, f"job succeeds, have {states(db)}")
    # The two extra messages are consumed and dropped: give them time to be, then count.
    wait_for(lambda: broker_depth(app, "default") == 0, 30, "broker drained")
    assert effect_counts(db) == {"dup": 1}
    assert len(executions(db, job.id)) == 1


def broker_depth(app, queue: str) -> int:
    """Messages waiting in a broker queue (Redis or RabbitMQ alike)."""
    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # Redis deletes an empty list: no queue means no message
            return 0


def test_rolled_back_enqueue_leaves_no_row(db):
    with pytest.raises(RuntimeError):
        with db.session() as session:
            from shared.enqueue import enqueue

            enqueue(session, "test.record", {"key": "rolled back"})
            raise RuntimeError("the caller's business logic failed")
    assert states(db) == {}


def test_plain_sql_insert_is_an_enqueue(db, processes):
    with db.session() as s:
        s.execute(text("""INSERT INTO jobs (type, payload) VALUES ('test.record', '{"key": "from-sql"}')"""))
    processes.worker()
    processes.scheduler()
    wait_for(lambda: all_done(db, 1), 30, f"SQL-inserted job succeeds, have {states(db)}")
    assert effect_counts(db) == {"from-sql": 1}


def test_pause_holds_a_queue_and_resume_releases_it(db, processes):
    from shared.control import pause_queue, resume_queue

    pause_queue("default")
    enqueue_many_now("test.record", [{"key": f"p{i}"} for i in range(10)])
    processes.worker()
    _, health = processes.watched_scheduler()
    health.wait_dispatcher(2)  # the dispatcher had its chance: none of its rounds may start a job of a paused queue
    assert states(db) == {"queued": 10}
    resume_queue("default")
    wait_for(lambda: all_done(db, 10), 30, f"jobs run after resume, have {states(db)}")


@POOLS
def test_soft_timeout_fails_the_attempt_as_timed_out(db, processes, pool):
    # On threads no exception can reach the sleeping handler: the deadline watcher ends the
    # attempt at the hard limit and abandons the thread (worker/deadlines.py).
    start_worker(processes, pool, concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.slow", {"key": "slow", "seconds": 5})
    wait_for(lambda: all_done(db, 1, "failed"), 30, f"slow job fails, have {states(db)}")
    assert [(a, s) for a, s, _ in executions(db, job.id)] == [(1, "timed_out"), (2, "timed_out")]
    assert executions(db, job.id)[0][2] == "timed out after 1.0 s"


def test_hard_timeout_kills_the_attempt_and_records_it(db, processes):
    worker = processes.worker(concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.stubborn", {"key": "stubborn", "seconds": 30})
    wait_for(lambda: all_done(db, 1, "failed"), 30, f"stubborn job ends, have {states(db)}")
    assert [(a, s) for a, s, _ in executions(db, job.id)] == [(1, "timed_out")]
    with db.session() as s:
        events = s.execute(text("SELECT event FROM test_effects WHERE key = 'stubborn' ORDER BY id")).scalars().all()
    assert events == ["started", "ignored the soft limit"]  # then the process was killed
    assert worker.alive()


@POOLS
def test_warm_shutdown_lets_the_running_job_finish(db, processes, pool):
    worker = start_worker(processes, pool, concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.sleep", {"key": "graceful", "seconds": 1.5})
    wait_for(lambda: _running_pid(db, job.id), 30, "job starts")
    worker.stop(timeout=20)  # SIGTERM: Celery's warm shutdown
    assert executions(db, job.id) == [(1, "succeeded", None)]
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM workers WHERE state = 'stopped'")).scalar() >= 1
