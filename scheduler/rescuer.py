"""The rescuer: jobs running on worker processes that stopped heartbeating are failed over."""

from __future__ import annotations

import logging

from celery import Celery

from shared.clock import Clock, sql_now
from shared.db import Database
from shared.settings import Settings
from shared.store import jobs as job_store
from shared.store import dependencies as dependency_store
from shared.store import queues as queue_store
from scheduler.service import Service

log = logging.getLogger("scheduler.rescuer")


class Rescuer(Service):
    """Fails over jobs of dead worker processes, and ends by force running jobs that ignored a
    cancel request for the grace period (terminating the process that runs them)."""

    name = "rescuer"
    leader_only = True

    def __init__(self, database: Database, settings: Settings, clock: Clock, app: Celery | None = None) -> None:
        super().__init__()
        self.database = database
        self.settings = settings
        self.clock = clock
        self.app = app
        self.interval_seconds = settings.rescue_interval_seconds
        self.rescued_total = 0

    def tick(self) -> int:
        stale = self.settings.worker_stale_after_seconds
        now = sql_now(self.clock)
        with self.database.session() as session:
            queue_store.mark_workers_stopped(session, stale, now)
            rescued = job_store.rescue_orphans(session, stale, now)
            forced = job_store.force_cancel_overdue(session, self.settings.cancel_grace_seconds, now)
            for job_id, _ in [*rescued, *forced]:
                dependency_store.resolve_after(session, job_id, now)
            if rescued or forced:
                queue_store.notify_ready(session)
        self._terminate([task_id for _, task_id in forced if task_id])
        for job_id, execution_state in rescued:
            log.warning("job %s rescued: its execution was %s", job_id, execution_state, extra={"job_id": job_id})
        self.rescued_total += len(rescued)
        return len(rescued) + len(forced)

    def _terminate(self, task_ids: list[str]) -> None:
        # The rows already say cancelled; this only stops the handlers still running.
        if task_ids and self.app is not None:
            log.warning("terminating %d jobs that ignored their cancel request", len(task_ids))
            self.app.control.revoke(task_ids, terminate=True, signal="SIGKILL")
