"""Worker metrics: which counter an attempt adds to and the observer's accounting. The multiprocess
files of a process killed with -9 (real processes writing real files, the exposition checked by
promtool) are in tests/acceptance/test_prometheus_tools.py."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.models.states import ExecutionState, JobState
from shared.store.rows import ClaimedJob, Finish
from worker import metrics
from worker.runner import Attempt

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def claimed(job_id: int = 1, queue: str = "unit", job_type: str = "unit.job", **times: datetime) -> ClaimedJob:
    values: dict[str, Any] = {
        "id": job_id, "type": job_type, "queue": queue, "priority": 5, "payload": {}, "metadata": {}, "attempt": 1,
        "max_attempts": 3, "timeout_seconds": None, "created_at": T0, "run_at": T0, "dispatched_at": T0,
        "started_at": T0 + timedelta(seconds=2), "execution_id": 1, **times,
    }
    return ClaimedJob(**{f.name: values.get(f.name) for f in dataclasses.fields(ClaimedJob)})


def sample(metric: Any, name: str, **labels: str) -> float:
    for family in metric.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


@pytest.mark.parametrize("job_state, execution_state, recorded, counted", [
    (JobState.SUCCEEDED, ExecutionState.SUCCEEDED, True, "succeeded"),
    (JobState.FAILED, ExecutionState.FAILED, True, "failed"),
    (JobState.FAILED, ExecutionState.DISCARDED, True, "failed"),
    (JobState.SCHEDULED, ExecutionState.FAILED, True, "retried"),
    (JobState.SCHEDULED, ExecutionState.TIMED_OUT, True, "retried"),
    (JobState.SCHEDULED, ExecutionState.SNOOZED, True, None),
    (JobState.CANCELLED, ExecutionState.CANCELLED, True, None),
    (JobState.SUCCEEDED, ExecutionState.SUCCEEDED, False, None),  # too late: the rescuer had moved on
])
def test_outcome_of_an_attempt(job_state, execution_state, recorded, counted):
    assert metrics.outcome_of(Attempt(claimed(), Finish(job_state, execution_state), recorded)) == counted


def test_queue_wait_counts_from_when_the_job_was_due():
    assert metrics.queue_wait_seconds(claimed()) == 2
    later = claimed(run_at=T0 + timedelta(seconds=1.5))  # delayed or retried: due at run_at
    assert metrics.queue_wait_seconds(later) == 0.5
    early = claimed(run_at=T0 - timedelta(hours=1))  # run_at in the past at enqueue: due at enqueue
    assert metrics.queue_wait_seconds(early) == 2
    assert metrics.queue_wait_seconds(claimed(started_at=T0 - timedelta(seconds=1))) == 0


def test_observer_counts_claims_outcomes_and_what_runs():
    observer, labels = metrics.JobMetrics(), {"queue": "obs", "job_type": "unit.observed"}
    job = claimed(7, "obs", "unit.observed")
    observer.claimed(job)
    assert sample(metrics.RUNNING, "jobs_running", **labels) == 1
    observer.finished(Attempt(job, Finish(JobState.SCHEDULED, ExecutionState.FAILED), True))
    observer.claimed(dataclasses.replace(job, attempt=2))
    observer.finished(Attempt(dataclasses.replace(job, attempt=2), Finish(JobState.SUCCEEDED, ExecutionState.SUCCEEDED), True))
    observer.task_ended(7)  # after a recorded finish: nothing more to undo
    assert sample(metrics.RUNNING, "jobs_running", **labels) == 0
    assert sample(metrics.STARTED, "jobs_started_total", **labels) == 2
    assert sample(metrics.RETRIED, "jobs_retried_total", **labels) == 1
    assert sample(metrics.SUCCEEDED, "jobs_succeeded_total", **labels) == 1
    assert sample(metrics.RUN_SECONDS, "jobs_run_seconds_count", **labels) == 2
    assert sample(metrics.QUEUE_WAIT_SECONDS, "jobs_queue_wait_seconds_bucket", le="2.5", **labels) == 2


def test_an_attempt_whose_outcome_was_never_recorded_stops_counting_as_running():
    observer, labels = metrics.JobMetrics(), {"queue": "obs", "job_type": "unit.lost"}
    observer.claimed(claimed(8, "obs", "unit.lost"))
    observer.task_ended(8)  # the task raised before the runner could report a finish
    assert sample(metrics.RUNNING, "jobs_running", **labels) == 0
    assert sample(metrics.FAILED, "jobs_failed_total", **labels) == 0
