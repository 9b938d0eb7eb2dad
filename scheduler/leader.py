"""Leader election: a lease row in PostgreSQL, renewed well before it expires.

A lease (not a session advisory lock) survives PgBouncer's transaction pooling, and a leader
that dies simply stops renewing: a follower takes over once the TTL has passed.
"""

from __future__ import annotations

import logging
import threading

from shared.clock import Clock
from shared.db import Database
from shared.store import leases

log = logging.getLogger("scheduler.leader")

LEASE_NAME = "scheduler"


class LeaderElection:
    def __init__(self, database: Database, holder: str, clock: Clock, ttl_seconds: float = 6.0) -> None:
        self.database = database
        self.holder = holder
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self.is_leader = threading.Event()

    def renew(self) -> bool:
        try:
            with self.database.session() as session:
                held = leases.hold_lease(session, LEASE_NAME, self.holder, self.ttl_seconds, self.clock.sql_now())
        except Exception as exc:  # noqa: BLE001 - cannot prove we hold it: act as a follower
            log.warning("lease renewal failed: %s", exc)
            held = False
        if held != self.is_leader.is_set():
            log.info("%s is now %s", self.holder, "the leader" if held else "a follower")
        (self.is_leader.set if held else self.is_leader.clear)()
        return held

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.renew()
            stop.wait(self.ttl_seconds / 3)
        self.release()

    def release(self) -> None:
        if self.is_leader.is_set():
            self.is_leader.clear()
            try:
                with self.database.session() as session:
                    leases.release_lease(session, LEASE_NAME, self.holder)
            except Exception as exc:  # noqa: BLE001
                log.warning("lease release failed: %s", exc)
