"""Nothing lost, nothing run twice, exact priority: with real processes and a real broker."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from shared.broker import make_celery
from shared.embedded import EmbeddedServices, start_redis
from shared.settings import load_settings
from shared.enqueue import enqueue_many, enqueue_many_now
from tests.acceptance.test_lifecycle import all_done, effect_counts, states
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance


@pytest.fixture
def private_redis():
    """A Redis of this test's own, so FLUSHALL hurts nobody else on the machine."""
    services = EmbeddedServices()
    url = start_redis(Path(tempfile.mkdtemp(prefix="jobs-flush-")), services)
    yield url
    services.stop()


def count(db, sql: str) -> int:
    with db.session() as s:
        return int(s.execute(text(sql)).scalar() or 0)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_broker_flushed_with_1000_jobs_in_flight(db, processes, private_redis, pool):
    env = {"JOBS_BROKER_URL": private_redis, "JOBS_BROKER_KEY_PREFIX": ""}
    client = redis.Redis.from_url(private_redis)
    # FLUSHALL: every message in the broker is gone (Redis restarted without persistence).
    _lose_messages_twice(db, processes, env, client.flushall, pool)


def test_rabbitmq_queues_purged_with_1000_jobs_in_flight(db, processes, amqp_url):
    env = {"JOBS_BROKER_URL": amqp_url}
    app = make_celery(load_settings(dict(os.environ, **env)))

    def purge() -> None:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("default")

    _lose_messages_twice(db, processes, env, purge)


def _lose_messages_twice(db, processes, env: dict[str, str], lose, pool: str = "prefork") -> None:  # type: ignore[no-untyped-def]
    enqueue_many_now("test.record", [{"key": f"k{i}"} for i in range(1000)])
    processes.scheduler(env=env)
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state = 'dispatched' AND type = 'test.record'") >= 150, 30, "window dispatched")
    lose()
    processes.worker(env=env, pool=pool, concurrency=16 if pool == "threads" else 2)
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND type = 'test.record'") >= 300, 60, "some done")
    lose()  # and again, with jobs running and messages unacked
    wait_for(lambda: all_done(db, 1000), 120, f"all 1000 succeed, have {states(db)}")
    effects = effect_counts(db)
    with db.session() as s:
        odd = s.execute(text(
            "SELECT j.id, j.payload->>'key' AS key, e.attempt, e.state, e.worker_id, e.task_id, e.started_at, e.finished_at "
            "FROM jobs j JOIN job_executions e ON e.job_id = j.id "
            "WHERE NOT EXISTS (SELECT 1 FROM test_effects t WHERE t.key = j.payload->>'key') "
            "   OR j.id IN (SELECT job_id FROM job_executions GROUP BY job_id HAVING count(*) > 1) ORDER BY j.id, e.attempt"
        )).all()
    assert len(effects) == 1000 and set(effects.values()) == {1}, f"every handler effect exactly once; odd: {odd}"
    assert count(db, "SELECT count(*) FROM job_executions e JOIN jobs j ON j.id = e.job_id WHERE j.type = 'test.record'") == 1000


def test_high_priority_overtakes_the_waiting_backlog(db, broker, own_database, processes):
    enqueue_many_now("test.record", [{"key": f"low{i}"} for i in range(500)], priority=9)
    processes.worker(concurrency=1)
    processes.scheduler()
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND type = 'test.record'") >= 20, 30, "backlog moving")
    # Holding the queue's row lock keeps dispatchers off the queue while we enqueue and take
    # the snapshot: "still waiting" is then exact, not racy.
    with own_database.session() as session:
        session.execute(text("SELECT name FROM queues WHERE name = 'default' FOR UPDATE"))
        high = enqueue_many(session, "test.record", [{"key": f"high{i}"} for i in range(50)], priority=0)
        waiting = session.execute(
            text("SELECT id FROM jobs WHERE state = 'queued' AND priority = 9")
        ).scalars().all()
    assert len(waiting) > 100, "the test needs a real backlog"
    wait_for(lambda: all_done(db, 550), 90, f"all done, have {states(db)}")
    with db.session() as s:
        starts = dict(s.execute(text("SELECT job_id, started_at FROM job_executions")).all())  # all jobs: ids are unique
    last_high = max(starts[i] for i in high)
    first_waiting_low = min(starts[i] for i in waiting)
    assert last_high < first_waiting_low
