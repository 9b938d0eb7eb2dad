"""Which dispatched jobs the broker lost (a FLUSHALL, a Redis restart without persistence).

Redis only: a RabbitMQ queue cannot be listed, so there the redispatch timeout alone applies.
The jobs dispatched for longer than VANISHED_GRACE_SECONDS (their message must be in the broker
by then) are compared with the ids the broker holds, in its queues' lists and in its unacked
hash. A job missing at two checks in a row is confirmed lost: a message between a worker's
BRPOP and its unacked entry is missing for an instant, never for two checks. A job is confirmed
at most once per redispatch timeout, so a message a worker keeps dropping (a type it does not
run) is not sent again every few seconds.
"""

from __future__ import annotations

import time

from celery import Celery

from shared.broker import publisher
from shared.jobtypes.registry import io_lane
from shared.settings import Settings

VANISHED_GRACE_SECONDS = 1.0


class VanishedMessages:
    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._suspects: set[int] = set()  # missing from the broker at the last check
        self._resent: dict[int, float] = {}  # job id -> monotonic time it was confirmed lost

    def confirmed(self, candidates: list[tuple[int, str]]) -> list[int]:
        """Of the (job id, queue) pairs dispatched a while ago, those whose messages the broker
        no longer holds, for the second check in a row. Raises BrokerError."""
        if not candidates:
            self._suspects = set()
            return []
        # A job's message sits in its queue's list, or in the queue's IO lane for an IO-bound type.
        lanes = {lane for _, queue in candidates for lane in (queue, io_lane(queue))}
        held = publisher(self.app, self.settings).held_job_ids(lanes)
        cutoff = time.monotonic() - self.settings.redispatch_after_seconds
        self._resent = {i: t for i, t in self._resent.items() if t > cutoff}
        missing = {i for i, _ in candidates if i not in held and i not in self._resent}
        confirmed = sorted(missing & self._suspects)
        self._suspects = missing - set(confirmed)
        return confirmed

    def resent(self, job_ids: list[int]) -> None:
        stamp = time.monotonic()
        self._resent.update((i, stamp) for i in job_ids)
