"""A scheduler process's /healthz, read by a test to wait on the dispatcher's progress.

"Nothing happened" is only proof once the dispatcher had its chance: the test waits until the
dispatcher has completed more full rounds (or broker checks) since its action, then asserts. The
counts are the ones /healthz always shows (`services.dispatcher.rounds`, `broker_checks`): kept
in memory by the scheduler, so the signal costs it nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.db import get_database
from shared.store import queues as queue_store
from tests.process_groups import wait_for
from tests.prometheus import http_get


@dataclass
class SchedulerHealth:
    port: int

    def report(self) -> dict[str, object] | None:
        """The /healthz body (200 or 503 alike), or None while nothing answers yet."""
        try:
            _, body = http_get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except OSError:
            return None
        return json.loads(body)  # type: ignore[no-any-return]

    def dispatcher(self, count: str = "rounds") -> int:
        """One of the dispatcher's counts: `rounds` (full rounds done) or `broker_checks`."""
        report = self.report()
        if report is None:
            raise AssertionError(f"the scheduler's /healthz on port {self.port} does not answer")
        return int(report["services"]["dispatcher"][count])  # type: ignore[index]

    def wait_dispatcher(self, more: int = 2, count: str = "rounds", timeout: float = 30) -> None:
        """Wait until the dispatcher has done `more` of `count` since now. Two rounds: the round
        running at the test's action may have read the rows before it; the next one did not."""
        start = self.dispatcher(count)
        with get_database().session() as session:  # wake an idle dispatcher: no wait for its poll
            queue_store.notify_ready(session)
        wait_for(lambda: self.dispatcher(count) >= start + more, timeout,
                 f"{more} more dispatcher {count} after {start}", on_timeout=self.report)
