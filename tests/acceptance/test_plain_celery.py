"""A service's own, stock Celery app (configured only as Celery's docs show) calling
`send_task` without a queue: the message goes to Celery's default queue `celery`, which every
platform worker consumes, and is adopted as a job; a task name no worker knows is refused
loudly instead of waiting forever."""

from __future__ import annotations

import pytest
from celery import Celery
from sqlalchemy import text

from shared.settings import get_settings
from tests.acceptance.test_lifecycle import effect_counts, states
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance


def stock_app() -> Celery:
    settings = get_settings()
    app = Celery(broker=settings.broker_url)
    if settings.is_redis_broker:
        # What a service sharing the platform's Redis under a key prefix sets (kombu's option).
        app.conf.broker_transport_options = {"global_keyprefix": settings.broker_key_prefix}
    return app


def test_send_task_without_a_queue_runs_once_as_an_adopted_job(db, broker, processes):
    worker = processes.worker(queues="high,default")  # no -Q names `celery`
    pool = sorted(processes.pool_pids(worker))
    app = stock_app()
    try:
        task_id = app.send_task("test.record", kwargs={"key": "stock"}).id
        unknown_id = app.send_task("platform.no-such-task", kwargs={"x": 1}).id
    finally:
        app.close()
    wait_for(lambda: states(db) == {"succeeded": 1}, 60, "the stock call ran", on_timeout=lambda: f"{states(db)}\n{worker.log()}")
    with db.session() as s:
        rows = s.execute(text("SELECT type, queue, metadata, unique_key FROM jobs")).all()
    assert [(r.type, r.queue, r.metadata, r.unique_key) for r in rows] == [
        ("test.record", "default", {"adopted_from": "celery"}, f"celery-task:{task_id}")
    ]
    refused = wait_for(lambda: [line for line in worker.log().splitlines() if unknown_id in line], 30,
                       "the unknown task is logged", on_timeout=worker.log)
    assert "ERROR" in refused[0] and "platform.no-such-task" in refused[0] and "'celery'" in refused[0], refused
    assert "'x'" not in refused[0]  # the body (kwargs) is never logged
    assert effect_counts(db) == {"stock": 1}
    assert worker.alive() and sorted(processes.pool_pids(worker)) == pool
