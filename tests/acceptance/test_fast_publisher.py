"""The dispatcher's fast publisher builds Celery's protocol-2 messages itself and sends a round
in one pipelined write (Redis) or through one kombu producer (RabbitMQ). A stock Celery worker
of the same version, knowing nothing of the platform, runs them unchanged, from every priority
list; and Flower's `task-sent` events go out, one `task.multi` message per round."""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime, timezone

import redis
from celery import Celery

from shared.broker import Publisher, make_celery, redis_queue_key
from shared.settings import get_settings
from shared.store.rows import DispatchedJob
from tests.processes import ProcessFactory, wait_for
from tests.rigs.stock_celery import RAN_KEY, TASK_NAME

import pytest

pytestmark = pytest.mark.acceptance

QUEUE = "stockq"


def jobs(first_id: int, n: int, job_type: str = TASK_NAME, queue: str = QUEUE) -> list[DispatchedJob]:
    now = datetime.now(timezone.utc)
    return [DispatchedJob(first_id + i, job_type, queue, i % 10, now, 0, 30.0) for i in range(n)]


def stock_worker(processes: ProcessFactory, broker_url: str, test_env: dict[str, str]) -> object:
    env = {"STOCK_BROKER_URL": broker_url, "STOCK_KEY_PREFIX": test_env["JOBS_BROKER_KEY_PREFIX"],
           "STOCK_RECORD_URL": test_env["JOBS_BROKER_URL"]}
    if not broker_url.startswith("redis"):
        env["STOCK_MAX_PRIORITY"] = "9"  # RabbitMQ: a priority queue is declared alike by everyone
    return processes._spawn("stock-worker", [
        sys.executable, "-m", "celery", "-A", "tests.rigs.stock_celery:app", "worker", "-P", "solo", "-Q", QUEUE,
        "--loglevel=INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ], env)


def test_a_stock_celery_worker_runs_the_fast_publishers_messages(db, broker, processes, test_env):
    settings = get_settings()
    app = make_celery(settings)
    record = redis.Redis.from_url(test_env["JOBS_BROKER_URL"])
    ran_key = test_env["JOBS_BROKER_KEY_PREFIX"] + RAN_KEY
    record.delete(ran_key)
    worker = stock_worker(processes, settings.broker_url, test_env)
    publisher = Publisher(app, settings)
    try:
        sent = jobs(900_001, 30)
        assert publisher.publish(sent) == 30
        ran = wait_for(lambda: len(set(record.lrange(ran_key, 0, -1))) >= 30 and record.lrange(ran_key, 0, -1), 60,
                       "the stock worker ran every message", on_timeout=worker.log)
        assert sorted(int(x) for x in ran) == [j.id for j in sent]  # each once, none other
        assert "Task test.stock_record[job-900001-1] succeeded" in worker.log()
        assert "ERROR" not in worker.log() and "WARNING" not in worker.log(), worker.log()
    finally:
        publisher.close()
        app.close()
        record.close()


def test_redis_messages_land_in_kombus_priority_lists_under_the_key_prefix(db, test_env):
    settings = get_settings()
    app = make_celery(settings)
    publisher = Publisher(app, settings)
    client = redis.Redis.from_url(test_env["JOBS_BROKER_URL"])
    prefix = test_env["JOBS_BROKER_KEY_PREFIX"]
    try:
        publisher.publish(jobs(1, 10, queue="prioq"))
        lengths = {key.decode(): client.llen(key) for key in client.scan_iter(match=f"{prefix}prioq*")}
        # kombu's steps [0, 3, 6, 9] with sep ':': priorities 0-2, 3-5, 6-8, 9.
        assert lengths == {f"{prefix}prioq": 3, f"{prefix}prioq:3": 3, f"{prefix}prioq:6": 3, f"{prefix}prioq:9": 1}
        assert redis_queue_key(settings, "prioq", 4) == f"{prefix}prioq:3"
        assert publisher.held_job_ids(["prioq"]) == set(range(1, 11))
    finally:
        publisher.close()
        app.close()
        client.close()


def test_task_sent_events_reach_an_event_receiver_in_one_batch(db, test_env):
    """What Flower does: an event receiver on the broker sees a task-sent event per message."""
    settings = get_settings()
    app = make_celery(settings)
    publisher = Publisher(app, settings)
    seen: list[dict[str, object]] = []
    stop = threading.Event()

    def capture() -> None:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"task-sent": seen.append})
            while not stop.is_set():
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except Exception:  # noqa: BLE001 - the capture's time-out ends a turn
                    pass

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        batch = iter(range(0, 10**6, 5))

        def sent_seen() -> bool:
            if not seen:
                publisher.publish(jobs(500_000 + next(batch), 5, job_type="test.record", queue="eventsq"))
            return len(seen) >= 5

        wait_for(sent_seen, 30, "task-sent events arrive", interval=0.5)
        event = seen[0]
        assert event["type"] == "task-sent" and event["name"] == "test.record" and event["queue"] == "eventsq"
        assert str(event["uuid"]).startswith("job-") and event["kwargs"].startswith("{'job_id': ")
    finally:
        stop.set()
        thread.join(5)
        publisher.close()
        app.close()
