"""How an attempt's end becomes a recorded outcome: pure decisions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from celery.exceptions import SoftTimeLimitExceeded

from shared.outcomes import Cancel, Discard, Retry, Snooze
from shared.store.rows import ClaimedJob
from worker.finishing import backoff_seconds, decide

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job(attempt: int = 1, max_attempts: int = 3) -> ClaimedJob:
    return ClaimedJob(
        id=1, type="t.t", queue="default", priority=5, payload={}, metadata={}, attempt=attempt,
        max_attempts=max_attempts, timeout_seconds=2.0, created_at=NOW, run_at=NOW, dispatched_at=NOW,
        started_at=NOW, execution_id=1,
    )


def decide_now(j: ClaimedJob, ended: object):  # type: ignore[no-untyped-def]
    return decide(j, ended, backoff_base=1.0, backoff_max=60.0, jitter=0.0)


def test_backoff_doubles_and_caps():
    assert [backoff_seconds(a, 1.0, 10.0, 0.0) for a in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_jitter_stays_within_its_spread():
    rng = random.Random(7)
    delays = [backoff_seconds(3, 1.0, 100.0, 0.1, rng) for _ in range(200)]
    assert min(delays) >= 3.6 and max(delays) <= 4.4 and len(set(delays)) > 100


def test_success():
    assert (decide_now(job(), None).job_state, decide_now(job(), None).execution_state) == ("succeeded", "succeeded")


def test_exception_retries_with_backoff_then_fails():
    retry = decide_now(job(attempt=2), RuntimeError("down"))
    # A duration: the store adds it to the database's now (tests/integration/test_clock.py).
    assert (retry.job_state, retry.execution_state, retry.delay) == ("scheduled", "failed", timedelta(seconds=2))
    assert retry.error_class == "RuntimeError" and retry.error_message == "down" and "RuntimeError: down" in retry.traceback
    final = decide_now(job(attempt=3), RuntimeError("down"))
    assert (final.job_state, final.delay) == ("failed", None)


def test_explicit_outcomes():
    assert decide_now(job(), Retry(30, "later")).delay == timedelta(seconds=30)
    snooze = decide_now(job(), Snooze(5))
    assert (snooze.job_state, snooze.execution_state, snooze.extra_attempts) == ("scheduled", "snoozed", 1)
    assert snooze.delay == timedelta(seconds=5)
    assert (decide_now(job(), Cancel("no")).job_state, decide_now(job(), Cancel("no")).cancel_reason) == ("cancelled", "no")
    discard = decide_now(job(attempt=1), Discard("bad input"))
    assert (discard.job_state, discard.execution_state, discard.error_message) == ("failed", "discarded", "bad input")


def test_soft_time_limit_is_timed_out():
    finish = decide_now(job(), SoftTimeLimitExceeded())
    assert (finish.job_state, finish.execution_state, finish.error_message) == ("scheduled", "timed_out", "timed out after 2.0 s")


def test_huge_error_messages_are_clipped():
    assert len(decide_now(job(), RuntimeError("x" * 10_000)).error_message) == 2000
