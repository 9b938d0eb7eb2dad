"""Runs the scheduler's services, one thread each, plus the leader election; logs their health
and stops them all on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Sequence

from scheduler.leader import LeaderElection
from scheduler.service import Service

log = logging.getLogger("scheduler")

HEALTH_LOG_SECONDS = 60.0


class Supervisor:
    def __init__(self, services: Sequence[Service], election: LeaderElection) -> None:
        self.services = list(services)
        self.election = election
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn("leader", self.election.run, self.stop)
        for service in self.services:
            self._spawn(service.name, service.run, self.stop, self.election.is_leader)

    def _spawn(self, name: str, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def run_forever(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())
        self.start()
        log.info("scheduler started: %s", ", ".join(s.name for s in self.services))
        while not self.stop.wait(HEALTH_LOG_SECONDS):
            self.log_health()
        self.shutdown()

    def log_health(self) -> None:
        for service in self.services:
            h = service.health
            age = f"{time.time() - h.last_round_at:.1f}s ago" if h.last_round_at else "never"
            log.info(
                "health %s: rounds=%d errors=%d last_round=%s last_error=%s leader=%s",
                service.name, h.rounds, h.errors, age, h.last_error, self.election.is_leader.is_set(),
            )

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        log.info("scheduler stopped")
