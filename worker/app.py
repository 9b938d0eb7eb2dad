"""The Celery worker: `celery -A worker.app:app worker -Q high,default`.

One Celery task per bound job type, named exactly as the job type (stable names that Flower
shows). Engines and heartbeats are created in each pool process after the fork.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from celery import Celery, Task
from celery.signals import celeryd_init, setup_logging, worker_process_init, worker_process_shutdown

from shared.clock import SystemClock
from shared.db import get_database, reset_database
from shared.jobtypes.registry import JobType, load_declarations
from shared.logconfig import configure_logging
from shared.settings import get_settings
from shared.broker import make_celery
from worker.binding import Handler, bound_names, handler_for
from worker.heartbeat import Heartbeat, new_worker_id
from worker.runner import JobRunner

log = logging.getLogger(__name__)

settings = get_settings()
app: Celery = make_celery(settings)
registry = load_declarations(settings.imports)
importlib.import_module("worker.handlers")

_state: dict[str, Any] = {"queues": []}


def _runner() -> JobRunner:
    """This process's runner, started on first use when no pool-init signal came (solo pool)."""
    runner = _state.get("runner")
    if runner is None:
        _start_process()
        runner = _state["runner"]
    return runner


def _start_process() -> None:
    reset_database()
    database = get_database(settings)
    worker_id = new_worker_id()
    heartbeat = Heartbeat(database, worker_id, list(_state["queues"]), settings.heartbeat_seconds)
    heartbeat.start()
    _state.update(runner=JobRunner(settings, SystemClock(), database, worker_id), heartbeat=heartbeat)


def _register(job_type: JobType[Any], handler: Handler) -> None:
    def run(self: Task, job_id: int) -> None:
        _runner().run(job_type, handler, int(job_id), self.request.id)

    app.task(name=job_type.name, bind=True, acks_late=True, ignore_result=True, typing=False)(run)


for _name in bound_names():
    handler = handler_for(_name)
    if _name in registry and handler is not None:
        _register(registry.get(_name), handler)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connected, so Celery leaves the root logger to us: the same format as every process.
    configure_logging(settings)


@celeryd_init.connect
def _remember_queues(options: dict[str, Any] | None = None, **_: Any) -> None:
    queues = (options or {}).get("queues") or []
    _state["queues"] = sorted(queues) if isinstance(queues, (list, set, tuple)) else str(queues).split(",")


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    _start_process()


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    heartbeat = _state.get("heartbeat")
    if heartbeat is not None:
        heartbeat.stop()
