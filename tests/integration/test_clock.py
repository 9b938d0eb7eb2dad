"""The clock contract: every time written on a job comes from the database's clock, or from an
injected one, never from the host's. Delays and backoffs are durations that SQL adds to
`coalesce(:now, now())`; a FrozenClock's `sql_now()` is its fixed time, the system clock's is
None. With the system clock the proof is exact equality with `SELECT now()` in the same
transaction (a transaction's `now()` is fixed; no host clock could hit it to the microsecond)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text

from shared.clock import FrozenClock, SystemClock
from shared.enqueue import enqueue, enqueue_many, enqueue_now
from shared.jobtypes.registry import registry
from shared.outcomes import Retry, Snooze
from shared.settings import get_settings
from shared.store import jobs as job_store
from shared.store.jobs import RescuePolicy
from worker.finishing import decide
from worker.runner import JobRunner

# Far from the real time, so a host clock or the server's could not produce it by accident.
FROZEN = datetime(2031, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)


def test_the_clocks_answer_what_sql_takes_as_now():
    assert SystemClock().sql_now() is None
    clock = FrozenClock(FROZEN)
    assert clock.sql_now() == FROZEN
    clock.advance(5)
    assert clock.sql_now() == FROZEN + timedelta(seconds=5)


def timing(session: Any, job_id: int) -> Any:
    return session.execute(text("SELECT state, run_at, created_at FROM jobs WHERE id = :j"), {"j": job_id}).one()


def test_a_delay_under_a_frozen_clock_runs_at_that_time_plus_the_delay(db):
    clock = FrozenClock(FROZEN)
    with db.session() as session:
        delayed = enqueue(session, "test.record", {"key": "d"}, delay=90, clock=clock).id
        unique = enqueue(session, "test.unique", {"key": "u"}, delay=timedelta(minutes=2), clock=clock).id
        many = enqueue_many(session, "test.record", [{"key": "m1"}, {"key": "m2"}], delay=1.5, clock=clock)
        at_once = enqueue(session, "test.record", {"key": "now"}, delay=0, clock=clock).id
        assert tuple(timing(session, delayed)) == ("scheduled", FROZEN + timedelta(seconds=90), FROZEN)
        assert tuple(timing(session, unique)) == ("scheduled", FROZEN + timedelta(minutes=2), FROZEN)
        assert [tuple(timing(session, j)) for j in many] == [("scheduled", FROZEN + timedelta(seconds=1.5), FROZEN)] * 2
        assert tuple(timing(session, at_once)) == ("queued", FROZEN, FROZEN)


def test_with_the_system_clock_a_delay_counts_from_the_databases_now(db):
    with db.session() as session:
        now = session.execute(text("SELECT now()")).scalar_one()
        delayed = enqueue(session, "test.record", {"key": "d"}, delay=30).id
        unique = enqueue(session, "test.unique", {"key": "u"}, delay=45).id
        many = enqueue_many(session, "test.record", [{"key": "m"}], delay=timedelta(milliseconds=250))
        plain = enqueue(session, "test.record", {"key": "p"}).id
        assert tuple(timing(session, delayed)) == ("scheduled", now + timedelta(seconds=30), now)
        assert tuple(timing(session, unique)) == ("scheduled", now + timedelta(seconds=45), now)
        assert tuple(timing(session, many[0])) == ("scheduled", now + timedelta(milliseconds=250), now)
        assert tuple(timing(session, plain)) == ("queued", now, now)


def test_whether_a_named_run_at_is_later_is_the_databases_call(db):
    with db.session() as session:
        now = session.execute(text("SELECT now()")).scalar_one()
        later = enqueue(session, "test.record", {"key": "later"}, run_at=now + timedelta(microseconds=1)).id
        due = enqueue(session, "test.record", {"key": "due"}, run_at=now).id
        assert timing(session, later).state == "scheduled"
        assert timing(session, due).state == "queued"


def claim(session: Any, job_id: int, now: datetime | None) -> Any:
    session.execute(text("UPDATE jobs SET state = 'dispatched' WHERE id = :j"), {"j": job_id})
    claimed = job_store.claim_job(session, job_id, "test.record", "w-clock", "task", now)
    assert claimed is not None
    return claimed


def test_with_the_system_clock_a_retry_backoff_counts_from_the_databases_now(db):
    job_id = enqueue_now("test.record", {"key": "r"}).id
    with db.session() as session:
        now = session.execute(text("SELECT now()")).scalar_one()
        claimed = claim(session, job_id, None)
        finish = decide(claimed, RuntimeError("down"), backoff_base=2.0, backoff_max=60.0, jitter=0.0)
        written = job_store.finish_execution(session, job_id, claimed.attempt, claimed.execution_id, finish, None)
        assert (written.recorded, written.run_at) == (True, now + timedelta(seconds=2))
        assert tuple(timing(session, job_id))[:2] == ("scheduled", now + timedelta(seconds=2))


def test_with_the_system_clock_a_rescued_attempts_backoff_counts_from_the_databases_now(db):
    job_id = enqueue_now("test.record", {"key": "lost"}).id
    with db.session() as session:
        # Claimed long ago by a process that never heartbeat: dead by any clock.
        claim(session, job_id, session.execute(text("SELECT now() - interval '1 hour'")).scalar_one())
    with db.session() as session:
        now = session.execute(text("SELECT now()")).scalar_one()
        policy = RescuePolicy(backoff_base=4.0, backoff_max=60.0, jitter=0.0, poison_after=10)
        assert [r.job_id for r in job_store.rescue_orphans(session, 30.0, policy, 10, None)] == [job_id]
        assert tuple(timing(session, job_id))[:2] == ("scheduled", now + timedelta(seconds=4))


def run_once(db: Any, clock: FrozenClock, handler: Any) -> tuple[int, Any]:
    """One attempt through the worker's runner (no Celery), its handler raising or returning."""
    job_id = enqueue_now("test.record", {"key": "run"}, clock=clock).id
    with db.session() as session:
        session.execute(text("UPDATE jobs SET state = 'dispatched' WHERE id = :j"), {"j": job_id})
    settings = get_settings().model_copy(update={"backoff_base_seconds": 3.0, "backoff_max_seconds": 60.0,
                                                 "backoff_jitter": 0.0})
    runner = JobRunner(settings, clock, db, "w-clock")
    try:
        attempt = runner.run(registry.get("test.record"), handler, job_id, "task")
    finally:
        runner.connection.close()
    assert attempt is not None and attempt.recorded
    with db.session() as session:
        assert timing(session, job_id).state == "scheduled"
        assert timing(session, job_id).run_at == attempt.run_at
        return job_id, attempt.run_at


