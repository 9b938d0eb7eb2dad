"""The Celery app's configuration, and publishing job ids by task name.

Both the worker and the scheduler build their Celery app here, so they agree on serializer,
transport options and priorities; the scheduler publishes by task name and never imports the
worker. The broker carries only `{"job_id": N}`: everything else is in PostgreSQL.
"""

from __future__ import annotations

from typing import Iterable

from celery import Celery
from kombu.exceptions import KombuError

from shared.errors import BrokerError, ConfigurationError
from shared.jobtypes.registry import broker_queue
from shared.models.platform import PRIORITY_MAX
from shared.settings import ENV_PREFIX, Settings
from shared.store.rows import DispatchedJob

# Redis lists per queue for broker-side priority (kombu's default steps). The exact order is
# kept by PostgreSQL; these only let a high-priority job overtake the few already in flight.
REDIS_PRIORITY_STEPS = [0, 3, 6, 9]


def hard_time_limit(soft: float) -> float:
    """The hard limit (the process is killed) a little past the soft one (the handler gets
    `SoftTimeLimitExceeded`), so a handler has time to clean up: 10%, at least 1 s."""
    return soft + max(1.0, 0.1 * soft)


def make_celery(settings: Settings, name: str = "jobplatform") -> Celery:
    """The platform's Celery app. Raises ConfigurationError without a broker URL: Celery would
    quietly fall back to amqp://localhost, and a worker or scheduler there consumes or publishes
    nothing anyone sees."""
    if not settings.broker_url:
        raise ConfigurationError(
            f"{ENV_PREFIX}BROKER_URL is not set: set it to the broker's URL (redis://... or amqp://...), "
            "or run the platform through `jobctl up`, which starts an embedded Redis"
        )
    app = Celery(name, broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue="default",
        task_create_missing_queues=True,
        enable_utc=True,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options=transport_options(settings),
        task_queue_max_priority=PRIORITY_MAX if not settings.is_redis_broker else None,
        task_default_priority=None,
    )
    return app


def transport_options(settings: Settings) -> dict[str, object]:
    if not settings.is_redis_broker:
        return {"confirm_publish": True}
    options: dict[str, object] = {
        "priority_steps": REDIS_PRIORITY_STEPS,
        "sep": ":",
        # Consume a worker's queues in the order given (-Q high,default): across-queue priority.
        "queue_order_strategy": "priority",
        # Longer than any job: an unacked message is redelivered after this (harmlessly: the
        # claim refuses a job that is already running).
        "visibility_timeout": 4 * 3600,
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options


def broker_priority(priority: int, settings: Settings) -> int:
    """Our 0 is most urgent; Redis agrees (lower first), RabbitMQ counts the other way."""
    return priority if settings.is_redis_broker else PRIORITY_MAX - priority


def task_id(job: DispatchedJob) -> str:
    """Stable, readable task ids: Flower shows them, and a revoke maps back to the job."""
    return f"job-{job.id}-{job.attempt + 1}"


def job_id_from_task_id(value: str) -> int | None:
    parts = value.split("-")
    if len(parts) == 3 and parts[0] == "job" and parts[1].isdigit():
        return int(parts[1])
    return None


def publish(app: Celery, settings: Settings, jobs: Iterable[DispatchedJob]) -> int:
    """Send one message per job, on one producer connection. Raises BrokerError."""
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for job in jobs:
                soft = job.timeout_seconds or settings.default_timeout_seconds
                lane = broker_queue(job.type, job.queue)  # an IO-bound type: the queue's IO lane
                app.send_task(
                    job.type,
                    kwargs={"job_id": job.id},
                    queue=lane,
                    routing_key=lane,
                    task_id=task_id(job),
                    priority=broker_priority(job.priority, settings),
                    soft_time_limit=soft,
                    time_limit=hard_time_limit(soft),
                    producer=producer,
                )
                sent += 1
    except (KombuError, OSError, ConnectionError) as exc:
        raise BrokerError(f"publishing to the broker failed after {sent} messages: {exc}") from exc
    return sent
