"""Flower shows each attempt as what it was: a job that fails twice and then succeeds, one that
is discarded and one that snoozes, read back through Flower's own API with credentials; the
workers' failed count equals the attempts PostgreSQL records as not succeeded."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from shared.broker import job_id_from_task_id
from shared.enqueue import enqueue_now
from tests.acceptance.test_operations import flower_process, http_get, states, terminal  # noqa: F401 - a fixture
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance

CELERY_STATE = {
    "succeeded": "SUCCESS", "failed": "FAILURE", "timed_out": "FAILURE", "discarded": "FAILURE",
    "cancelled": "FAILURE", "snoozed": "RETRY",
}
NOT_SUCCEEDED = ("failed", "timed_out", "discarded", "cancelled")


def _attempts(db, ids: list[int]) -> dict[str, str]:
    """task id -> the Celery state each recorded attempt should show."""
    with db.session() as session:
        rows = session.execute(
            text("SELECT task_id, state FROM job_executions WHERE job_id = ANY(:ids)"), {"ids": ids}
        ).all()
    return {task_id: CELERY_STATE[state] for task_id, state in rows}


def test_flower_shows_failures_retries_and_discards_as_they_were(db, processes, flower_process):
    port, credentials = flower_process
    base = f"http://127.0.0.1:{port}"
    processes.worker(env={"JOBS_WORKER_METRICS_PORT": "0"})
    ids = [
        enqueue_now("test.flaky", {"key": "twice", "fail_times": 2}).id,
        enqueue_now("test.outcome", {"key": "discard", "kind": "discard"}).id,
        enqueue_now("test.outcome", {"key": "snooze", "kind": "snooze", "after": 0.2}).id,
    ]
    processes.scheduler(env={"JOBS_SCHEDULER_METRICS_PORT": "0"})
    wait_for(lambda: terminal(db, ids), 60, f"the three jobs end, have {states(db)}")
    expected = _attempts(db, ids)
    assert sorted(expected.values()) == ["FAILURE", "FAILURE", "FAILURE", "RETRY", "SUCCESS", "SUCCESS"], expected

    def shown() -> dict[str, str]:
        status, body = http_get(base + "/api/tasks", auth=credentials)
        assert status == 200, body
        return {task_id: task["state"] for task_id, task in json.loads(body).items()
                if job_id_from_task_id(task_id) in ids}

    wait_for(lambda: shown() == expected, 30, f"Flower shows every attempt as it ended: {expected}",
             on_timeout=lambda: f"Flower: {shown()}")

    status, body = http_get(base + "/api/tasks", auth=credentials)
    tasks = json.loads(body)
    failed = [t for task_id, t in tasks.items() if task_id in expected and t["state"] == "FAILURE"]
    assert any("RuntimeError: flaky failure 1 of 2" in (t["exception"] or "") for t in failed), failed
    assert any("next attempt at" in (t["exception"] or "") for t in failed), failed
    assert any("Discard: asked to discard" in (t["exception"] or "") for t in failed), failed

    with db.session() as session:
        not_succeeded = int(session.execute(
            text("SELECT count(*) FROM job_executions WHERE state = ANY(:s)"), {"s": list(NOT_SUCCEEDED)}
        ).scalar_one())

    def failed_count() -> int:
        status, body = http_get(base + "/workers?json=1", auth=credentials)
        assert status == 200, body
        return sum(worker.get("task-failed", 0) for worker in json.loads(body)["data"])

    wait_for(lambda: failed_count() == not_succeeded, 30, f"the workers' failed count is {not_succeeded}",
             on_timeout=lambda: f"Flower says {failed_count()}")
