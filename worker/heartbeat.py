"""Each worker process says it is alive, from a thread of its own.

Liveness is per process: a prefork child killed with -9 stops heartbeating while its parent
lives on, and the rescuer then fails over exactly the jobs that child held.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Callable

from shared.db import Database
from shared.errors import PlatformError
from shared.store import jobs as job_store
from shared.store import queues as queue_store

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    # The random part keeps a restarted container that reuses a pid from inheriting the old
    # process's identity (and so its jobs' liveness).
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


CancelSink = Callable[[list[tuple[int, int]]], None]


class Heartbeat:
    """Writes the heartbeat and, in the same round trip's transaction, picks up cancel requests
    for this process's running job (so cancellation costs no extra polling loop)."""

    def __init__(
        self, database: Database, worker_id: str, queues: list[str], interval: float, on_cancel: CancelSink | None = None
    ) -> None:
        self.database = database
        self.worker_id = worker_id
        self.queues = queues
        self.interval = interval
        self.on_cancel = on_cancel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, state: str = "online") -> None:
        with self.database.session() as session:
            queue_store.heartbeat(
                session, self.worker_id, socket.gethostname(), os.getpid(), self.queues, state=state
            )
            requests = job_store.cancel_requests_for_worker(session, self.worker_id) if self.on_cancel else []
        if requests and self.on_cancel is not None:
            self.on_cancel(requests)

    def start(self) -> None:
        self.beat()  # registered before the first claim, so the rescuer never sees an unknown holder
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except PlatformError as exc:
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Say this process is stopping for good: its unfinished jobs are rescued at once."""
        self._stop.set()
        try:
            self.beat(state="stopped")
        except PlatformError as exc:
            log.warning("final heartbeat failed: %s", exc)
