"""Poison broker messages: a message the worker cannot parse or accept is logged and dropped,
and the worker goes on consuming (same main process, same pool processes).

Every message is published raw with kombu, protocol-2 headers built here by hand, the way any
producer on the broker could."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import text

from shared.broker import make_celery
from shared.embedded import free_port
from shared.enqueue import enqueue_many_now
from shared.settings import get_settings
from tests.acceptance.test_lifecycle import all_done, effect_counts, states
from tests.acceptance.test_operations import samples
from tests.processes import wait_for
from tests.prometheus import http_get

pytestmark = pytest.mark.acceptance

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class Poison:
    kind: str
    headers: dict[str, Any] = field(default_factory=dict)  # overrides of the well-formed headers
    body: Any = None  # bytes as-is; anything else JSON-encoded; None: a well-formed body
    content_type: str = "application/json"
    task: Any = "test.record"
    kwargs: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        return f"poison-{self.kind}"


# Each kind names a way one message can be wrong. The task is test.record unless said otherwise,
# so a poison that was run by mistake would leave an effect named after its kind.
POISONS = [
    Poison("timelimit-strings", headers={"timelimit": ["x", "y"]}),
    Poison("timelimit-number", headers={"timelimit": 5}),
    Poison("timelimit-negative", headers={"timelimit": [-1, -2]}),
    Poison("eta-not-a-date", headers={"eta": "not-a-date"}),
    Poison("eta-number", headers={"eta": 12}),
    Poison("eta-year-9999", headers={"eta": "9999-12-31T23:59:59+00:00"}),
    Poison("expires-not-a-date", headers={"expires": "tomorrow-ish"}),
    Poison("retries-string", headers={"retries": "many"}),
    Poison("id-list", headers={"id": ["a", "b"]}),
    Poison("id-missing", headers={"id": None}),
    Poison("task-list", task=["test.record"]),
    Poison("task-number", task=12),
    Poison("task-unknown", task="no.such.task"),
    Poison("body-not-json", body=b"\xff{not json"),
    Poison("body-json-string", body="just a string"),
    Poison("body-json-number", body=7),
    Poison("body-short-list", body=[[], {}]),
    Poison("kwargs-not-a-mapping", body=[[], ["key", "x"], EMBED]),
    Poison("content-type-pickle", body=b"\x80\x04K\x01.", content_type="application/x-python-serialize"),
    Poison("job-id-string", kwargs={"job_id": "x"}),
    Poison("job-id-bool", kwargs={"job_id": True}),
    Poison("job-id-huge", kwargs={"job_id": 2**80}),
    Poison("job-id-zero", kwargs={"job_id": 0}),
    Poison("errbacks-garbage", body=[[], {"key": "poison-errbacks-garbage"}, dict(EMBED, errbacks=[{"x": 1}])]),
    # Protocol 1 (everything in the body), which Celery still accepts, and the hybrid of both.
    Poison("hybrid-timelimit-strings", body={"args": [], "kwargs": {"key": "poison-hybrid"}},
           headers={"timelimit": ["x", "y"]}),
    Poison("proto1-task-list", task=None, body={"task": ["test.record"], "id": "poison-proto1-task-list", "args": [], "kwargs": {}}),
    Poison("proto1-no-task", task=None, body={"id": "poison-proto1-no-task", "args": [], "kwargs": {}}),
    Poison("proto1-no-id", task=None, body={"task": "test.record", "args": [], "kwargs": {"key": "poison-proto1-no-id"}}),
    Poison("proto1-timelimit-strings", task=None, body={
        "task": "test.record", "id": "poison-proto1-timelimit-strings", "args": [],
        "kwargs": {"key": "poison-proto1-timelimit-strings"}, "timelimit": ["x", "y"],
    }),
]


def protocol2_headers(poison: Poison) -> dict[str, Any]:
    if poison.task is None:  # protocol 1: only where it came from
        return {"origin": poison.task_id}
    headers: dict[str, Any] = {
        "lang": "py", "task": poison.task, "id": poison.task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": poison.task_id,
        "parent_id": None, "argsrepr": "()", "kwargsrepr": "{}", "origin": poison.task_id, "ignore_result": True,
    }
    headers.update(poison.headers)
    return {k: v for k, v in headers.items() if not (k == "id" and v is None)}


def encoded_body(poison: Poison) -> bytes:
    if isinstance(poison.body, bytes):
        return poison.body
    if poison.body is not None:
        return json.dumps(poison.body).encode()
    kwargs = poison.kwargs if poison.kwargs is not None else {"key": poison.task_id}
    return json.dumps([[], kwargs, EMBED]).encode()


def publish_raw(app: Celery, queue: str, poisons: list[Poison]) -> None:
    target = app.amqp.queues[queue]  # declared as the worker declares it (RabbitMQ: x-max-priority)
    with app.connection_for_write() as connection:
        producer = connection.Producer()
        for poison in poisons:
            producer.publish(
                encoded_body(poison), exchange=target.exchange, routing_key=queue, declare=[target],
                headers=protocol2_headers(poison), content_type=poison.content_type, content_encoding="binary",
                retry=True,
            )


# On Redis a message is a JSON envelope in a list any client can push to: items that are not one.
ENVELOPES = [b"not json at all", b'{"body": "no properties"}', b"[1, 2]", b'{"properties": []}']


def push_raw_envelopes(queue: str) -> None:
    settings = get_settings()
    client = redis.Redis.from_url(settings.broker_url)
    try:
        for item in ENVELOPES:
            client.lpush(f"{settings.broker_key_prefix}{queue}", item)
    finally:
        client.close()


def rejected_count(log: str) -> int:
    return len(re.findall(r"dropped a broker message", log))


def rejected_metric(port: int) -> dict[str, float]:
    _, exposition = http_get(f"http://127.0.0.1:{port}/metrics")
    return {dict(labels)["reason"]: count for (name, labels), count in samples(exposition).items()
            if name == "jobs_messages_rejected_total"}


def test_poison_messages_are_dropped_and_the_worker_goes_on(db, broker, processes, tmp_path):
    port = free_port()
    worker = processes.worker(concurrency=2, env={
        "JOBS_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    })
    pool = sorted(processes.pool_pids(worker))
    app = make_celery(get_settings())
    publish_raw(app, "default", POISONS)
    expected = len(POISONS)
    if broker == "redis":
        push_raw_envelopes("default")
        expected += len(ENVELOPES)
    wait_for(lambda: rejected_count(worker.log()) >= expected or not worker.alive(), 60,
             "every poison logged", on_timeout=worker.log)
    processes.scheduler()
    enqueue_many_now("test.record", [{"key": f"after-{i}"} for i in range(40)])
    wait_for(lambda: all_done(db, 40) or not worker.alive(), 60, "40 ordinary jobs succeed",
             on_timeout=lambda: f"{states(db)}\n{worker.log()}")
    log = worker.log()
    assert worker.alive(), log
    assert sorted(processes.pool_pids(worker)) == pool, log
    assert effect_counts(db) == {f"after-{i}": 1 for i in range(40)}
    missing = [p.kind for p in POISONS if not _logged(log, p)]
    assert not missing, f"not logged as dropped: {missing}\n{log}"
    assert "Unrecoverable error" not in log and "Traceback" not in log, log
    with db.session() as s:  # nothing adopted from a poison message
        assert s.execute(text("SELECT count(*) FROM jobs WHERE unique_key LIKE 'celery-task:poison-%'")).scalar() == 0
    counted = rejected_metric(port)
    assert sum(counted.values()) == expected, counted
    assert counted["unknown_task"] == 1, counted
    assert counted["undecodable"] == 2 + (len(ENVELOPES) if broker == "redis" else 0), counted


def _logged(log: str, poison: Poison) -> bool:
    for line in log.splitlines():
        if "dropped a broker message" in line and (poison.task_id in line or poison.kind in line):
            return True
    return False
