"""The rescuer: jobs running on worker processes that stopped heartbeating are failed over."""

from __future__ import annotations

import logging

from shared.clock import Clock, sql_now
from shared.db import Database
from shared.settings import Settings
from shared.store import jobs as job_store
from shared.store import queues as queue_store
from scheduler.service import Service

log = logging.getLogger("scheduler.rescuer")


class Rescuer(Service):
    name = "rescuer"
    leader_only = True

    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        super().__init__()
        self.database = database
        self.settings = settings
        self.clock = clock
        self.interval_seconds = settings.rescue_interval_seconds
        self.rescued_total = 0

    def tick(self) -> int:
        stale = self.settings.worker_stale_after_seconds
        with self.database.session() as session:
            queue_store.mark_workers_stopped(session, stale, sql_now(self.clock))
            rescued = job_store.rescue_orphans(session, stale, sql_now(self.clock))
            if rescued:
                queue_store.notify_ready(session)
        for job_id, execution_state in rescued:
            log.warning("job %s rescued: its execution was %s", job_id, execution_state, extra={"job_id": job_id})
        self.rescued_total += len(rescued)
        return len(rescued)
