"""The Celery app's configuration, and publishing job ids by task name.

Both the worker and the scheduler build their Celery app here, so they agree on serializer,
transport options and priorities; the scheduler publishes by task name and never imports the
worker. The broker carries only `{"job_id": N}`: everything else is in PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import uuid
import weakref
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Iterable

import redis
from celery import Celery
from celery.events.event import Event, get_exchange
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu.exceptions import EncodeError, KombuError

from shared.errors import BrokerError, ConfigurationError
from shared.jobtypes.registry import broker_queue
from shared.models.platform import PRIORITY_MAX
from shared.settings import ENV_PREFIX, Settings
from shared.store.rows import DispatchedJob

# Redis lists per queue for broker-side priority (kombu's default steps). The exact order is
# kept by PostgreSQL; these only let a high-priority job overtake the few already in flight.
REDIS_PRIORITY_STEPS = [0, 3, 6, 9]

log = logging.getLogger("shared.broker")


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


# Kombu's virtual transports clamp a message's priority to this range before choosing its list.
REDIS_PRIORITY_RANGE = (0, 9)
# Celery's task-sent events go to Flower as one `task.multi` message (a list) per round.
EVENT_ROUTING_KEY = "task.multi"
# Celery's message properties: persistent delivery (AMQP delivery_mode 2).
PERSISTENT = 2
# The job id in a message's task id (`job-<id>-<attempt>`), read from raw broker messages.
JOB_TASK_ID = re.compile(rb'"id": ?"job-(\d+)-\d+"')


@dataclass(frozen=True)
class TaskMessage:
    """One job's message in Celery's protocol 2, the same for every broker: the headers Celery
    reads, the properties, and the body `[args, kwargs, embed]` as JSON."""

    queue: str
    priority: int  # the broker's priority (see broker_priority)
    headers: dict[str, Any]
    properties: dict[str, Any]
    body: bytes

    @property
    def task_id(self) -> str:
        return str(self.headers["id"])


def task_message(job: DispatchedJob, settings: Settings, origin: str, reply_to: str) -> TaskMessage:
    """The message Celery's `send_task(job.type, kwargs={"job_id": id}, queue=..., task_id=...,
    priority=..., soft_time_limit=..., time_limit=...)` builds, without Celery's routing and
    serialising machinery (about 0.7 ms a message): every field has one possible value here."""
    soft = job.timeout_seconds or settings.default_timeout_seconds
    tid = task_id(job)
    headers = {
        "lang": "py", "task": job.type, "id": tid, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [hard_time_limit(soft), soft],
        "root_id": tid, "parent_id": None, "argsrepr": "()", "kwargsrepr": f"{{'job_id': {job.id}}}",
        "origin": origin, "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None,
        "stamps": {},
    }
    priority = broker_priority(job.priority, settings)
    properties = {"correlation_id": tid, "reply_to": reply_to, "delivery_mode": PERSISTENT, "priority": priority}
    body = b'[[], {"job_id": %d}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]' % job.id
    # An IO-bound type's message goes to its queue's IO lane (`io.<queue>`, the threads workers).
    return TaskMessage(broker_queue(job.type, job.queue), priority, headers, properties, body)


def redis_queue_key(settings: Settings, queue: str, priority: int) -> str:
    """The Redis list kombu's Redis transport keeps a queue's messages of this priority in:
    `queue`, `queue:3`, ... (its `sep` and priority steps), under the global key prefix."""
    options = transport_options(settings)
    low, high = REDIS_PRIORITY_RANGE
    clamped = max(min(priority, high), low)
    step = REDIS_PRIORITY_STEPS[bisect_right(REDIS_PRIORITY_STEPS, clamped) - 1]
    name = f"{queue}{options['sep']}{step}" if step else queue
    return f"{settings.broker_key_prefix}{name}"


def redis_envelope(message: TaskMessage) -> bytes:
    """The JSON document kombu's Redis transport stores per message (what `basic_publish` makes
    of a message to the default exchange: base64 body, delivery info, a unique delivery tag)."""
    properties = dict(
        message.properties,
        delivery_info={"exchange": "", "routing_key": message.queue},
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),
    )
    return json.dumps({
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": properties,
    }).encode()


class Publisher:
    """Publishes a dispatch round's messages: on Redis one pipelined LPUSH for the whole round,
    on RabbitMQ through a kombu producer (one connection, confirmed publishes); then one
    `task.multi` message carrying a `task-sent` event per message, as a Celery client with
    `task_send_sent_event` sends them one by one, so Flower sees every task from its start."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.origin = anon_nodename()
        self.reply_to = str(app.thread_oid)
        self._redis: redis.Redis | None = None

    def redis(self) -> redis.Redis:
        if self._redis is None:
            # Bounded waits: a broker that stops answering is an outage the dispatcher retries.
            self._redis = redis.Redis.from_url(
                str(self.settings.broker_url), socket_connect_timeout=10, socket_timeout=30, health_check_interval=30
            )
        return self._redis

    def publish(self, jobs: Iterable[DispatchedJob]) -> int:
        """Send one message per job. Raises BrokerError (its cause tells an outage from a
        message that cannot be encoded)."""
        try:
            messages = [task_message(job, self.settings, self.origin, self.reply_to) for job in jobs]
        except (TypeError, ValueError, OverflowError) as exc:
            raise BrokerError(f"a message could not be built: {exc}") from EncodeError(str(exc))
        if not messages:
            return 0
        if self.app.conf.task_send_sent_event:
            # Before the messages: Flower applies events as they arrive, and a `task-sent` that
            # came after the worker's own events would put a retried attempt back to PENDING.
            # Should the publish then fail, the jobs stay dispatched and are sent again later.
            self._send_events(messages)
        try:
            if self.settings.is_redis_broker:
                self._push_redis(messages)
            else:
                self._publish_kombu(messages)
        except (KombuError, OSError, ConnectionError, redis.RedisError) as exc:
            raise BrokerError(f"publishing {len(messages)} messages to the broker failed: {exc}") from exc
        return len(messages)

    def _push_redis(self, messages: list[TaskMessage]) -> None:
        try:
            envelopes = [(redis_queue_key(self.settings, m.queue, m.priority), redis_envelope(m)) for m in messages]
        except (TypeError, ValueError) as exc:
            raise EncodeError(str(exc)) from exc
        with self.redis().pipeline(transaction=False) as pipe:
            for key, envelope in envelopes:
                pipe.lpush(key, envelope)
            pipe.execute()

    def _publish_kombu(self, messages: list[TaskMessage]) -> None:
        queues = self.app.amqp.queues  # creates a missing queue as Celery would (max priority)
        policy = self.app.conf.task_publish_retry_policy
        with self.app.producer_or_acquire() as producer:
            for m in messages:
                producer.publish(
                    m.body, exchange="", routing_key=m.queue, declare=[queues[m.queue]], headers=m.headers,
                    content_type="application/json", content_encoding="utf-8", retry=True, retry_policy=policy,
                    **m.properties,
                )

    def _send_events(self, messages: list[TaskMessage]) -> None:
        """Flower's view only: a failure is logged, never raised (the messages are out)."""
        clock, pid, offset = self.app.clock, os.getpid(), utcoffset()
        events = [
            Event("task-sent", hostname=self.origin, utcoffset=offset, pid=pid, clock=clock.forward(),
                  uuid=m.task_id, root_id=m.task_id, parent_id=None, name=m.headers["task"], args="()",
                  kwargs=m.headers["kwargsrepr"], retries=0, eta=None, expires=None, queue=m.queue, exchange="",
                  routing_key=m.queue)
            for m in messages
        ]
        try:
            with self.app.producer_or_acquire() as producer:
                exchange = get_exchange(producer.connection, name=self.app.conf.event_exchange)
                producer.publish(
                    events, exchange=exchange.name, routing_key=EVENT_ROUTING_KEY, declare=[exchange],
                    serializer=self.app.conf.event_serializer, headers={"hostname": self.origin},
                    delivery_mode=1, retry=False,
                )
        except Exception as exc:  # noqa: BLE001 - the events are for Flower only
            log.warning("task-sent events for %d messages not sent: %s", len(messages), exc)

    def held_job_ids(self, queues: Iterable[str]) -> set[int]:
        """Redis only: the ids of the jobs whose messages the broker holds now: in the queues'
        lists (every priority) and in the transport's unacked hash (delivered, not yet acked)."""
        client = self.redis()
        prefix = self.settings.broker_key_prefix
        try:
            with client.pipeline(transaction=False) as pipe:
                keys = sorted({redis_queue_key(self.settings, q, p) for q in queues for p in REDIS_PRIORITY_STEPS})
                for key in keys:
                    pipe.lrange(key, 0, -1)
                pipe.hvals(f"{prefix}{UNACKED_KEY}")
                results = pipe.execute()
        except (OSError, ConnectionError, redis.RedisError) as exc:
            raise BrokerError(f"reading the broker's queues failed: {exc}") from exc
        held: set[int] = set()
        for raw in (item for result in results for item in result):
            held.update(int(found) for found in JOB_TASK_ID.findall(raw))
        return held

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


# kombu's Redis transport keeps delivered, unacknowledged messages in this hash (its default).
UNACKED_KEY = "unacked"
_publishers: "weakref.WeakKeyDictionary[Celery, Publisher]" = weakref.WeakKeyDictionary()


def publisher(app: Celery, settings: Settings) -> Publisher:
    """The app's publisher (one Redis connection pool per app and process)."""
    found = _publishers.get(app)
    if found is None or found.settings is not settings:
        found = _publishers[app] = Publisher(app, settings)
    return found


def publish(app: Celery, settings: Settings, jobs: Iterable[DispatchedJob]) -> int:
    """Send one message per job (see Publisher.publish). Raises BrokerError."""
    return publisher(app, settings).publish(jobs)
