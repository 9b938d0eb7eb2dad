"""Runs one job: claim, call the handler, record the outcome.

The claim is a compare-and-set in PostgreSQL, so a duplicated or redelivered message finds its
job already running or done and is dropped: the broker can never make a handler run twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

from pydantic import ValidationError as PydanticValidationError

from shared.clock import Clock
from shared.db import Database
from shared.inputs import payload_problems
from shared.errors import PlatformError
from shared.jobtypes.registry import JobType
from shared.outcomes import Discard, Outcome
from shared.settings import Settings
from shared.models.states import TERMINAL_JOB_STATES
from shared.store import dependencies as dependency_store
from shared.store import jobs as job_store
from shared.store.rows import ClaimedJob, Finish, FinishWritten
from worker.binding import Handler
from worker.connection import JobConnectionPool
from worker.context import JobContext, JobLogger
from worker.deadlines import AttemptTimedOut, DeadlineWatcher
from worker.finishing import decide
from worker.heartbeat import Holdings

log = logging.getLogger("worker.jobs")

FINISH_RETRY_FIRST_DELAY = 0.05
FINISH_RETRY_MAX_DELAY = 2.0  # short: once the database is back, the end is written within this


@dataclass
class _Writes:
    """What the tries to write one attempt's end have done so far."""

    tries: int = 0
    logs_written: bool = False


def _pause(seconds: float) -> None:
    try:
        time.sleep(seconds)
    except Exception:  # noqa: BLE001 - a soft time limit landing here only shortens the pause
        pass


@dataclass
class Attempt:
    """What a finished attempt reports to observers (metrics, logs); `run_at`: when the job is
    due again (a retry, a snooze) as the store wrote it, when known."""

    job: ClaimedJob
    finish: Finish
    recorded: bool
    run_at: datetime | None = None


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


AttemptKey = tuple[int, int]  # (job id, attempt)


