"""The dependency sweep: settles waiting jobs whose parents settled without resolving them
(a parent rescued to `failed`, a crash between a finish and its resolution). Finishing a
parent resolves its dependents at once; this is the safety net, not the main path."""

from __future__ import annotations

import logging

from shared.clock import Clock, sql_now
from shared.db import Database
from shared.store import dependencies as dependency_store
from shared.store import queues as queue_store
from scheduler.service import Service

log = logging.getLogger("scheduler.dependencies")

PAGE = 500


class DependencySweep(Service):
    name = "dependencies"
    leader_only = True
    interval_seconds = 2.0

    def __init__(self, database: Database, clock: Clock) -> None:
        super().__init__()
        self.database = database
        self.clock = clock

    def tick(self) -> int:
        settled, after = 0, 0
        while True:
            with self.database.session() as session:
                page = dependency_store.waiting_page(session, after, PAGE)
                if not page:
                    break
                done = dependency_store.resolve(session, page, sql_now(self.clock))
                if any(state != "cancelled" for _, state in done):
                    queue_store.notify_ready(session)
            settled += len(done)
            after = page[-1]
        if settled:
            log.info("settled %d waiting jobs", settled)
        return settled
