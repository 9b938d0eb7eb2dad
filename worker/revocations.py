"""Flower's (or `celery control revoke`'s) revoke of a job's task cancels the job.

Celery handles revokes in the worker's main process and keeps the ids in `worker.state.revoked`;
a thread there maps every new id of a platform task (`job-<id>-<attempt>`) to the job's
cancellation: a job not yet started is cancelled, a running one is asked to stop (and forced
after the grace period). The main process talks to the database through short-lived
connections only, so nothing it holds is inherited by pool processes forked later.
"""

from __future__ import annotations

import logging
import threading

from shared.broker import job_id_from_task_id
from shared.control import cancel_job
from shared.db import Database, make_database
from shared.errors import PlatformError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class RevocationWatcher:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="revocations", daemon=True).start()

    def _loop(self) -> None:
        from celery.worker import state

        while not self.stop.wait(POLL_SECONDS):
            fresh = [task_id for task_id in list(state.revoked) if task_id not in self.seen]
            for task_id in fresh:
                self.seen.add(task_id)
                job_id = job_id_from_task_id(task_id)
                if job_id is not None:
                    self._cancel(job_id, task_id)

    def _cancel(self, job_id: int, task_id: str) -> None:
        database = self._database()
        try:
            outcome = cancel_job(job_id, f"task {task_id} revoked", database=database)
            log.warning("job %s %s after its task was revoked", job_id, outcome, extra={"job_id": job_id})
        except PlatformError as exc:
            log.info("revoke of %s: job %s not cancelled: %s", task_id, job_id, exc)
        finally:
            database.dispose()

    def _database(self) -> Database:
        return make_database(self.database_url, pooled=False)
