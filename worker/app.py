"""The Celery worker: `celery -A worker.app:app worker -Q high,default`.

One Celery task per bound job type, named exactly as the job type (stable names that Flower
shows). Engines and heartbeats are created in each pool process after the fork.

Every worker also consumes Celery's default queue (`celery`), whatever `-Q` says: a service's
own Celery app that calls `send_task(...)` without a queue publishes there, and its call is
adopted as a job (worker/adoption.py) instead of waiting forever in a queue nobody reads. A
message the worker cannot accept is logged and dropped by the consumer (worker/consumer.py).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from celery import Celery, Task
from celery.signals import celeryd_after_setup, celeryd_init, setup_logging, worker_process_init, worker_process_shutdown, worker_ready
from kombu import Exchange, Queue

from shared.broker import make_celery
from shared.cli.exits import one_line_errors
from shared.clock import SystemClock
from shared.db import get_database, reset_database
from shared.jobtypes.registry import JobType, load_declarations
from shared.logconfig import configure_logging
from shared.settings import get_settings
from worker.adoption import adopt
from worker.binding import Handler, bound_names, handler_for
from worker.heartbeat import Heartbeat, new_worker_id
from worker.revocations import RevocationWatcher
from worker.runner import JobRunner
from worker.task_states import EXPECTED, report
import worker.metrics  # noqa: F401,E402 - registers the metrics observer and serves /metrics (Celery signals)

log = logging.getLogger(__name__)

with one_line_errors():  # a mistyped setting ends the worker with one line, not Celery's traceback
    settings = get_settings()
    app: Celery = make_celery(settings)
    registry = load_declarations(settings.imports)
# Celery's documented hook for a custom consumer: ours drops, alone, a message it cannot accept.
app.conf.worker_consumer = "worker.consumer:GuardedConsumer"
if (settings.broker_url or "").startswith("redis://"):
    # kombu's Redis transport, but an unreadable item in a queue's list is dropped, not fatal.
    app.conf.broker_transport = "worker.transport:GuardedTransport"
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
    runner = JobRunner(settings, SystemClock(), database, worker_id)
    heartbeat = Heartbeat(
        database, worker_id, list(_state["queues"]), settings.heartbeat_seconds, on_cancel=runner.apply_cancel_requests,
        holdings=runner.holdings,
    )
    heartbeat.start()
    _state.update(runner=runner, heartbeat=heartbeat)


def _register(job_type: JobType[Any], handler: Handler) -> None:
    def run(self: Task, *args: Any, **kwargs: Any) -> str:
        runner = _runner()
        if not args and set(kwargs) == {"job_id"}:  # a message from the dispatcher
            job_id = int(kwargs["job_id"])
        else:  # a plain Celery call: becomes a job first
            routing_key = (self.request.delivery_info or {}).get("routing_key")
            job_id = adopt(runner.database, job_type, self.request.id, routing_key, args, kwargs)
        # Flower shows the attempt as it ended (worker/task_states.py); the row is the record.
        return report(runner.run(job_type, handler, job_id, self.request.id))

    app.task(name=job_type.name, bind=True, acks_late=True, ignore_result=True, typing=False, throws=EXPECTED)(run)


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


# Celery's default queue, as a stock `Celery(broker=...)` app names and declares it.
CELERY_DEFAULT_QUEUE = "celery"


@celeryd_after_setup.connect
def _consume_celery_default_queue(**_: Any) -> None:
    # Sent after -Q is applied (Celery's documented place to add queues). Declared without
    # x-max-priority, exactly as a stock app declares it: RabbitMQ refuses a second declaration
    # with other arguments, on whichever side comes second.
    queue = app.amqp.queues.select_add(Queue(CELERY_DEFAULT_QUEUE, Exchange(CELERY_DEFAULT_QUEUE), CELERY_DEFAULT_QUEUE))
    queue.queue_arguments = None


@worker_ready.connect
def _watch_revocations(**_: Any) -> None:
    if settings.database_url:
        RevocationWatcher(settings.database_url).start()


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    _start_process()


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    heartbeat = _state.get("heartbeat")
    if heartbeat is not None:
        heartbeat.stop()
