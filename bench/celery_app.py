"""The bare-Celery contenders: `celery -A bench.celery_app:app worker -Q default -c 2`.

The app is built by `shared.broker.make_celery`, so it has exactly the platform's Celery
settings (acks late, prefetch 1, JSON, results ignored, events on, the same Redis transport
options and key prefix). With `BENCH_RESULT_BACKEND` set it becomes the third contender:
results stored by Celery's SQLAlchemy backend in the same PostgreSQL (`task_ignore_result` off).

The tasks do no work besides saying when they ran, in one Redis round trip.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from shared.broker import make_celery
from shared.settings import get_settings

NOOP_TASK = "bench.noop"
STAMP_TASK = "bench.stamp"

settings = get_settings()
app: Celery = make_celery(settings, name="bench")
_backend = os.environ.get("BENCH_RESULT_BACKEND")
if _backend:
    app.conf.update(result_backend=_backend, task_ignore_result=False)


def key(name: str) -> str:
    """A probe key, under the run's broker prefix so the end of the run deletes it."""
    return f"{settings.broker_key_prefix}probe:{name}"


FIRST, LAST, DONE, LATENCIES = key("first"), key("last"), key("done"), key("latencies")

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    """One connection per pool process, opened after the fork."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(settings.broker_url or "redis://"))
    return _client[1]


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Counts itself and stamps the first and latest run: one pipelined round trip."""
    now = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.setnx(FIRST, now)
    pipe.incr(DONE)
    pipe.set(LAST, now)
    pipe.execute()


@app.task(name=STAMP_TASK)
def stamp(sent_at: float) -> None:
    """Records how long after its sending this task started (one clock, one machine)."""
    client().rpush(LATENCIES, time.time() - sent_at)