class JobRunner:
    """Runs the attempts of one worker process, one per calling thread: a prefork process calls
    it from one thread, a threads pool process from many at once. All per-attempt state (the
    context with its cancellation flag, progress and log lines) lives in the attempt's own
    JobContext, found by (job id, attempt), never in a per-process "current" slot; the
    statements share a bounded pool of connections (`job_connections`).

    `deadlines`: for pools without Celery's time limits (worker/deadlines.py)."""

    def __init__(
        self, settings: Settings, clock: Clock, database: Database, worker_id: str, *, job_connections: int = 1,
        deadlines: DeadlineWatcher | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.database = database
        self.worker_id = worker_id
        self.connection = JobConnectionPool(database, job_connections)
        self.holdings = Holdings()
        self.deadlines = deadlines
        self._lock = threading.Lock()
        self._running: dict[AttemptKey, JobContext] = {}

    def running(self) -> list[JobContext]:
        """The attempts this process runs now."""
        with self._lock:
            return list(self._running.values())

    def apply_cancel_requests(self, requests: list[tuple[int, int]]) -> None:
        """Called from the heartbeat thread: flag each running attempt that was asked to stop."""
        wanted = set(requests)
        for context in self.running():
            if (context.job_id, context.attempt) in wanted:
                context.request_cancel()

    def run(self, job_type: JobType[Any], handler: Handler, job_id: int, task_id: str | None) -> Attempt | None:
        # Held from before the claim is sent until the end is written or given up: a heartbeat
        # written after the claim then lists the job exactly while this process is on it
        # (worker/heartbeat.py), and the rescuer settles what this process let go.
        self.holdings.add(job_id)
        try:
            return self._run(job_type, handler, job_id, task_id)
        finally:
            self.holdings.discard(job_id)

    def _run(self, job_type: JobType[Any], handler: Handler, job_id: int, task_id: str | None) -> Attempt | None:
        job = self.connection.run(
            lambda c: job_store.claim_job(c, job_id, job_type.name, self.worker_id, task_id, self.clock.sql_now()),
            on_retry=lambda c: job_store.claim_job(c, job_id, job_type.name, self.worker_id, task_id, self.clock.sql_now())
            or job_store.reclaim_own_job(c, job_id, self.worker_id, task_id),
        )
        if job is None:
            log.info("job %s is not claimable (duplicate or stale message); dropped", job_id, extra={"job_id": job_id})
            return None
        _notify(lambda o: o.claimed(job))
        context = self._context(job, task_id)
        key = (job.id, job.attempt)
        with self._lock:
            self._running[key] = context
        if self.deadlines is not None:
            self.deadlines.watch(
                key, job.timeout_seconds or self.settings.default_timeout_seconds, on_soft=context.time_out,
                on_hard=lambda: self._abandon(job_type, job, context),
            )
        try:
            ended = self._call(job_type, handler, job, context)
        finally:
            if self.deadlines is not None:
                self.deadlines.forget(key)
            with self._lock:
                self._running.pop(key, None)
        if not self._take_end(context):
            log.warning("job %s attempt %s returned after its deadline had ended it; result ignored",
                        job.id, job.attempt, extra={"job_id": job.id})
            return None
        return self._end(job_type, job, context, ended)

    def _take_end(self, context: JobContext) -> bool:
        """True for the first caller only: the thread that ran the attempt, or the deadline."""
        with self._lock:
            if context.end_taken:
                return False
            context.end_taken = True
            return True

    def _abandon(self, job_type: JobType[Any], job: ClaimedJob, context: JobContext) -> None:
        """The deadline watcher's last resort: the handler ignored its timeout past the hard
        limit. The attempt is ended timed out here; its thread runs on, abandoned (a Python
        thread cannot be killed), and whatever it returns later is ignored."""
        key = (job.id, job.attempt)
        if not self._take_end(context):
            return
        log.error("job %s attempt %s: handler still running past its hard time limit; ended timed out, thread abandoned",
                  job.id, job.attempt, extra={"job_id": job.id})
        with self._lock:
            self._running.pop(key, None)
        self._end(job_type, job, context, AttemptTimedOut("the handler ran past its hard time limit"))

    def _end(self, job_type: JobType[Any], job: ClaimedJob, context: JobContext, ended: object) -> Attempt | None:
        """Decide and write the attempt's end.

        The writes are retried with backoff while the database is away, for up to
        JOBS_FINISH_RETRY_SECONDS; any exception landing meanwhile (a soft time limit, say)
        only causes another try, so the end of an attempt whose handler ran is not lost. Both
        writes are idempotent, so a try whose reply was lost is harmless. Given up, the
        attempt is left to the rescuer: the job leaves this process's holdings.
        """
        finish: Finish | None = None
        state = _Writes()
        deadline = time.monotonic() + self.settings.finish_retry_seconds
        delay = FINISH_RETRY_FIRST_DELAY
        while True:
            try:
                if finish is None:
                    self._flush_progress(context)
                    finish = decide(
                        job, ended,
                        backoff_base=job_type.backoff_base_seconds or self.settings.backoff_base_seconds,
                        backoff_max=job_type.backoff_max_seconds or self.settings.backoff_max_seconds,
                        jitter=self.settings.backoff_jitter,
                    )
                written = self._record(job, finish, context, state)
                break
            except Exception as exc:  # noqa: BLE001 - the database away, or an exception from a signal
                state.tries += 1
                if time.monotonic() >= deadline:
                    log.error(
                        "job %s attempt %s: its end could not be written (%s); left to the rescuer",
                        job.id, job.attempt, exc, extra={"job_id": job.id},
                    )
                    return None
                log.warning("job %s attempt %s: writing its end failed (%s); retrying in %.2f s",
                            job.id, job.attempt, exc, delay, extra={"job_id": job.id})
                _pause(delay)
                delay = min(delay * 2, FINISH_RETRY_MAX_DELAY)
        if not written.recorded:
            log.warning("job %s attempt %s ended after a newer attempt took over", job.id, job.attempt)
        attempt = Attempt(job, finish, written.recorded, written.run_at)
        _notify(lambda o: o.finished(attempt))
        return attempt

    def _flush_progress(self, context: JobContext) -> None:
        try:
            context.flush_progress()
        except Exception as exc:  # noqa: BLE001 - progress is advisory; the end is what counts
            log.warning("job %s: last progress not written (%s)", context.job_id, exc)

    def _record(self, job: ClaimedJob, finish: Finish, context: JobContext, state: "_Writes") -> FinishWritten:
        """Write the attempt's log lines and its end: one round trip each, in the common case."""
        now = self.clock.sql_now()
        lines = [(line.at, line.level, line.message) for line in context.logger.lines]
        if lines and not state.logs_written:
            self.connection.run(lambda c: job_store.insert_job_logs(c, job.id, job.attempt, lines))
        state.logs_written = True
        written = self.connection.run(
            lambda c: job_store.finish_execution(c, job.id, job.attempt, job.execution_id, finish, now)
        )
        if not written.recorded and state.tries:
            # An earlier try may have gone through with its reply lost: then the execution
            # already says how the attempt ended.
            found = self.connection.run(lambda c: job_store.execution_state(c, job.execution_id))
            ours = found == finish.execution_state
            written = FinishWritten(recorded=ours, has_dependents=ours)
        if written.recorded and written.has_dependents and finish.job_state in TERMINAL_JOB_STATES:
            # Right away; should this fail (or the process die first), the scheduler's sweep
            # settles them.
            try:
                with self.database.session() as session:
                    dependency_store.settle(session, now, ended=[job.id])
            except Exception as exc:  # noqa: BLE001 - see above
                log.warning("job %s: dependents left to the scheduler's sweep (%s)", job.id, exc)
        return written

    def _call(self, job_type: JobType[Any], handler: Handler, job: ClaimedJob, context: JobContext) -> object:
        try:
            payload = job_type.payload.model_validate(job.payload)
        except PydanticValidationError as exc:
            # Only a plain-SQL insert can get here: enqueue() validates. Retrying cannot help.
            return Discard(f"payload for {job_type.name} is invalid: {payload_problems(exc)}")
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
            try:
                self.connection.run(lambda c: job_store.set_progress(c, job.id, job.attempt, fraction))
            except PlatformError as exc:  # advisory: a handler does not fail because the database blinked
                log.warning("job %s: progress not written (%s)", job.id, exc, extra={"job_id": job.id})

        return JobContext(
            job_id=job.id, attempt=job.attempt, max_attempts=job.max_attempts, job_type=job.type, queue=job.queue,
            task_id=task_id, metadata=job.metadata, logger=JobLogger(log, extra),
            database=self.database, settings=self.settings, clock=self.clock, _write_progress=write_progress,
        )
