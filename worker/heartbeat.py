"""Each worker process says it is alive, and which jobs it holds, from a thread of its own.

Liveness is per process: a prefork child killed with -9 stops heartbeating while its parent
lives on, and the rescuer then fails over exactly the jobs that child held.

Holdings cover the other case: a live process that could not write an attempt's end (the
database was away past JOBS_FINISH_RETRY_SECONDS, or a claim whose reply was lost) lets the job
go, and its next heartbeat no longer lists it. A job is registered *before* its claim is sent
and the heartbeat fixes its transaction time *before* reading the holdings, so a heartbeat
written after a job's claim (`last_heartbeat_at > started_at`) always lists a job still held.
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


class Holdings:
    """The job ids this process holds, shared by the runner (thread-safe: a thread pool runs
    many jobs at once) and read by the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # job id -> how many runs of this process hold it

    def add(self, job_id: int) -> None:
        with self._lock:
            self._held[job_id] = self._held.get(job_id, 0) + 1

    def discard(self, job_id: int) -> None:
        with self._lock:
            left = self._held.get(job_id, 0) - 1
            if left > 0:
                self._held[job_id] = left
            else:
                self._held.pop(job_id, None)

    def snapshot(self) -> list[int]:
        with self._lock:
            return sorted(self._held)


class Heartbeat:
    """Writes the heartbeat and, in the same round trip's transaction, picks up cancel requests
    for this process's running job (so cancellation costs no extra polling loop)."""

    def __init__(
        self, database: Database, worker_id: str, queues: list[str], interval: float, on_cancel: CancelSink | None = None,
        holdings: Holdings | None = None,
    ) -> None:
        self.database = database
        self.worker_id = worker_id
        self.queues = queues
        self.interval = interval
        self.on_cancel = on_cancel
        self.holdings = holdings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, state: str = "online") -> None:
        with self.database.session() as session:
            queue_store.heartbeat_clock(session)  # first: see the module's docstring
            holding = self.holdings.snapshot() if self.holdings is not None else None
            queue_store.heartbeat(
                session, self.worker_id, socket.gethostname(), os.getpid(), self.queues, state=state, holding=holding
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
            except Exception:  # noqa: BLE001 - a dead heartbeat thread would get live jobs rescued
                log.exception("heartbeat failed")

    def stop(self) -> None:
        """Say this process is stopping for good: its unfinished jobs are rescued at once."""
        self._stop.set()
        try:
            self.beat(state="stopped")
        except PlatformError as exc:
            log.warning("final heartbeat failed: %s", exc)
