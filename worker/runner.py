"""Runs one job: claim, call the handler, record the outcome.

The claim is a compare-and-set in PostgreSQL, so a duplicated or redelivered message finds its
job already running or done and is dropped: the broker can never make a handler run twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from pydantic import ValidationError as PydanticValidationError

from shared.clock import Clock, sql_now
from shared.db import Database
from shared.jobtypes.registry import JobType
from shared.outcomes import Discard, Outcome
from shared.settings import Settings
from shared.models.states import TERMINAL_JOB_STATES
from shared.store import dependencies as dependency_store
from shared.store import jobs as job_store
from shared.store import queues as queue_store
from shared.store.rows import ClaimedJob, Finish
from worker.binding import Handler
from worker.connection import JobConnection
from worker.context import JobContext, JobLogger
from worker.finishing import decide

log = logging.getLogger("worker.jobs")


@dataclass
class Attempt:
    """What a finished attempt reports to observers (metrics, logs)."""

    job: ClaimedJob
    finish: Finish
    recorded: bool


class Observer(Protocol):
    """Told about every claimed job and every finished attempt (metrics, for one)."""

    def claimed(self, job: ClaimedJob) -> None: ...

    def finished(self, attempt: Attempt) -> None: ...


observers: list[Observer] = []


def _notify(call: Callable[[Observer], None]) -> None:
    for observer in observers:
        try:
            call(observer)
        except Exception:  # noqa: BLE001 - an observer must never fail a job
            log.exception("observer %r failed", observer)


class JobRunner:
    def __init__(self, settings: Settings, clock: Clock, database: Database, worker_id: str) -> None:
        self.settings = settings
        self.clock = clock
        self.database = database
        self.worker_id = worker_id
        self.current: JobContext | None = None  # the attempt this process is running, if any
        self.connection = JobConnection(database)

    def apply_cancel_requests(self, requests: list[tuple[int, int]]) -> None:
        """Called from the heartbeat thread: flag the running attempt if it was asked to stop."""
        current = self.current
        if current is not None and (current.job_id, current.attempt) in requests:
            current.request_cancel()

    def run(self, job_type: JobType[Any], handler: Handler, job_id: int, task_id: str | None) -> Attempt | None:
        job = self.connection.run(
            lambda c: job_store.claim_job(c, job_id, job_type.name, self.worker_id, task_id, sql_now(self.clock)),
            on_retry=lambda c: job_store.claim_job(c, job_id, job_type.name, self.worker_id, task_id, sql_now(self.clock))
            or job_store.reclaim_own_job(c, job_id, self.worker_id, task_id),
        )
        if job is None:
            log.info("job %s is not claimable (duplicate or stale message); dropped", job_id, extra={"job_id": job_id})
            return None
        _notify(lambda o: o.claimed(job))
        context = self._context(job, task_id)
        self.current = context
        try:
            ended = self._call(job_type, handler, job, context)
        finally:
            self.current = None
        context.flush_progress()
        finish = decide(
            job, ended, self.clock.now(),
            backoff_base=job_type.backoff_base_seconds or self.settings.backoff_base_seconds,
            backoff_max=job_type.backoff_max_seconds or self.settings.backoff_max_seconds,
            jitter=self.settings.backoff_jitter,
        )
        recorded = self._record(job, finish, context)
        if not recorded:
            log.warning("job %s attempt %s ended after a newer attempt took over", job.id, job.attempt)
        attempt = Attempt(job, finish, recorded)
        _notify(lambda o: o.finished(attempt))
        return attempt

    def _record(self, job: ClaimedJob, finish: Finish, context: JobContext) -> bool:
        """Write the attempt's log lines and its end: one round trip each, in the common case."""
        now = sql_now(self.clock)
        lines = [(line.at, line.level, line.message) for line in context.logger.lines]
        if lines:
            self.connection.run(lambda c: job_store.insert_job_logs(c, job.id, job.attempt, lines))
        recorded, has_dependents = self.connection.run(
            lambda c: job_store.finish_execution(c, job.id, job.attempt, job.execution_id, finish, now)
        )
        if recorded and has_dependents and finish.job_state in TERMINAL_JOB_STATES:
            # Right away; should this process die first, the scheduler's sweep settles them.
            with self.database.session() as session:
                if dependency_store.resolve_after(session, job.id, now):
                    queue_store.notify_ready(session)
        return recorded

    def _call(self, job_type: JobType[Any], handler: Handler, job: ClaimedJob, context: JobContext) -> object:
        try:
            payload = job_type.payload.model_validate(job.payload)
        except PydanticValidationError as exc:
            # Only a plain-SQL insert can get here: enqueue() validates. Retrying cannot help.
            return Discard(f"payload does not match {job_type.payload.__name__}: {exc.errors()[0]['msg']}")
        try:
            return handler(payload, context)
        except Outcome as outcome:
            return outcome
        except Exception as exc:  # noqa: BLE001 - any handler failure is a retryable outcome
            context.logger.exception("job %s attempt %s failed: %s", job.id, job.attempt, exc)
            return exc

    def _context(self, job: ClaimedJob, task_id: str | None) -> JobContext:
        extra = {"job_id": job.id, "task_id": task_id, "job_type": job.type, "queue": job.queue, "attempt": job.attempt}

        def write_progress(fraction: float) -> None:
            self.connection.run(lambda c: job_store.set_progress(c, job.id, job.attempt, fraction))

        return JobContext(
            job_id=job.id, attempt=job.attempt, max_attempts=job.max_attempts, job_type=job.type, queue=job.queue,
            task_id=task_id, metadata=job.metadata, logger=JobLogger(log, extra), _write_progress=write_progress,
        )
