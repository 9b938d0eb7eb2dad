"""The rescuer's rules, on the real statements with an injected clock: dead processes, holdings
in heartbeats, backoff of rescued attempts, poison after N lost processes, batches."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue_now
from shared.store import jobs as job_store
from shared.store import queues as queue_store
from shared.store.jobs import RescuePolicy

STALE = 30.0
POLICY = RescuePolicy(backoff_base=1.0, backoff_max=50.0, jitter=0.0, poison_after=3)


@pytest.fixture
def now(db) -> datetime:
    # An hour ahead of the server: the server has been "up" long past any stale period.
    with db.session() as s:
        return s.execute(text("SELECT now()")).scalar() + timedelta(hours=1)


def claimed(db, at: datetime, worker: str = "w1", job_type: str = "test.record") -> int:
    job_id = enqueue_now(job_type, {"key": f"k-{at.timestamp()}"}).id
    with db.session() as s:
        s.execute(text("UPDATE jobs SET state = 'dispatched' WHERE id = :j"), {"j": job_id})
        assert job_store.claim_job(s, job_id, job_type, worker, "task", at) is not None
    return job_id


def beat(db, at: datetime, holding: list[int] | None, worker: str = "w1") -> None:
    with db.session() as s:
        queue_store.heartbeat(s, worker, "host", 1, ["default"], now=at, holding=holding)


def rescue(db, now: datetime, policy: RescuePolicy = POLICY, limit: int = 100) -> list[job_store.Rescued]:
    with db.session() as s:
        return job_store.rescue_orphans(s, STALE, policy, limit, now)


def row(db, job_id: int):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.execute(text(
            "SELECT j.state, j.attempt, j.crashes, j.run_at, j.last_error, e.state AS execution, e.error_class "
            "FROM jobs j JOIN job_executions e ON e.job_id = j.id AND e.attempt = j.attempt WHERE j.id = :j"
        ), {"j": job_id}).one()


def test_a_dead_process_counts_a_crash_and_the_retry_waits_for_the_backoff(db, now):
    job = claimed(db, now - timedelta(seconds=70))
    beat(db, now - timedelta(seconds=60), [job])
    assert [(r.job_id, r.execution_state, r.error_class) for r in rescue(db, now)] == [(job, "lost", "WorkerLost")]
    found = row(db, job)
    assert (found.state, found.crashes, found.last_error) == ("scheduled", 1, "worker lost")
    assert found.run_at == now + timedelta(seconds=1.0)  # base * 2^(attempt-1), attempt 1


def test_backoff_doubles_per_attempt_and_is_capped_and_per_type(db, now):
    per_type = RescuePolicy(backoff_base=1.0, backoff_max=50.0, jitter=0.0, poison_after=100,
                            per_type={"test.record": (4.0, 20.0)})
    job = claimed(db, now - timedelta(seconds=70))
    delays = []
    for _ in range(4):
        rescue(db, now, per_type)
        delays.append((row(db, job).run_at - now).total_seconds())
        with db.session() as s:
            s.execute(text("UPDATE jobs SET state = 'dispatched' WHERE id = :j"), {"j": job})
            job_store.claim_job(s, job, "test.record", "w1", "task", now - timedelta(seconds=70))
    assert delays == [4.0, 8.0, 16.0, 20.0]


def test_a_job_that_ends_n_processes_fails_as_poison(db, now):
    job = claimed(db, now - timedelta(seconds=70))
    for _ in range(2):
        rescue(db, now)
        with db.session() as s:
            s.execute(text("UPDATE jobs SET state = 'dispatched' WHERE id = :j"), {"j": job})
            job_store.claim_job(s, job, "test.record", "w1", "task", now - timedelta(seconds=70))
    assert [r.error_class for r in rescue(db, now)] == ["Poison"]
    found = row(db, job)
    assert (found.state, found.attempt, found.crashes) == ("failed", 3, 3)
    assert found.last_error == "poison: ended 3 worker processes"
    assert (found.execution, found.error_class) == ("lost", "Poison")


def test_a_live_process_that_let_the_job_go_gets_it_rescued_without_a_crash(db, now):
    job = claimed(db, now - timedelta(seconds=5))
    beat(db, now - timedelta(seconds=1), [])  # after the claim, fresh, not holding it
    assert [r.error_class for r in rescue(db, now)] == ["AttemptAbandoned"]
    found = row(db, job)
    assert (found.state, found.crashes, found.execution) == ("scheduled", 0, "lost")


@pytest.mark.parametrize("heartbeat_before_claim, holding", [
    (False, "job"),   # the heartbeat lists the job
    (True, "none"),   # written before the claim: it cannot know the job yet
    (False, None),    # a process that does not report holdings
])
def test_a_held_job_or_an_earlier_heartbeat_is_left_alone(db, now, heartbeat_before_claim, holding):
    started = now - timedelta(seconds=5)
    job = claimed(db, started)
    at = started - timedelta(seconds=1) if heartbeat_before_claim else now - timedelta(seconds=1)
    beat(db, at, {"job": [job], "none": [], None: None}[holding])
    assert rescue(db, now) == []
    assert row(db, job).state == "running"


def test_the_rescuer_works_in_batches(db, now):
    jobs = [claimed(db, now - timedelta(seconds=70), worker="gone") for _ in range(5)]
    assert len(rescue(db, now, limit=2)) == 2
    assert len(rescue(db, now, limit=2)) == 2
    assert len(rescue(db, now, limit=2)) == 1
    assert {row(db, j).state for j in jobs} == {"scheduled"}
