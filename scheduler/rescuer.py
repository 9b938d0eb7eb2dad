"""The rescuer: running jobs that no live worker process runs are failed over.

Two rules (see `rescue_orphans` in shared/store/queries.sql): the process stopped heartbeating
(killed, crashed, hard time limit: a crash of the job, and at JOBS_POISON_AFTER_CRASHES the job
fails as poison), or the process lives but its heartbeat, written after the claim, no longer
lists the job (it gave the attempt up). Rescued attempts are retried after the job type's
backoff, computed in SQL with worker/finishing.py's formula from the declared bases (the
registry's per-type overrides are passed in; types this process does not declare get the
settings' defaults). A round fails over at most JOBS_RESCUE_BATCH_SIZE jobs and forces at most
as many overdue cancellations, settling their dependents in the same transaction; a full batch
starts the next round at once.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

from shared.clock import Clock
from shared.db import Database
from shared.jobtypes.registry import Registry
from shared.settings import Settings
from shared.store import jobs as job_store
from shared.store.jobs import RescuePolicy
from shared.store import dependencies as dependency_store
from shared.store import queues as queue_store
from scheduler.service import Service

log = logging.getLogger("scheduler.rescuer")


class Rescuer(Service):
    """Fails over jobs of dead worker processes, and ends by force running jobs that ignored a
    cancel request for the grace period (terminating the process that runs them)."""

    name = "rescuer"
    leader_only = True

    def __init__(
        self, database: Database, settings: Settings, clock: Clock, app: Celery | None = None,
        registry: Registry | None = None,
    ) -> None:
        super().__init__()
        self.database = database
        self.settings = settings
        self.clock = clock
        self.app = app
        self.interval_seconds = settings.rescue_interval_seconds
        self.rescued_total = 0
        self.poisoned_total = 0
        self.policy = rescue_policy(settings, registry)
        self._batch_full = False

    def tick(self) -> int:
        stale, batch = self.settings.worker_stale_after_seconds, self.settings.rescue_batch_size
        now = self.clock.sql_now()
        with self.database.session() as session:
            queue_store.mark_workers_stopped(session, stale, now)
            rescued = job_store.rescue_orphans(session, stale, self.policy, batch, now)
            forced = job_store.force_cancel_overdue(session, self.settings.cancel_grace_seconds, batch, now)
            dependency_store.settle(session, now, ended=[r.job_id for r in rescued] + [job_id for job_id, _ in forced])
            if rescued or forced:
                queue_store.notify_ready(session)  # running slots were freed: limits and windows have room
        self._terminate([task_id for _, task_id in forced if task_id])
        for r in rescued:
            log.warning("job %s rescued: its execution was %s (%s)", r.job_id, r.execution_state, r.error_class,
                        extra={"job_id": r.job_id})
        self.rescued_total += len(rescued)
        self.poisoned_total += sum(1 for r in rescued if r.error_class == "Poison")
        self._batch_full = len(rescued) >= batch or len(forced) >= batch
        return len(rescued) + len(forced)

    def wait(self, stop: threading.Event, did: int) -> None:
        # A full batch: more may be waiting, so the next round starts at once.
        stop.wait(0 if self._batch_full else self.interval_seconds)

    def _terminate(self, task_ids: list[str]) -> None:
        # The rows already say cancelled; this only stops the handlers still running.
        if task_ids and self.app is not None:
            log.warning("terminating %d jobs that ignored their cancel request", len(task_ids))
            self.app.control.revoke(task_ids, terminate=True, signal="SIGKILL")


def rescue_policy(settings: Settings, registry: Registry | None) -> RescuePolicy:
    """The settings' backoff, with the per-type bases the registry declares."""
    per_type: dict[str, tuple[float, float]] = {}
    for job_type in registry.all() if registry is not None else []:
        if job_type.backoff_base_seconds or job_type.backoff_max_seconds:
            per_type[job_type.name] = (
                job_type.backoff_base_seconds or settings.backoff_base_seconds,
                job_type.backoff_max_seconds or settings.backoff_max_seconds,
            )
    return RescuePolicy(
        backoff_base=settings.backoff_base_seconds, backoff_max=settings.backoff_max_seconds,
        jitter=settings.backoff_jitter, poison_after=settings.poison_after_crashes, per_type=per_type,
    )
