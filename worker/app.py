"""The Celery worker: `celery -A worker.app:app worker -Q high,default`.

One Celery task per bound job type, named exactly as the job type (stable names that Flower
shows). Engines and heartbeats are created in each pool process after the fork.

Pools: prefork (CPU-bound job types; Celery's time limits) or threads (`-P threads -c 200`, the
IO worker class). A threads worker is one process: one runner, heartbeat and bounded set of
connections serve all its threads, per-attempt state lives in each attempt's context, and a
deadline watcher stands in for the time limits the threads pool lacks (worker/deadlines.py).

Every worker also consumes Celery's default queue (`celery`), whatever `-Q` says: a service's
own Celery app that calls `send_task(...)` without a queue publishes there, and its call is
adopted as a job (worker/adoption.py) instead of waiting forever in a queue nobody reads. A
message the worker cannot accept is logged and dropped by the consumer (worker/consumer.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import (
    celeryd_after_setup, celeryd_init, setup_logging, worker_init, worker_process_init, worker_process_shutdown,
    worker_ready, worker_shutdown, worker_shutting_down,
)
from kombu import Exchange, Queue

from shared.broker import make_celery
from shared.cli.exits import one_line_errors
from shared.clock import SystemClock
from shared.db import get_database, make_database, reset_database
from shared.jobtypes.registry import JobType, load_declarations
from shared.logconfig import configure_logging
from shared.settings import get_settings
from worker.adoption import adopt
from worker.binding import Handler, bound_names, handler_for
from worker.deadlines import DeadlineWatcher
from worker.heartbeat import Heartbeat, new_worker_id
from worker.revocations import RevocationWatcher
from worker.runner import JobRunner
from worker.task_states import EXPECTED, report
import worker.metrics  # noqa: F401,E402 - registers the metrics observer and serves /metrics (Celery signals)

log = logging.getLogger(__name__)

with one_line_errors():  # a mistyped setting ends the worker with one line, not Celery's traceback
    settings = get_settings()
    app: Celery = make_celery(settings)
    registry = load_declarations(settings)
# Celery's documented hook for a custom consumer: ours drops, alone, a message it cannot accept.
app.conf.worker_consumer = "worker.consumer:GuardedConsumer"
if (settings.broker_url or "").startswith("redis://"):
    # kombu's Redis transport, but an unreadable item in a queue's list is dropped, not fatal.
    app.conf.broker_transport = "worker.transport:GuardedTransport"
importlib.import_module("worker.handlers")

_state: dict[str, Any] = {"queues": [], "threaded": False, "concurrency": 1}
_start_lock = threading.Lock()


def _runner() -> JobRunner:
    """This process's runner, started on first use when no pool-init signal came (solo pool)."""
    runner = _state.get("runner")
    if runner is None:
        _start_process()
        runner = _state["runner"]
    return runner


def _start_process() -> None:
    with _start_lock:
        if _state.get("pid") == os.getpid():
            return  # already started in this process (threads pool: at worker_init)
        _state["pid"] = os.getpid()
        # The connections this process may hold, whatever its concurrency: one for the
        # heartbeat (never starved by busy threads, or live jobs would be rescued), the rest
        # the process-wide engine's hard cap, of which the job statements keep about half.
        budget = settings.worker_db_connections
        threads = int(_state["concurrency"]) if _state["threaded"] else 1
        reset_database()
        database = get_database(settings, pool_size=budget - 1, max_overflow=0)
        beat_database = make_database(database.engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
        worker_id = new_worker_id()
        runner = JobRunner(
            settings, SystemClock(), database, worker_id, job_connections=max(1, min(threads, (budget - 1) // 2)),
            deadlines=DeadlineWatcher() if _state["threaded"] else None,
        )
        heartbeat = Heartbeat(
            beat_database, worker_id, list(_state["queues"]), settings.heartbeat_seconds,
            on_cancel=runner.apply_cancel_requests, holdings=runner.holdings,
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
def _remember_queues(options: dict[str, Any] | None = None, conf: Any = None, **_: Any) -> None:
    options = options or {}
    queues = options.get("queues") or []
    _state["queues"] = sorted(queues) if isinstance(queues, (list, set, tuple)) else str(queues).split(",")
    # `-P` arrives as `pool` (a class) from the command line, `pool_cls` when built in code.
    pool = options.get("pool") or options.get("pool_cls") or (conf.worker_pool if conf is not None else "prefork")
    _state["threaded"] = not _is_prefork(pool)
    _state["concurrency"] = int(options.get("concurrency") or (conf.worker_concurrency if conf is not None else 0) or 1)


def _is_prefork(pool: Any) -> bool:
    """`-P prefork` (Celery's default); every other pool runs tasks in the worker process itself
    and has no time limits."""
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}"
    return name in ("prefork", "processes") or name.endswith(".prefork")


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    # A threads (or solo) pool has no pool processes and so no worker_process_init: the worker
    # process itself runs the jobs, heartbeat first, as a pool process would.
    if _state["threaded"]:
        _start_process()


@worker_shutting_down.connect
def _bound_warm_shutdown(**_: Any) -> None:
    # Celery's warm shutdown of a threads pool waits for every running thread, however long.
    # JOBS_SHUTDOWN_GRACE_SECONDS bounds it: then the process says it stopped (the rescuer
    # settles what it still held, at once) and exits.
    if _state["threaded"] and _state.get("runner") is not None:
        timer = threading.Timer(settings.shutdown_grace_seconds, _give_up_running_jobs)
        timer.daemon = True
        timer.start()


def _give_up_running_jobs() -> None:
    runner: JobRunner | None = _state.get("runner")
    held = runner.running() if runner is not None else []
    if held:
        log.error("warm shutdown: %d jobs still running after %.0f s; stopping without them (the rescuer retries them)",
                  len(held), settings.shutdown_grace_seconds)
    _stop_heartbeat()
    os._exit(1)


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _state["threaded"]:
        _stop_heartbeat()


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
    _stop_heartbeat()


def _stop_heartbeat() -> None:
    heartbeat = _state.pop("heartbeat", None)
    if heartbeat is not None:
        heartbeat.stop()
