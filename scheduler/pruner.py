"""The pruner: finished jobs past their queue's retention are deleted, with their executions,
logs and dependency rows (cascade), in small batches: each batch is its own short transaction
and skips rows another transaction holds, so it never blocks workers or the dispatcher for
long. Unfinished jobs are never touched, nor a finished job an unfinished one depends on.
Proxy check records (`proxy_health_logs`, finished `proxy_sweeps`) past
JOBS_PROXY_LOG_RETENTION_SECONDS, old worker rows and metric rows are pruned the same way.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import Session

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
        self.proxy_log_retention = float(settings.proxy_log_retention_seconds)
        self._behind = False
        self._budget = PRUNE_MAX_BATCHES
        self.pruned_total = 0
        self.pruned_proxy_logs_total = 0

    def tick(self) -> int:
        self._budget = PRUNE_MAX_BATCHES  # full batches per round: a backlog cannot hold the round forever
        deleted = 0
        with self.database.session() as session:
            queues = queue_store.list_queues(session)
        for queue in queues:
            deleted += self._batches(lambda session, now, q=queue: maintenance.prune_finished_jobs(
                session, q.name, q.retention_seconds, self.batch, now))
        logs = self._batches(lambda session, now: maintenance.prune_proxy_logs(
            session, self.proxy_log_retention, self.batch, now))
        with self.database.session() as session:
            maintenance.prune_stopped_workers(session, self.worker_retention, self.batch, self.clock.sql_now())
            maintenance.prune_metrics(session, self.metrics_retention, self.batch, self.clock.sql_now())
        self._behind = self._budget == 0
        if deleted or logs:
            log.info("pruned %d finished jobs and %d proxy check records%s", deleted, logs,
                     " (more remain)" if self._behind else "")
        self.pruned_total += deleted
        self.pruned_proxy_logs_total += logs
        return deleted + logs

    def _batches(self, step: Callable[[Session, datetime | None], int]) -> int:
        """Run one pruning step, a batch per transaction, until a batch comes back short or the
        round's budget of full batches is spent."""
        deleted = 0
        while self._budget > 0:
            with self.database.session() as session:
                count = step(session, self.clock.sql_now())
            deleted += count
            if count < self.batch:
                break
            self._budget -= 1
        return deleted

    def wait(self, stop: threading.Event, did: int) -> None:
        stop.wait(BEHIND_PAUSE_SECONDS if self._behind else self.interval_seconds)
