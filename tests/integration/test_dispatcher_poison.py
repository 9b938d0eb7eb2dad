"""Poison isolation in the dispatcher, driven round by round: a row the dispatch, promotion,
redispatch or publish path cannot handle (old rows from before migration 0004: -infinity
timestamps, an infinite timeout) is failed alone with the reason, and every other job of every
queue is dispatched in the same round."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, text

from scheduler.dispatcher import Dispatcher
from shared.broker import make_celery
from shared.clock import SystemClock
from shared.enqueue import enqueue_many_now
from shared.jobtypes.registry import registry
from shared.settings import get_settings
from shared.store import limits as limit_store
from tests.history import history_inserts, old_rows_allowed

RUN_AT = "ck_jobs_run_at_finite"
TIMEOUT = "ck_jobs_timeout_finite"


@pytest.fixture
def dispatcher(db):
    settings = get_settings()
    app = make_celery(settings)
    found = Dispatcher(db, app, settings, registry, SystemClock())
    found._last_redispatch = time.monotonic()  # redispatch only where a test asks for it
    yield found
    found.close()


def old_row(db, columns: str, values: str, *constraints: str, history: bool = False) -> int:
    """A row as migration 0004 would find it (the constraints dropped while it is written)."""
    with old_rows_allowed(db, *constraints), db.engine.begin() as connection:
        if history:
            with history_inserts(connection):
                return connection.execute(text(
                    f"INSERT INTO jobs (type, payload, {columns}) VALUES ('test.record', '{{\"key\": \"p\"}}', {values}) "
                    "RETURNING id")).scalar_one()
        return connection.execute(text(
            f"INSERT INTO jobs (type, payload, {columns}) VALUES ('test.record', '{{\"key\": \"p\"}}', {values}) "
            "RETURNING id")).scalar_one()


def job(db, job_id: int) -> tuple[str, str | None]:
    with db.engine.begin() as connection:
        row = connection.execute(text("SELECT state, last_error FROM jobs WHERE id = :id"), {"id": job_id}).one()
    return row.state, row.last_error


def states(db, ids: list[int]) -> dict[str, int]:
    with db.engine.begin() as connection:
        return dict(connection.execute(text(
            "SELECT state, count(*) FROM jobs WHERE id = ANY(:ids) GROUP BY state"), {"ids": ids}).all())


def good_jobs() -> list[int]:
    return (enqueue_many_now("test.record", [{"key": f"d{i}"} for i in range(5)])
            + enqueue_many_now("test.record", [{"key": f"h{i}"} for i in range(3)], queue="high"))


@pytest.mark.parametrize("limited, constraint_back, error", [
    # No limits: one UPDATE moves the head of the backlog, and the row's check refuses it...
    (False, True, 'new row for relation "jobs" violates check constraint "ck_jobs_run_at_finite"'),
    # ...or, with no check at all, psycopg cannot load -infinity into a datetime.
    (False, False, "timestamp too small"),
    # Under key limits (the test job types declare some), candidates are loaded first.
    (True, True, "timestamp too small"),
])
def test_a_queued_row_with_an_infinite_run_at_fails_alone(db, dispatcher, caplog, limited, constraint_back, error):
    if not limited:
        dispatcher.key_limits = {}
    poison = old_row(db, "run_at", "'-infinity'", RUN_AT)
    good = good_jobs()
    if constraint_back:
        dispatcher.tick()
    else:
        with old_rows_allowed(db, RUN_AT):
            dispatcher.tick()
    state, reason = job(db, poison)
    assert state == "failed" and reason.startswith("dispatch failed: ") and error in reason, reason
    assert states(db, good) == {"dispatched": 8}
    assert dispatcher.failed_alone_total == 1 and dispatcher.published_total == 8
    assert f"job {poison} failed alone" in caplog.text
    assert dispatcher.tick() == 0  # the next round is a fast one with nothing to do


def test_under_a_queue_rate_limit_too(db, dispatcher):
    with db.session() as session:
        limit_store.set_queue_limits(session, "default", concurrency=None, rate_limit=1000, rate_period=1.0)
    poison = old_row(db, "run_at", "'-infinity'", RUN_AT)
    good = good_jobs()
    dispatcher.tick()
    assert job(db, poison)[0] == "failed" and job(db, poison)[1].startswith("dispatch failed: ")
    assert states(db, good) == {"dispatched": 8}


@pytest.mark.parametrize("constraint_back, error", [
    (True, 'violates check constraint "ck_jobs_timeout_finite"'),
    (False, "timeout_seconds inf is not a finite positive number"),  # loads, but no worker can arm it
])
def test_an_infinite_timeout_fails_alone(db, dispatcher, constraint_back, error):
    dispatcher.key_limits = {}
    poison = old_row(db, "timeout_seconds", "'Infinity'", TIMEOUT, history=True)
    good = good_jobs()
    if constraint_back:
        dispatcher.tick()
    else:
        with old_rows_allowed(db, TIMEOUT):
            dispatcher.tick()
    state, reason = job(db, poison)
    assert state == "failed" and reason.startswith("dispatch failed: ") and error in reason, reason
    assert states(db, good) == {"dispatched": 8}


def test_a_scheduled_row_that_cannot_be_promoted_fails_alone(db, dispatcher):
    poison = old_row(db, "state, run_at", "'scheduled', '-infinity'", RUN_AT)
    with db.engine.begin() as connection:
        due = connection.execute(text(
            "INSERT INTO jobs (type, payload, state, run_at) VALUES ('test.record', '{\"key\": \"s\"}', 'scheduled', "
            "now() - interval '1 second') RETURNING id")).scalar_one()
    dispatcher.tick()
    state, reason = job(db, poison)
    assert state == "failed" and reason.startswith("promotion failed: ") and RUN_AT in reason, reason
    assert job(db, due)[0] == "dispatched"


def test_a_lost_row_that_cannot_be_redispatched_fails_alone(db, dispatcher):
    poison = old_row(db, "state, run_at, dispatched_at", "'dispatched', '-infinity', now() - interval '1 hour'",
                     RUN_AT, history=True)
    with db.engine.begin() as connection, history_inserts(connection):
        lost = connection.execute(text(
            "INSERT INTO jobs (type, payload, state, dispatched_at) VALUES ('test.record', '{\"key\": \"l\"}', "
            "'dispatched', now() - interval '1 hour') RETURNING id")).scalar_one()
    dispatcher._last_redispatch = 0.0
    dispatcher.tick()
    state, reason = job(db, poison)
    assert state == "failed" and reason.startswith("redispatch failed: "), reason
    with db.engine.begin() as connection:
        refreshed = connection.execute(text(
            "SELECT dispatched_at > now() - interval '1 minute' FROM jobs WHERE id = :id"), {"id": lost}).scalar()
    assert refreshed and dispatcher.published_total == 1


@pytest.mark.parametrize("limited", [False, True])
def test_the_fast_path_is_unchanged_when_nothing_fails(db, dispatcher, limited):
    if not limited:
        dispatcher.key_limits = {}
    good_jobs()
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(" ".join(statement.split()[:4]))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        dispatcher._last_promote = 0.0
        assert dispatcher.tick() == 8
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    # Promotion, the queues with work, then per queue: lock, in-flight counts, and one UPDATE
    # (no limits) or candidates then the UPDATE (limits; these jobs carry no limited key).
    assert len(statements) == 2 + 2 * (4 if limited else 3), statements
    assert not any("SAVEPOINT" in s for s in statements), statements
