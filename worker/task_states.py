"""How an attempt shows in Celery, and so in Flower: as what it was.

PostgreSQL is the record; the task's own state is what operators watching Flower see, so it
follows the attempt's execution state:

| execution state | Celery task state | what Flower shows |
|---|---|---|
| succeeded | SUCCESS | the result `succeeded` |
| failed, timed out | FAILURE | `AttemptFailed('<error class>: <message> (next attempt at ...)')` |
| discarded, cancelled | FAILURE | `AttemptFailed('Discard: ...')`, `AttemptFailed('Cancelled: ...')` |
| snoozed | RETRY | `Snoozed('snoozed until ...')` |
| (no claim: a duplicate or stale message) | SUCCESS | the result `dropped: ...` |

So a worker's failed count in Flower is the number of its attempts that did not succeed and
were not snoozed, which is what `job_executions` says. The broker message is acknowledged as
before in every case: a task that raises is acknowledged (`task_acks_on_failure_or_timeout`),
and a raised `celery.exceptions.Retry` is acknowledged by the worker without sending anything
(only `Task.retry()` publishes again, and it is never called): the platform's own retry, from
PostgreSQL, is the only one.
"""

from __future__ import annotations

from datetime import datetime

from celery.exceptions import Retry

from shared.models.states import ExecutionState, JobState
from worker.runner import Attempt


class AttemptFailed(Exception):
    """The attempt did not succeed (failed, timed out, discarded or cancelled)."""


class Snoozed(Exception):
    """The attempt asked to run again later, without spending an attempt."""


# Celery logs these at INFO without a traceback: the traceback is in job_executions already.
EXPECTED = (AttemptFailed,)


def report(attempt: Attempt | None) -> str:
    """Return the task's result, or raise what makes Celery show the attempt as it ended."""
    if attempt is None:
        return "dropped: the job was not claimable (a duplicate or stale message)"
    finish = attempt.finish
    if not attempt.recorded:
        raise AttemptFailed("Superseded: the attempt ended after a newer one had taken over; not recorded")
    state = finish.execution_state
    if state == ExecutionState.SUCCEEDED:
        return "succeeded"
    if state == ExecutionState.SNOOZED:
        when = attempt.run_at
        raise Retry(f"snoozed until {_at(when)}", exc=Snoozed(f"snoozed until {_at(when)}"), when=when)
    if state == ExecutionState.CANCELLED:
        raise AttemptFailed(f"Cancelled: {finish.cancel_reason or 'cancelled'}")
    message = f"{finish.error_class or state}: {finish.error_message or state}"
    if finish.job_state == JobState.SCHEDULED and attempt.run_at is not None:
        message += f" (attempt {attempt.job.attempt} of {attempt.job.max_attempts}; next attempt at {_at(attempt.run_at)})"
    raise AttemptFailed(message)


def _at(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when is not None else "later"