def test_under_a_frozen_clock_the_runner_writes_backoff_retry_and_snooze_from_that_time(db):
    clock = FrozenClock(FROZEN)

    def fails(payload: Any, ctx: Any) -> None:
        raise RuntimeError("down")

    assert run_once(db, clock, fails)[1] == FROZEN + timedelta(seconds=3)  # base * 2^0, no jitter
    assert run_once(db, clock, lambda p, c: Retry(30, "later"))[1] == FROZEN + timedelta(seconds=30)
    clock.advance(60)
    assert run_once(db, clock, lambda p, c: Snooze(5))[1] == FROZEN + timedelta(seconds=65)


def test_jobctl_in_counts_from_the_databases_now(db):
    from click.testing import CliRunner

    from shared.cli.workloads import messages, users

    runner = CliRunner()
    added = runner.invoke(users, ["add", "clock-user"])
    assert added.exit_code == 0, added.output
    user_id = int(added.output.split()[1])
    queued = runner.invoke(messages, ["add", str(user_id), "hello", "--in", "3600"])
    assert queued.exit_code == 0, queued.output
    with db.session() as session:
        row = session.execute(text("SELECT send_at, created_at FROM proactive_messages WHERE user_id = :u"),
                              {"u": user_id}).one()
    # created_at is the insert transaction's now(): the same instant, to the microsecond.
    assert row.send_at == row.created_at + timedelta(hours=1)
    both = runner.invoke(messages, ["add", str(user_id), "hello", "--in", "1", "--at", "2031-01-01T00:00:00"])
    assert both.exit_code != 0 and "not both" in both.output
