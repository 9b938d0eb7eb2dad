"""The consumer's check of one broker message: what Celery itself sends passes, and each way a
message can be wrong is named. (The real worker and broker: tests/acceptance/test_poison_messages.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import Celery
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.message import Message

from shared.broker import hard_time_limit
from worker.consumer import message_problem

APP = Celery(broker="memory://", set_as_current=False)


def celery_message(**options: Any) -> tuple[dict[str, Any], bytes]:
    """Headers and body exactly as Celery's own producer builds them."""
    sent = APP.amqp.as_task_v2(options.pop("task_id", "t-1"), options.pop("name", "test.record"), **options)
    return sent.headers, json.dumps(sent.body).encode()


def message(headers: dict[str, Any], body: bytes, content_type: str = "application/json") -> Message:
    return Message(body=body, headers=headers, content_type=content_type, content_encoding="utf-8", accept={content_type} & {"application/json"})


def test_the_dispatchers_message_passes() -> None:
    headers, body = celery_message(task_id="job-7-1", kwargs={"job_id": 7}, time_limit=hard_time_limit(30.0), soft_time_limit=30.0)
    assert message_problem(message(headers, body)) is None


def test_a_plain_celery_call_passes() -> None:
    headers, body = celery_message(args=(1,), kwargs={"key": "k"}, countdown=5, expires=60, retries=2)
    assert message_problem(message(headers, body)) is None


@pytest.mark.parametrize(("override", "named"), [
    ({"timelimit": ["x", "y"]}, "timelimit"),
    ({"timelimit": [float("nan"), None]}, "timelimit"),
    ({"timelimit": [1, 2, 3]}, "timelimit"),
    ({"retries": "many"}, "retries"),
    ({"retries": -1}, "retries"),
    ({"id": ["a"]}, "id"),
    ({"id": "x" * 256}, "id"),
    ({"id": "a\x00b"}, "id"),
    ({"task": ["test.record"]}, "task name"),
    ({"shadow": 5}, "shadow"),
    ({"root_id": {}}, "root_id"),
    ({"stamped_headers": "abc"}, "stamped_headers"),
    ({"stamps": []}, "stamps"),
    ({"eta": "not-a-date"}, "eta"),
    ({"eta": 12}, "eta"),
    ({"eta": "9999-12-31T23:59:59+00:00"}, "eta"),
    ({"expires": "0001-01-01T00:00:00"}, "expires"),
])
def test_a_bad_header_is_named(override: dict[str, Any], named: str) -> None:
    headers, body = celery_message(kwargs={"key": "k"})
    problem = message_problem(message({**headers, **override}, body))
    assert problem is not None and named in problem


@pytest.mark.parametrize(("body", "named"), [
    ("a string", "[args, kwargs, embed]"),
    ([[], {}], "[args, kwargs, embed]"),
    (["abc", {}, None], "args"),
    ([[], [1], None], "kwargs"),
    ([[], {}, "x"], "embed"),
    ([[], {}, {"errbacks": [{"task": "x"}]}], "errbacks"),
    ([[], {"job_id": "1"}, None], "job_id"),
    ([[], {"job_id": 2**63}, None], "job_id"),
    ([[], {"job_id": -3}, None], "job_id"),
    ([[], {"job_id": False}, None], "job_id"),
])
def test_a_bad_body_is_named(body: Any, named: str) -> None:
    headers, _ = celery_message()
    problem = message_problem(message(headers, json.dumps(body).encode()))
    assert problem is not None and named in problem


def test_protocol_1_fields_are_checked_in_the_body() -> None:
    body = {"task": "test.record", "id": "p1", "args": [], "kwargs": {}, "timelimit": ["x", "y"]}
    assert "timelimit" in (message_problem(message({}, json.dumps(body).encode())) or "")
    body["timelimit"] = [None, None]
    assert message_problem(message({}, json.dumps(body).encode())) is None
    assert "no task name" in (message_problem(message({}, b'[1, 2, 3]')) or "")


def test_undecodable_bodies_raise_what_kombu_raises() -> None:
    headers, _ = celery_message()
    with pytest.raises(DecodeError):
        message_problem(message(headers, b"\xff{"))
    with pytest.raises(ContentDisallowed):
        message_problem(message(headers, b"\x80\x04K\x01.", "application/x-python-serialize"))
