"""A stock Celery app, configured only as Celery's docs show (nothing from the platform), with
one task of a platform job type's name that records each run in Redis. The fast-publisher test
runs it as a plain `celery worker` to prove the dispatcher's messages need no platform code.

Environment: STOCK_BROKER_URL, STOCK_KEY_PREFIX (the run's Redis key prefix, also the broker's
global key prefix on Redis), STOCK_RECORD_URL (the Redis where runs are recorded)."""

from __future__ import annotations

import os

import redis
from celery import Celery

TASK_NAME = "test.stock_record"
RAN_KEY = "stock-ran"

app = Celery("stock", broker=os.environ.get("STOCK_BROKER_URL", "memory://"))
if app.conf.broker_url.startswith("redis"):
    # The broker layout every client of the platform's Redis shares (kombu's own options): the
    # key prefix, and the priority lists' names (`queue`, `queue:3`, ...).
    app.conf.broker_transport_options = {
        "global_keyprefix": os.environ.get("STOCK_KEY_PREFIX", ""), "sep": ":", "priority_steps": [0, 3, 6, 9],
    }
else:  # RabbitMQ: a priority queue must be declared alike by every client (x-max-priority)
    app.conf.task_queue_max_priority = int(os.environ.get("STOCK_MAX_PRIORITY", "9"))
app.conf.task_acks_late = True


@app.task(name=TASK_NAME)
def stock_record(job_id: int) -> None:
    client = redis.Redis.from_url(os.environ["STOCK_RECORD_URL"])
    client.rpush(os.environ.get("STOCK_KEY_PREFIX", "") + RAN_KEY, job_id)
    client.close()
