"""The control API: read jobs, retry, cancel, pause and resume queues.

Each function runs in its own transaction unless given a session, and raises a
`PlatformError` subclass naming the problem (unknown job or queue, a state that does not allow
the operation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.clock import Clock, sql_now
from shared.db import Database, get_database
from shared.errors import InvalidTransition, JobNotFound, UnknownQueue
from shared.store import control as control_store
from shared.store import queues as queue_store


@dataclass(frozen=True)
class JobView:
    job: dict[str, Any]
    executions: list[dict[str, Any]]

    @property
    def state(self) -> str:
        return str(self.job["state"])


def get_job(job_id: int, *, database: Database | None = None) -> JobView:
    with (database or get_database()).session() as session:
        job = control_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}", job_id=job_id)
        return JobView(job, control_store.get_executions(session, job_id))


def job_logs(job_id: int, *, limit: int = 1000, database: Database | None = None) -> list[dict[str, Any]]:
    with (database or get_database()).session() as session:
        if control_store.job_state(session, job_id) is None:
            raise JobNotFound(f"no job with id {job_id}", job_id=job_id)
        return control_store.get_job_logs(session, job_id, limit)


def retry_job(job_id: int, *, database: Database | None = None, clock: Clock | None = None) -> None:
    """Queue a failed or cancelled job again, allowing it one more attempt."""
    with (database or get_database()).session() as session:
        if not control_store.retry_job(session, job_id, sql_now(clock)):
            _refuse(session, job_id, "retried", "failed or cancelled")
        queue_store.notify_ready(session)


def cancel_job(job_id: int, reason: str = "cancelled by operator", *, database: Database | None = None, clock: Clock | None = None) -> None:
    """Cancel a job that has not started (waiting, scheduled, queued or dispatched)."""
    with (database or get_database()).session() as session:
        if not control_store.cancel_waiting_job(session, job_id, reason, sql_now(clock)):
            _refuse(session, job_id, "cancelled", "waiting, scheduled, queued or dispatched")


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


def _set_paused(name: str, paused: bool, database: Database | None) -> None:
    with (database or get_database()).session() as session:
        if not queue_store.set_queue_paused(session, name, paused):
            raise UnknownQueue(f"unknown queue {name!r}", field="queue", queue=name)
