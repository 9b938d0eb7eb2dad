"""The enqueue API: how services put work on the platform.

`enqueue` writes in the caller's session, so the job exists if and only if the caller's
transaction commits. `enqueue_now` manages its own transaction. `enqueue_many` writes any
number of jobs of one type in one statement. Every argument passes the input gate
(`shared.inputs`, docs/inputs.md) before any SQL; a refusal raises a `ValidationError` subclass
naming the field, nothing is written, and the caller's transaction stays usable.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel

from shared import inputs
from shared.clock import Clock, SystemClock
from shared.db import Database, get_database, translate_errors
from shared.errors import PayloadInvalid, UnknownQueue, ValidationError
from shared.jobtypes.registry import JobType, registry
from shared.models.platform import PRIORITY_MAX, PRIORITY_MIN
from shared.models.states import JobState
from shared.settings import get_settings
from shared.store import jobs as job_store
from shared.store import dependencies as dependency_store
from shared.store import queues as queue_store
from shared.store.rows import Executor, NewJob

MAX_METADATA_BYTES = inputs.METADATA_MAX_BYTES


@dataclass(frozen=True)
class Enqueued:
    id: int
    duplicate: bool = False  # a unique job: the key was held by this existing job


class QueueNames:
    """Known queue names, cached per process; a miss re-reads before answering."""

    ttl_seconds = 5.0

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._read_at = 0.0
        self._lock = threading.Lock()

    def known(self, db: Executor, name: str) -> bool:
        if name in self._names and time.monotonic() - self._read_at < self.ttl_seconds:
            return True
        with self._lock:
            self._names = frozenset(q.name for q in queue_store.list_queues(db))
            self._read_at = time.monotonic()
        return name in self._names

    def check(self, db: Executor, name: str) -> None:
        if not self.known(db, name):
            known = ", ".join(sorted(self._names)) or "none"
            raise UnknownQueue(f"unknown queue {name!r} (known: {known})", field="queue", queue=name)


queue_names = QueueNames()


def validate_payload(job_type: JobType[BaseModel], payload: Mapping[str, Any] | BaseModel, limit: int) -> tuple[str, BaseModel]:
    """The one payload check (enqueue and schedules), kept in the gate (`shared.inputs.payload`):
    the type's model, what the database can store, then the size limit. Returns the encoded
    JSON and the validated model; raises PayloadInvalid / PayloadTooLarge."""
    return inputs.payload(job_type, payload, limit)


@dataclass(frozen=True)
class _Options:
    queue: str
    priority: int
    run_at: datetime | None
    delay: timedelta | None  # a duration: the store adds it to the database's now
    max_attempts: int
    timeout_seconds: float | None


def _options(
    job_type: JobType[BaseModel], queue: Any, priority: Any,
    run_at: Any, delay: Any, max_attempts: Any, timeout: Any,
) -> _Options:
    settings = get_settings()
    queue = inputs.queue_name(job_type.queue if queue is None else queue)
    priority = inputs.integer(job_type.priority if priority is None else priority, "priority", PRIORITY_MIN, PRIORITY_MAX)
    if run_at is not None and delay is not None:
        raise ValidationError("give run_at or delay, not both", field="run_at")
    if run_at is not None:
        run_at = inputs.moment(run_at, "run_at")
    if delay is not None:
        delay = timedelta(seconds=inputs.seconds(delay, "delay", 0, inputs.DELAY_MAX_SECONDS))
    attempts = max_attempts if max_attempts is not None else job_type.max_attempts or settings.default_max_attempts
    attempts = inputs.integer(attempts, "max_attempts", 1, inputs.MAX_ATTEMPTS_MAX)
    timeout = timeout if timeout is not None else job_type.timeout_seconds
    if timeout is not None:
        timeout = inputs.seconds(timeout, "timeout", inputs.TIMEOUT_MIN_SECONDS, inputs.TIMEOUT_MAX_SECONDS)
    return _Options(
        queue=queue, priority=priority, run_at=run_at, delay=delay, max_attempts=attempts, timeout_seconds=timeout,
    )


def _key(scope: str, model: BaseModel, fields: tuple[str, ...] | None) -> str | None:
    """`scope|[values]`: the scope prefix is how the dispatcher finds a key's limits."""
    if not fields:
        return None
    values = model.model_dump(mode="json", include=set(fields))
    # Keys are indexed: a long field value would make an index entry the database refuses.
    return inputs.key(scope + "|" + json.dumps([values[f] for f in fields], separators=(",", ":")), "payload", error=PayloadInvalid)


def limit_key(job_type: JobType[BaseModel], model: BaseModel) -> str | None:
    return _key(job_type.limit_scope or job_type.name, model, job_type.limit_by)


