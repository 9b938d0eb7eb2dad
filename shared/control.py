"""The control API: read jobs, retry, cancel, pause and resume queues.

Each function runs in its own transaction, and raises a `PlatformError` subclass naming the
problem (unknown job or queue, a state that does not allow the operation). Every argument
passes the gate (`shared.inputs`) before any SQL: a bool or str id, a queue name that cannot
exist or a limit out of range is an `InputInvalid` / `UnknownQueue` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import inputs
from shared.clock import Clock, SystemClock
from shared.db import Database, get_database
from shared.errors import InputInvalid, InvalidTransition, JobNotFound, UnknownQueue
from shared.store import control as control_store
from shared.store import dependencies as dependency_store
from shared.store import jobs as job_store
from shared.store import limits as limit_store
from shared.store import queues as queue_store


@dataclass(frozen=True)
class JobView:
    job: dict[str, Any]
    executions: list[dict[str, Any]]

    @property
    def state(self) -> str:
        return str(self.job["state"])


def get_job(job_id: int, *, database: Database | None = None) -> JobView:
    job_id = inputs.job_id(job_id)
    with (database or get_database()).session() as session:
        job = control_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}", job_id=job_id)
        return JobView(job, control_store.get_executions(session, job_id))


def job_logs(job_id: int, *, limit: int = 1000, database: Database | None = None) -> list[dict[str, Any]]:
    job_id = inputs.job_id(job_id)
    limit = inputs.integer(limit, "limit", 1, inputs.LOG_LIMIT_MAX)
    with (database or get_database()).session() as session:
        if control_store.job_state(session, job_id) is None:
            raise JobNotFound(f"no job with id {job_id}", job_id=job_id)
        return control_store.get_job_logs(session, job_id, limit)


def retry_job(job_id: int, *, database: Database | None = None, clock: Clock | None = None) -> None:
    """Queue a failed or cancelled job again, allowing it one more attempt."""
    job_id = inputs.job_id(job_id)
    with (database or get_database()).session() as session:
        if not control_store.retry_job(session, job_id, (clock or SystemClock()).sql_now()):
            _refuse(session, job_id, "retried", "failed or cancelled")
        queue_store.notify_ready(session)


def cancel_job(job_id: int, reason: str = "cancelled by operator", *, database: Database | None = None, clock: Clock | None = None) -> str:
    """Cancel a job. One not yet started ends `cancelled` at once (its dependents with it) and
    this returns "cancelled". A running one is asked to stop: its handler sees
    `ctx.cancelled` / `ctx.checkpoint()` within a heartbeat, and past the grace period the
    scheduler ends it by force; this returns "cancelling". The reason is cleaned to storable
    text (NUL dropped, lone surrogates replaced) and cut to 1,000 characters."""
    job_id = inputs.job_id(job_id)
    reason = inputs.reason(reason)
    now = (clock or SystemClock()).sql_now()
    with (database or get_database()).session() as session:
        if control_store.cancel_waiting_job(session, job_id, reason, now):
            dependency_store.settle(session, now, ended=[job_id])
            return "cancelled"
        if job_store.request_cancel_running(session, job_id, reason, now):
            return "cancelling"
        _refuse(session, job_id, "cancelled", "not yet finished")
        raise AssertionError("unreachable")


def _refuse(session: Any, job_id: int, verb: str, allowed: str) -> None:
    state = control_store.job_state(session, job_id)
    if state is None:
        raise JobNotFound(f"no job with id {job_id}", job_id=job_id)
    raise InvalidTransition(f"job {job_id} is {state}; only a {allowed} job can be {verb}", job_id=job_id, state=state)


def pause_queue(name: str, *, database: Database | None = None) -> None:
    """No job of the queue starts until it is resumed (jobs already running finish)."""
    _set_paused(name, True, database)


def resume_queue(name: str, *, database: Database | None = None) -> None:
    _set_paused(name, False, database)


def set_queue_limits(
    name: str, *, concurrency: int | None = None, rate: tuple[int, float] | None = None, window: int | None = None,
    database: Database | None = None,
) -> None:
    """Set (or, with None, lift) a queue's global limits: at most `concurrency` jobs dispatched
    or running at once, at most `rate` = (N, per seconds) starts in any sliding window."""
    name = inputs.queue_name(name)
    if concurrency is not None:
        concurrency = inputs.integer(concurrency, "concurrency", 1, inputs.LIMIT_MAX)
    if rate is not None:
        rate = _rate(rate)
    if window is not None:
        window = inputs.integer(window, "window", 1, inputs.LIMIT_MAX)
    with (database or get_database()).session() as session:
        found = limit_store.set_queue_limits(
            session, name, concurrency=concurrency, rate_limit=rate[0] if rate else None,
            rate_period=rate[1] if rate else None, window=window,
        )
        if not found:
            raise UnknownQueue(f"unknown queue {name!r}", field="queue", queue=name)
        queue_store.notify_ready(session)


def _rate(rate: Any) -> tuple[int, float]:
    """(starts >= 1, per seconds > 0), both bounded."""
    if not isinstance(rate, (tuple, list)) or len(rate) != 2:
        raise InputInvalid(f"rate: must be (starts, per seconds); got {inputs.show(rate)}", field="rate")
    starts = inputs.integer(rate[0], "rate", 1, inputs.LIMIT_MAX)
    period = inputs.seconds(rate[1], "rate", 0, inputs.RATE_PERIOD_MAX_SECONDS)
    if period <= 0:
        raise InputInvalid("rate: the period must be more than 0 seconds", field="rate")
    return starts, period


def _set_paused(name: str, paused: bool, database: Database | None) -> None:
    name = inputs.queue_name(name)
    with (database or get_database()).session() as session:
        if not queue_store.set_queue_paused(session, name, paused):
            raise UnknownQueue(f"unknown queue {name!r}", field="queue", queue=name)
