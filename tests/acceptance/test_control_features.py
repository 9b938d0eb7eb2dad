"""Control features with real workers: dependencies at scale, limits, cancellation, progress,
logs and plain Celery calls."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import text

from shared.broker import make_celery
from shared.control import cancel_job, get_job, job_logs, set_queue_limits
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.settings import get_settings
from shared.store import queues as queue_store
from tests.acceptance.test_lifecycle import all_done, effect_counts, executions, states
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance


def test_fan_out_and_fan_in_with_1000_parents(db, processes):
    parents = enqueue_many_now("test.record", [{"key": f"p{i}"} for i in range(1000)])
    join = enqueue_now("test.record", {"key": "join"}, depends_on=parents)
    fan_out = [enqueue_now("test.record", {"key": f"c{i}"}, depends_on=[join.id]).id for i in range(20)]
    processes.worker()
    processes.scheduler()
    wait_for(lambda: all_done(db, 1021), 120, f"all run, have {states(db)}")
    with db.session() as s:
        last_parent = s.execute(text("SELECT max(finished_at) FROM job_executions WHERE job_id = ANY(:ids)"), {"ids": parents}).scalar()
        join_start = s.execute(text("SELECT started_at FROM job_executions WHERE job_id = :j"), {"j": join.id}).scalar()
        first_child = s.execute(text("SELECT min(started_at) FROM job_executions WHERE job_id = ANY(:ids)"), {"ids": fan_out}).scalar()
    assert last_parent <= join_start <= first_child


def test_failed_parent_cancels_its_dependents(db, processes):
    parent = enqueue_now("test.fail", {"key": "doomed"})
    child = enqueue_now("test.record", {"key": "never"}, depends_on=[parent.id])
    processes.worker()
    processes.scheduler()
    wait_for(lambda: get_job(child.id).state == "cancelled", 30, f"child cancelled, have {states(db)}")
    assert get_job(child.id).job["cancel_reason"] == f"dependency {parent.id} failed"
    assert "never" not in effect_counts(db)


def _max_overlap(intervals: list[tuple]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_key_concurrency_limit_of_2_with_4_workers(db, processes):
    enqueue_many_now("test.keyed", [{"key": f"a{i}", "account": "acct", "seconds": 0.3} for i in range(12)])
    enqueue_many_now("test.keyed", [{"key": f"b{i}", "account": "other", "seconds": 0.3} for i in range(4)])
    processes.worker(concurrency=4)
    processes.scheduler()
    wait_for(lambda: all_done(db, 16), 60, f"all run, have {states(db)}")
    with db.session() as s:
        rows = s.execute(text(
            "SELECT j.payload->>'account' AS account, e.started_at, e.finished_at "
            "FROM job_executions e JOIN jobs j ON j.id = e.job_id WHERE j.type = 'test.keyed'"
        )).all()
    acct = [(r.started_at, r.finished_at) for r in rows if r.account == "acct"]
    assert _max_overlap(acct) == 2, "never 3 at once, and the limit is used"
    assert _max_overlap([(r.started_at, r.finished_at) for r in rows]) > 2, "other keys are not held back"


def test_queue_rate_limit_5_per_second_over_20_seconds(db, processes):
    with db.session() as session:
        queue_store.seed_queues(session, ["rated"])
    set_queue_limits("rated", rate=(5, 1.0))
    enqueue_many_now("test.record", [{"key": f"r{i}"} for i in range(150)], queue="rated")
    processes.worker(queues="rated")
    processes.scheduler()
    with db.session() as s:
        first = wait_for(lambda: s.execute(text(
            "SELECT min(e.started_at) FROM job_executions e JOIN jobs j ON j.id = e.job_id WHERE j.queue = 'rated'"
        )).scalar(), 30, "first start")
    wait_for(lambda: _starts_between(db, first + timedelta(seconds=20), first + timedelta(seconds=21)), 40, "past 20 s")
    started = _starts_between(db, first, first + timedelta(seconds=20))
    assert 95 <= started <= 105, started


def _starts_between(db, start, end) -> int:
    with db.session() as s:
        return s.execute(text(
            "SELECT count(*) FROM job_executions e JOIN jobs j ON j.id = e.job_id "
            "WHERE j.queue = 'rated' AND e.started_at >= :a AND e.started_at < :b"), {"a": start, "b": end}).scalar()


def _wait_running(db, job_id: int) -> None:
    wait_for(lambda: get_job(job_id).state == "running", 30, "job running")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_cancel_running_job_cooperatively(db, processes, pool):
    processes.worker(concurrency=1 if pool == "prefork" else 8, pool=pool)
    processes.scheduler()
    job = enqueue_now("test.stoppable", {"key": "coop", "seconds": 60, "cooperative": True})
    _wait_running(db, job.id)
    assert cancel_job(job.id, "no longer needed") == "cancelling"
    wait_for(lambda: get_job(job.id).state == "cancelled", 10, "cancelled within a heartbeat or two")
    assert [s for _, s, _ in executions(db, job.id)] == ["cancelled"]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_cancel_running_job_forced_after_grace(db, processes, pool):
    worker = processes.worker(concurrency=1 if pool == "prefork" else 8, pool=pool)
    processes.scheduler(env={"JOBS_CANCEL_GRACE_SECONDS": "1"})
    job = enqueue_now("test.stoppable", {"key": "stubborn", "seconds": 120, "cooperative": False})
    _wait_running(db, job.id)
    with db.session() as s:
        pid = s.execute(text("SELECT w.pid FROM jobs j JOIN workers w ON w.id = j.worker_id WHERE j.id = :j"), {"j": job.id}).scalar()
    cancel_job(job.id)
    wait_for(lambda: get_job(job.id).state == "cancelled", 20, "forced cancel")
    assert executions(db, job.id)[0][1] == "cancelled"
    if pool == "prefork":
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, "the process running it was terminated")
    # A thread cannot be terminated: on threads the handler runs on, abandoned; its end is refused.
    assert worker.alive()
    after = enqueue_now("test.record", {"key": "after"})
    wait_for(lambda: get_job(after.id).state == "succeeded", 30, "worker still serves")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_revoke_of_the_task_cancels_the_job(db, processes, pool):
    """What Flower's revoke button sends: `control.revoke(task_id)`."""
    processes.worker(concurrency=1 if pool == "prefork" else 8, pool=pool)
    processes.scheduler()
    job = enqueue_now("test.stoppable", {"key": "revoked", "seconds": 60, "cooperative": True})
    _wait_running(db, job.id)
    task_id = get_job(job.id).executions[0]["task_id"]
    make_celery(get_settings()).control.revoke(task_id)
    wait_for(lambda: get_job(job.id).state == "cancelled", 15, "revoke became cancellation")
    assert get_job(job.id).job["cancel_reason"] == f"task {task_id} revoked"


