"""An exception landing inside psycopg mid-statement (a soft time limit, any signal handler's
exception) must leave no connection half-used: the next statement on the same object works."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import text

from shared.db import Database, make_database
from worker.connection import JobConnection


class Interrupted(BaseException):
    """Not an Exception: like KeyboardInterrupt, it passes every `except Exception`."""


@contextmanager
def raised_during_statement(error: BaseException, after: float = 0.3) -> Iterator[None]:
    """Raise `error` from a SIGALRM handler `after` seconds in (the statement is then running)."""

    def fire(_signum, _frame):  # type: ignore[no-untyped-def]
        raise error

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


ERRORS = [SoftTimeLimitExceeded("soft limit"), RuntimeError("any exception"), Interrupted()]


@pytest.fixture
def small_pool(database_url: str) -> Iterator[Database]:
    # One connection and one overflow: a half-used connection would be met again at once.
    database = make_database(database_url, pool_size=1)
    yield database
    database.dispose()


def busy_backends(db: Database, marker: str) -> int:
    with db.session() as s:
        return int(s.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :m AND state = 'active' AND pid <> pg_backend_pid()"),
            {"m": f"%{marker}%"},
        ).scalar() or 0)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_job_connection_is_reset_after_an_exception_mid_statement(db, small_pool, error):
    connection = JobConnection(small_pool)
    assert connection.run(lambda c: c.execute(text("SELECT 1")).scalar()) == 1
    with pytest.raises(type(error)):
        with raised_during_statement(error):
            connection.run(lambda c: c.execute(text("SELECT pg_sleep(5) /* jc-sleep */")))
    for n in range(20):
        assert connection.run(lambda c: c.execute(text("SELECT :n"), {"n": n}).scalar()) == n
    # The abandoned statement was cancelled in the server too, not left running.
    assert busy_backends(db, "jc-sleep") == 0


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_pooled_session_is_reset_after_an_exception_mid_statement(db, small_pool, error):
    with pytest.raises(type(error)):
        with raised_during_statement(error), small_pool.session() as session:
            session.execute(text("SELECT pg_sleep(5) /* session-sleep */"))
    for n in range(20):
        with small_pool.session() as session:
            assert session.execute(text("SELECT :n"), {"n": n}).scalar() == n
    assert busy_backends(db, "session-sleep") == 0


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_engine_connection_is_reset_after_an_exception_mid_statement(db, small_pool, error):
    # A handler's own queries through get_database().engine.
    with pytest.raises(type(error)):
        with raised_during_statement(error), small_pool.engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(5) /* engine-sleep */"))
    for n in range(20):
        with small_pool.engine.begin() as connection:
            assert connection.execute(text("SELECT :n"), {"n": n}).scalar() == n
    assert busy_backends(db, "engine-sleep") == 0


def test_job_connection_pool_shares_a_few_connections_among_many_threads(db, database_url):
    """A threads worker's statements: 64 threads, 3 connections, every statement answered."""
    import threading

    from worker.connection import JobConnectionPool

    database = make_database(database_url, pool_size=3, max_overflow=0, application_name="jc-pool-test")
    pool = JobConnectionPool(database, 3)
    answers: list[int] = []
    most = [0]

    def work(n: int) -> None:
        for i in range(5):
            answers.append(pool.run(lambda c: c.execute(text("SELECT :n /* jc-pool */"), {"n": n * 10 + i}).scalar()))

    def count() -> None:
        with db.session() as s:
            held = s.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jc-pool-test'")).scalar()
        most[0] = max(most[0], int(held or 0))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        count()
    for thread in threads:
        thread.join()
    count()
    pool.close()
    database.dispose()
    assert sorted(answers) == sorted(n * 10 + i for n in range(64) for i in range(5))
    assert 1 <= most[0] <= 3