def enqueue(
    session: Executor,
    job_type: str | JobType[Any],
    payload: Mapping[str, Any] | BaseModel | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay: float | timedelta | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    unique_key: str | None = None,
    unique_for: float | None = None,
    depends_on: Sequence[int] | None = None,
    clock: Clock | None = None,
) -> Enqueued:
    """Add one job in the caller's transaction. Nothing is written when validation fails.

    `unique_key` (or the type's `unique_by` fields) makes the job unique while it is active and
    for `unique_for` seconds after it finished: a duplicate enqueue returns the holder's id with
    `duplicate=True`. `depends_on` makes it wait until every listed job succeeded; if one fails
    or is cancelled, this job is cancelled with a reason naming it.
    """
    clock = clock or SystemClock()
    declared = inputs.job_type(job_type, registry)
    payload_json, model = inputs.payload(declared, {} if payload is None else payload, get_settings().max_payload_bytes)
    options = _options(declared, queue, priority, run_at, delay, max_attempts, timeout)
    period = inputs.seconds(
        declared.unique_for_seconds if unique_for is None else unique_for, "unique_for", 0, inputs.UNIQUE_FOR_MAX_SECONDS
    )
    parents = [] if depends_on is None else inputs.job_ids(depends_on, "depends_on")
    if unique_key is not None and unique_key != "":
        unique_key = inputs.key(unique_key, "unique_key")
    row = NewJob(
        type=declared.name, queue=options.queue, state=JobState.QUEUED, priority=options.priority,
        payload_json=payload_json, metadata_json=inputs.json_object(metadata, "metadata"),
        max_attempts=options.max_attempts, timeout_seconds=options.timeout_seconds, run_at=options.run_at,
        delay=options.delay, limit_key=limit_key(declared, model),
        unique_key=unique_key or _key(declared.name, model, declared.unique_by),
        unique_period_seconds=period,
    )
    if parents and row.unique_key is not None:
        raise ValidationError("a job cannot be both unique and dependent", field="unique_key")
    with translate_errors():
        queue_names.check(session, options.queue)
        if parents:
            return _enqueue_dependent(session, row, parents, clock)
        if row.unique_key is not None:
            job_id, inserted = job_store.insert_unique_job(session, row, clock.sql_now())
            return Enqueued(job_id, duplicate=not inserted)
        return Enqueued(job_store.insert_jobs(session, [row], clock.sql_now())[0])


def _enqueue_dependent(session: Executor, row: NewJob, parents: list[int], clock: Clock) -> Enqueued:
    # Parents are locked first: none can finish unseen between our look and our insert.
    states = dependency_store.lock_parents(session, parents)
    missing = sorted(set(parents) - set(states))
    if missing:
        raise ValidationError(f"depends_on names jobs that do not exist: {missing[:10]}", field="depends_on")
    all_done = all(state == JobState.SUCCEEDED for state in states.values())
    waiting = row if all_done else replace(row, state=JobState.WAITING)
    job_id = job_store.insert_jobs(session, [waiting], clock.sql_now())[0]
    dependency_store.add_dependencies(session, job_id, parents)
    if not all_done:
        # Settles it now when a parent already failed or was cancelled.
        dependency_store.settle(session, clock.sql_now(), waiting=[job_id])
    return Enqueued(job_id)


def enqueue_now(job_type: str | JobType[Any], payload: Mapping[str, Any] | BaseModel | None = None, *, database: Database | None = None, **options: Any) -> Enqueued:
    """Add one job in a transaction of its own, committed before returning."""
    with (database or get_database()).session() as session:
        return enqueue(session, job_type, payload, **options)


def enqueue_many(
    session: Executor,
    job_type: str | JobType[Any],
    payloads: Iterable[Mapping[str, Any] | BaseModel],
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay: float | timedelta | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
) -> list[int]:
    """Add many jobs of one type in one statement; every payload is validated first.

    Unique keys are not applied here: a bulk insert that silently skips rows would make the
    returned ids ambiguous. Enqueue unique jobs one at a time.
    """
    clock = clock or SystemClock()
    declared = inputs.job_type(job_type, registry)
    options = _options(declared, queue, priority, run_at, delay, max_attempts, timeout)
    limit = get_settings().max_payload_bytes
    metadata_json = inputs.json_object(metadata, "metadata")
    if isinstance(payloads, (str, bytes, Mapping, BaseModel)) or not isinstance(payloads, Iterable):
        raise PayloadInvalid(f"payloads must be a list of payloads; got {inputs.show(payloads)}", field="payloads")
    rows: list[NewJob] = []
    for index, payload in enumerate(payloads):
        try:
            payload_json, model = inputs.payload(declared, payload, limit)
        except ValidationError as exc:
            raise type(exc)(f"payloads[{index}]: {exc}", field=f"payloads[{index}]", **_detail(exc)) from None
        rows.append(NewJob(
            type=declared.name, queue=options.queue, state=JobState.QUEUED, priority=options.priority,
            payload_json=payload_json, metadata_json=metadata_json, max_attempts=options.max_attempts,
            timeout_seconds=options.timeout_seconds, run_at=options.run_at, delay=options.delay,
            limit_key=limit_key(declared, model),
        ))
    with translate_errors():
        queue_names.check(session, options.queue)
        return job_store.insert_jobs(session, rows, clock.sql_now())


def _detail(exc: ValidationError) -> dict[str, Any]:
    return {k: v for k, v in exc.context.items() if k != "field"}


def enqueue_many_now(job_type: str | JobType[Any], payloads: Sequence[Mapping[str, Any] | BaseModel], *, database: Database | None = None, **options: Any) -> list[int]:
    """`enqueue_many` in a transaction of its own."""
    with (database or get_database()).session() as session:
        return enqueue_many(session, job_type, payloads, **options)
