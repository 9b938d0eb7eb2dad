"""A scheduler service: one loop doing one kind of work, round after round."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from shared.errors import PlatformError

log = logging.getLogger("scheduler")


@dataclass
class Health:
    rounds: int = 0
    errors: int = 0
    last_round_at: float | None = None
    last_error: str | None = None
    last_result: int = 0


class Service:
    """Subclasses implement `tick()` (one round; returns how much it did) and may override
    `wait()` (how to idle until the next round)."""

    name = "service"
    leader_only = False
    interval_seconds = 1.0

    def __init__(self) -> None:
        self.health = Health()

    def tick(self) -> int:
        raise NotImplementedError

    def wait(self, stop: threading.Event, did: int) -> None:
        stop.wait(self.interval_seconds)

    def run(self, stop: threading.Event, is_leader: threading.Event) -> None:
        while not stop.is_set():
            did = 0
            if is_leader.is_set() or not self.leader_only:
                did = self._round()
            self.wait(stop, did)
        self.close()

    def _round(self) -> int:
        try:
            did = self.tick()
        except PlatformError as exc:  # the database or broker is away: log, back off, go on
            self._failed(exc)
            return 0
        except Exception as exc:  # noqa: BLE001 - a bug in one service must not stop the others
            log.exception("%s: round failed", self.name)
            self._failed(exc)
            return 0
        self.health.rounds += 1
        self.health.last_round_at = time.time()
        self.health.last_result = did
        return did

    def _failed(self, exc: Exception) -> None:
        self.health.errors += 1
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s", self.name, self.health.last_error)

    def details(self) -> dict[str, object]:
        """What else `/healthz` shows about this service (the dispatcher: whether NOTIFY arrives)."""
        return {}

    def close(self) -> None:
        """Release what the service holds (connections) when it stops."""