def test_progress_and_logs_readable_from_the_api(db, processes):
    processes.worker(concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.chatty", {"key": "talk", "lines": 8})
    midway = wait_for(lambda: (p := get_job(job.id).job["progress"]) and 0 < p < 1 and p, 30, "progress while running")
    assert 0 < midway < 1
    wait_for(lambda: get_job(job.id).state == "succeeded", 30, "done")
    assert get_job(job.id).job["progress"] == 1.0
    lines = job_logs(job.id)
    assert [line["message"] for line in lines] == [f"line {i} of talk" for i in range(8)]
    assert {line["level"] for line in lines} == {"INFO"} and {line["attempt"] for line in lines} == {1}


def test_plain_celery_calls_are_adopted_as_jobs(db, processes):
    processes.worker()
    processes.scheduler()
    app = make_celery(get_settings())
    app.send_task("test.record", kwargs={"key": "native"}, queue="default")
    app.signature("test.flaky", kwargs={"key": "native-flaky", "fail_times": 1}).apply_async(queue="default")
    app.send_task("test.record", kwargs={"nope": 1}, queue="default")
    wait_for(lambda: states(db) == {"succeeded": 2, "failed": 1}, 30, f"adopted and finished, have {states(db)}")
    with db.session() as s:
        rows = {r.key: r for r in s.execute(text(
            "SELECT coalesce(payload->>'key', 'bad') AS key, id, state, metadata FROM jobs WHERE type LIKE 'test.%'"
        )).all()}
    assert rows["native"].metadata == {"adopted_from": "celery"}
    assert [st for _, st, _ in executions(db, rows["native-flaky"].id)] == ["failed", "succeeded"]
    assert [st for _, st, _ in executions(db, rows["bad"].id)] == ["discarded"]
    with db.session() as s:
        reason = s.execute(text("SELECT last_error FROM jobs WHERE id = :id"), {"id": rows["bad"].id}).scalar_one()
    # The same words as the Python API's refusal, field names included.
    assert reason.startswith("payload for test.record is invalid: ") and "key: Field required" in reason, reason
    assert "nope: Extra inputs are not permitted" in reason, reason
    assert effect_counts(db) == {"native": 1, "native-flaky": 2}
