"""The deadline watcher of pools without Celery's time limits (worker/deadlines.py)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

import pytest

from shared.clock import FrozenClock
from shared.db import make_database
from shared.models.states import ExecutionState, JobState
from shared.settings import load_settings
from shared.store.rows import ClaimedJob
from worker.context import JobContext, JobLogger
from worker.deadlines import AttemptTimedOut, DeadlineWatcher
from worker.finishing import decide


def _context() -> JobContext:
    # The watcher never touches the database: an engine that is never connected stands in.
    return JobContext(
        job_id=1, attempt=1, max_attempts=1, job_type="test.x", queue="default", task_id=None, metadata={},
        logger=JobLogger(logging.getLogger("t"), {}),
        database=make_database("postgresql+psycopg://unused@127.0.0.1:9/unused", pooled=False),
        settings=load_settings(environ={}), clock=FrozenClock(), _write_progress=lambda _: None,
    )


def test_soft_then_hard_in_order() -> None:
    watcher = DeadlineWatcher()
    calls: list[str] = []
    hard = threading.Event()
    watcher.watch("a", 0.05, on_soft=lambda: calls.append("soft"), on_hard=lambda: (calls.append("hard"), hard.set()))
    assert hard.wait(10)
    assert calls == ["soft", "hard"]


def test_a_forgotten_attempt_is_left_alone() -> None:
    watcher = DeadlineWatcher()
    fired = threading.Event()
    watcher.watch("gone", 0.05, on_soft=fired.set, on_hard=fired.set)
    watcher.forget("gone")
    done = threading.Event()
    watcher.watch("other", 0.05, on_soft=lambda: None, on_hard=done.set)
    assert done.wait(10)  # the other attempt's whole deadline passed, and then some
    assert not fired.is_set()


def test_checkpoint_raises_the_timeout_and_cancelled_turns_true() -> None:
    context = _context()
    context.checkpoint()
    context.time_out()
    assert context.cancelled and context.timed_out
    with pytest.raises(AttemptTimedOut):
        context.checkpoint()


def test_a_timed_out_attempt_is_recorded_timed_out() -> None:
    now = datetime.now(timezone.utc)
    job = ClaimedJob(id=1, type="test.x", queue="default", priority=5, payload={}, metadata={}, attempt=1, max_attempts=2,
                     timeout_seconds=1.0, created_at=now, run_at=now, dispatched_at=now, started_at=now, execution_id=1)
    finish = decide(job, AttemptTimedOut("late"), backoff_base=1, backoff_max=2, jitter=0)
    assert (finish.job_state, finish.execution_state) == (JobState.SCHEDULED, ExecutionState.TIMED_OUT)
    assert finish.error_message == "timed out after 1.0 s"
