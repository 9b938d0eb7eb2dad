"""How the dispatcher waits between rounds: on NOTIFY, heard on a LISTEN connection of its own.

The connection goes straight to PostgreSQL when JOBS_LISTEN_DATABASE_URL says so: a
transaction pooler (PgBouncer) in front of it swallows every notification. A burst of
notifications is coalesced into one wake-up. Every JOBS_NOTIFY_PROBE_SECONDS a token is
NOTIFYed through the normal database path and must come back on the listener in time; when it
does not, the dispatcher says so (in /healthz, `jobs_dispatcher_notify_ok` and the log) and
keeps jobs moving by polling.
"""

from __future__ import annotations

import logging
import os
import time

import psycopg
from sqlalchemy.engine import make_url

from shared.db import Database
from shared.errors import PlatformError
from shared.settings import Settings
from shared.store import queues as queue_store
from scheduler.notify_probe import PROBE_PREFIX, NotifyProbe

log = logging.getLogger("scheduler.dispatcher")

CHANNEL = "jobs_ready"


class Wakeup:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.probe = NotifyProbe(settings.notify_probe_seconds, settings.notify_probe_timeout_seconds)
        self._listener: psycopg.Connection | None = None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a wake-up; True when one came (the burst it opened
        is drained, so it counts once). Raises psycopg.Error when the listener fails."""
        self._probe_notify()
        listener = self._listen()
        woke = False
        for note in listener.notifies(timeout=timeout, stop_after=1):
            woke = self._heard(note.payload) or woke
        if woke:  # coalesce a burst of notifications into one round
            for note in listener.notifies(timeout=0.0):
                self._heard(note.payload)
        return woke

    def _heard(self, payload: str) -> bool:
        """Marks the probe seen when this is its token; True when the notification is a wake-up
        (anything but a probe token: other notifiers send an empty payload)."""
        if not payload.startswith(PROBE_PREFIX):
            return True
        self.probe.heard(payload, time.monotonic())
        return False

    def _probe_notify(self) -> None:
        """Judge whether the last token reached the listener in time, and send the next one
        when it is due."""
        now = time.monotonic()
        before = self.probe.ok
        self.probe.judge(now)
        if self.probe.ok is False and before is not False:
            log.warning(
                "dispatcher: NOTIFY does not reach the listener (a probe sent %.0f s ago was never heard); "
                "polling every %.1f s meanwhile. Point JOBS_LISTEN_DATABASE_URL straight at PostgreSQL, not at a "
                "transaction pooler.", self.settings.notify_probe_timeout_seconds, self.settings.dispatch_poll_seconds,
            )
        elif self.probe.ok and before is False:
            log.warning("dispatcher: NOTIFY reaches the listener again")
        if not self.probe.due(now):
            return
        self._listen()  # the token must be sent after LISTEN, or it could not be heard
        token = self.probe.start(now)
        try:
            with self.database.session() as session:
                queue_store.notify_probe(session, token)
        except PlatformError as exc:  # the database is away: the rounds report that
            log.debug("dispatcher: the NOTIFY probe could not be sent: %s", exc)
            self.probe.cancel()

    def _listen(self) -> psycopg.Connection:
        if self._listener is None or self._listener.closed:
            url = self.settings.listen_database_url or self.database.engine.url
            url = make_url(url).set(drivername="postgresql")
            self._listener = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True, application_name=f"jobplatform:{os.getpid()}",
                connect_timeout=10,
            )
            self._listener.execute(f"LISTEN {CHANNEL}")
        return self._listener

    def close(self) -> None:
        self.probe.cancel()  # a token out on a listener now gone could never be heard
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
