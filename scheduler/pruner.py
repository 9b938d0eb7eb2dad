"""The pruner: finished jobs past their queue's retention are deleted, with their executions,
logs and dependency rows (cascade), in small batches: each batch is its own short transaction
and skips rows another transaction holds, so it never blocks workers or the dispatcher for
long. Unfinished jobs are never touched, nor a finished job an unfinished one depends on.
Old worker rows and metric rows are pruned the same way.
"""

from __future__ import annotations

import logging
import threading

from shared.clock import Clock
from shared.db import Database
from shared.settings import Settings
from shared.store import maintenance
from shared.store import queues as queue_store
from scheduler.service import Service

log = logging.getLogger("scheduler.pruner")

# Candidates for settings (see the report): read through getattr so they can move there.
PRUNE_MAX_BATCHES = 200  # per round; a backlog is worked off over several rounds
BEHIND_PAUSE_SECONDS = 1.0  # between rounds while a backlog remains


class Pruner(Service):
    name = "pruner"
    leader_only = True  # several would only compete for the same rows (safely: SKIP LOCKED)

    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        super().__init__()
        self.database = database
        self.clock = clock
        self.interval_seconds = settings.prune_interval_seconds
        self.batch = settings.prune_batch_size
        self.metrics_retention = float(settings.metrics_retention_seconds)
        self.worker_retention = float(settings.worker_retention_seconds)
        self._behind = False
        self.pruned_total = 0

    def tick(self) -> int:
        budget = PRUNE_MAX_BATCHES  # full batches per round: a backlog cannot hold the round forever
        deleted = 0
        with self.database.session() as session:
            queues = queue_store.list_queues(session)
        for queue in queues:
            while budget > 0:
                with self.database.session() as session:
                    count = maintenance.prune_finished_jobs(
                        session, queue.name, queue.retention_seconds, self.batch, self.clock.sql_now()
                    )
                deleted += count
                if count < self.batch:
                    break
                budget -= 1
        with self.database.session() as session:
            maintenance.prune_stopped_workers(session, self.worker_retention, self.batch, self.clock.sql_now())
            maintenance.prune_metrics(session, self.metrics_retention, self.batch, self.clock.sql_now())
        self._behind = budget == 0
        if deleted:
            log.info("pruned %d finished jobs%s", deleted, " (more remain)" if self._behind else "")
        self.pruned_total += deleted
        return deleted

    def wait(self, stop: threading.Event, did: int) -> None:
        stop.wait(BEHIND_PAUSE_SECONDS if self._behind else self.interval_seconds)
