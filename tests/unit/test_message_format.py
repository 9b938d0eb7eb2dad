"""The fast publisher's message is, field for field, the one Celery's own `as_task_v2` builds
for the same call (headers and body), and lands in the Redis list kombu would choose."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from shared.broker import make_celery, redis_envelope, redis_queue_key, task_id, task_message
from shared.settings import load_settings
from shared.store.rows import DispatchedJob

REDIS = {"JOBS_BROKER_URL": "redis://127.0.0.1:6379/0", "JOBS_BROKER_KEY_PREFIX": "pre:"}


@pytest.mark.parametrize("timeout", [None, 12.5])
def test_headers_and_body_are_celerys_own(timeout: float | None) -> None:
    settings = load_settings(REDIS)
    app = make_celery(settings)
    job = DispatchedJob(4242, "test.record", "default", 7, datetime.now(timezone.utc), 2, timeout)
    ours = task_message(job, settings, origin="gen1@host", reply_to="r")
    soft = timeout or settings.default_timeout_seconds
    theirs = app.amqp.as_task_v2(
        task_id(job), job.type, kwargs={"job_id": job.id}, soft_time_limit=soft, time_limit=ours.headers["timelimit"][0],
        origin="gen1@host", ignore_result=False,
    )
    assert ours.headers == theirs.headers
    assert json.loads(ours.body) == json.loads(json.dumps(list(theirs.body)))
    assert ours.properties["correlation_id"] == theirs.properties["correlation_id"] == "job-4242-3"
    assert ours.priority == 7 and ours.headers["timelimit"][1] == soft


def test_the_redis_envelope_and_list_are_kombus() -> None:
    settings = load_settings(REDIS)
    job = DispatchedJob(9, "test.record", "low", 4, datetime.now(timezone.utc), 0, None)
    message = task_message(job, settings, origin="o", reply_to="r")
    envelope = json.loads(redis_envelope(message))
    assert json.loads(base64.b64decode(envelope["body"])) == [[], {"job_id": 9}, {
        "callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert envelope["content-type"] == "application/json" and envelope["content-encoding"] == "utf-8"
    props = envelope["properties"]
    assert props["delivery_info"] == {"exchange": "", "routing_key": "low"} and props["body_encoding"] == "base64"
    assert props["delivery_tag"] != json.loads(redis_envelope(message))["properties"]["delivery_tag"]
    # kombu's steps [0, 3, 6, 9], sep ':', under the global key prefix
    assert [redis_queue_key(settings, "low", p) for p in (0, 2, 3, 5, 6, 8, 9)] == [
        "pre:low", "pre:low", "pre:low:3", "pre:low:3", "pre:low:6", "pre:low:6", "pre:low:9"]
