"""The dependency sweep: settles waiting jobs whose parents ended without settling them (the
database lost, or the process killed, between a finish and its settling). Every end of a
parent (a finish, a rescue, a cancel) settles its dependents at once through the same store
function (`shared.store.dependencies.settle`); this is the safety net, not the main path."""

from __future__ import annotations

import logging

from shared.clock import Clock
from shared.db import Database
from shared.store import dependencies as dependency_store
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
                done = dependency_store.settle(session, self.clock.sql_now(), waiting=page)
            settled += len(done)
            after = page[-1]
        if settled:
            log.info("settled %d waiting jobs", settled)
        return settled
