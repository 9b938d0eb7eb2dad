"""From how a handler ended to what the store records: a pure decision, easy to test.

A retry, a backoff or a snooze is decided here as a duration (`Finish.delay`); the store adds it
to the database's now (or an injected clock's) in SQL, so no host clock ever sets a `run_at`."""

from __future__ import annotations

import random
import traceback as tb
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded

from shared.models.states import ExecutionState, JobState
from shared.outside_text import clean
from shared.outcomes import Cancel, Discard, Retry, Snooze
from shared.store.rows import ClaimedJob, Finish

MAX_ERROR_MESSAGE = 2000
MAX_TRACEBACK = 20000


def backoff_seconds(attempt: int, base: float, maximum: float, jitter: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, spread by +/- jitter."""
    delay = min(maximum, base * (2 ** max(0, attempt - 1)))
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, delay * (1 + spread))


def decide(
    job: ClaimedJob,
    ended: object,
    *,
    backoff_base: float,
    backoff_max: float,
    jitter: float,
) -> Finish:
    """`ended` is the handler's return value, or the exception it raised."""
    if isinstance(ended, Snooze):
        return Finish(JobState.SCHEDULED, ExecutionState.SNOOZED, delay=timedelta(seconds=ended.after), extra_attempts=1)
    if isinstance(ended, Cancel):
        return Finish(JobState.CANCELLED, ExecutionState.CANCELLED, cancel_reason=_clip(ended.reason, MAX_ERROR_MESSAGE))
    if isinstance(ended, Discard):
        return Finish(
            JobState.FAILED, ExecutionState.DISCARDED, error_class="Discard", error_message=_clip(ended.reason, MAX_ERROR_MESSAGE)
        )
    if isinstance(ended, BaseException):
        return _failure(job, ended, backoff_base, backoff_max, jitter)
    return Finish(JobState.SUCCEEDED, ExecutionState.SUCCEEDED)


def _failure(job: ClaimedJob, error: BaseException, base: float, maximum: float, jitter: float) -> Finish:
    timed_out = isinstance(error, SoftTimeLimitExceeded)
    execution_state = ExecutionState.TIMED_OUT if timed_out else ExecutionState.FAILED
    message = _clip(error, MAX_ERROR_MESSAGE)
    if timed_out:
        message = f"timed out after {job.timeout_seconds or 'the default'} s"
    trace = _clip("".join(tb.format_exception(error)), MAX_TRACEBACK)
    if isinstance(error, Retry):
        delay = error.after
        message = _clip(error.reason, MAX_ERROR_MESSAGE)
    else:
        delay = backoff_seconds(job.attempt, base, maximum, jitter)
    if job.attempt >= job.max_attempts:
        return Finish(JobState.FAILED, execution_state, error_class=type(error).__name__, error_message=message, traceback=trace)
    return Finish(
        JobState.SCHEDULED, execution_state, delay=timedelta(seconds=delay),
        error_class=type(error).__name__, error_message=message, traceback=trace,
    )


def _clip(text: str | BaseException, limit: int) -> str:
    # Exception texts and tracebacks are text from outside (a handler's, a library's, a remote
    # platform's words): NUL and surrogates would make the finish write fail, and the credential
    # shapes the cleaner knows are redacted before the cut.
    return clean(text, limit=limit)
