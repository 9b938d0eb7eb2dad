"""The enqueue API: how services put work on the platform.

`enqueue` writes in the caller's session, so the job exists if and only if the caller's
transaction commits. `enqueue_now` manages its own transaction. `enqueue_many` writes any
number of jobs of one type in one statement. Everything is validated before anything is
written; a refusal raises a `ValidationError` subclass naming the field.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from shared.clock import Clock, SystemClock, sql_now
from shared.db import Database, get_database, translate_errors
from shared.errors import PayloadInvalid, PayloadTooLarge, UnknownQueue, ValidationError
from shared.jobtypes.registry import JobType, registry
from shared.models.platform import PRIORITY_MAX, PRIORITY_MIN
from shared.models.states import JobState
from shared.settings import get_settings
from shared.store import jobs as job_store
from shared.store import dependencies as dependency_store
from shared.store import queues as queue_store
from shared.store.rows import Executor, NewJob

MAX_METADATA_BYTES = 16 * 1024


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
    """The one payload check (enqueue and schedules): the type's model, then the size limit.
    Returns the encoded JSON and the validated model; raises PayloadInvalid / PayloadTooLarge."""
    try:
        if isinstance(payload, BaseModel) and not isinstance(payload, job_type.payload):
            raise PayloadInvalid(
                f"payload for {job_type.name} must be {job_type.payload.__name__}, not {type(payload).__name__}",
                field="payload",
            )
        model = payload if isinstance(payload, BaseModel) else job_type.payload.model_validate(payload)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise PayloadInvalid(f"payload for {job_type.name} is invalid: {problems}", field="payload") from None
    encoded = model.model_dump_json()
    size = len(encoded.encode())
    if size > limit:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {limit}", field="payload", size=size)
    return encoded, model


def _metadata_json(metadata: Mapping[str, Any] | None) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a JSON object", field="metadata")
    try:
        encoded = json.dumps(metadata, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata is not JSON: {exc}", field="metadata") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata is over {MAX_METADATA_BYTES} bytes", field="metadata")
    return encoded


@dataclass(frozen=True)
class _Options:
    queue: str
    priority: int
    run_at: datetime | None
    state: str
    max_attempts: int
    timeout_seconds: float | None


def _options(
    job_type: JobType[BaseModel], clock: Clock, queue: str | None, priority: int | None,
    run_at: datetime | None, delay: float | timedelta | None, max_attempts: int | None, timeout: float | None,
) -> _Options:
    settings = get_settings()
    priority = job_type.priority if priority is None else priority
    if not isinstance(priority, int) or isinstance(priority, bool) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValidationError(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}; got {priority!r}", field="priority")
    if run_at is not None and delay is not None:
        raise ValidationError("give run_at or delay, not both", field="run_at")
    if run_at is not None and run_at.tzinfo is None:
        raise ValidationError("run_at must be timezone-aware", field="run_at")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise ValidationError("delay must not be negative", field="delay")
        run_at = clock.now() + timedelta(seconds=seconds)
    future = run_at is not None and run_at > clock.now()
    attempts = max_attempts if max_attempts is not None else job_type.max_attempts or settings.default_max_attempts
    if not isinstance(attempts, int) or attempts < 1:
        raise ValidationError(f"max_attempts must be a positive integer; got {attempts!r}", field="max_attempts")
    timeout = timeout if timeout is not None else job_type.timeout_seconds
    if timeout is not None and timeout <= 0:
        raise ValidationError("timeout must be positive", field="timeout")
    return _Options(
        queue=queue or job_type.queue, priority=priority, run_at=run_at,
        state=JobState.SCHEDULED if future else JobState.QUEUED, max_attempts=attempts, timeout_seconds=timeout,
    )


def _key(scope: str, model: BaseModel, fields: tuple[str, ...] | None) -> str | None:
    """`scope|[values]`: the scope prefix is how the dispatcher finds a key's limits."""
    if not fields:
        return None
    values = model.model_dump(mode="json", include=set(fields))
    return scope + "|" + json.dumps([values[f] for f in fields], separators=(",", ":"))


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
    declared = registry.get(job_type if isinstance(job_type, str) else job_type.name)
    payload_json, model = validate_payload(declared, payload or {}, get_settings().max_payload_bytes)
    options = _options(declared, clock, queue, priority, run_at, delay, max_attempts, timeout)
    period = declared.unique_for_seconds if unique_for is None else unique_for
    if period < 0:
        raise ValidationError("unique_for must not be negative", field="unique_for")
    parents = _parent_ids(depends_on)
    row = NewJob(
        type=declared.name, queue=options.queue, state=options.state, priority=options.priority,
        payload_json=payload_json, metadata_json=_metadata_json(metadata), max_attempts=options.max_attempts,
        timeout_seconds=options.timeout_seconds, run_at=options.run_at,
        limit_key=limit_key(declared, model),
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
            job_id, inserted = job_store.insert_unique_job(session, row, sql_now(clock))
            return Enqueued(job_id, duplicate=not inserted)
        return Enqueued(job_store.insert_jobs(session, [row], sql_now(clock))[0])


def _parent_ids(depends_on: Sequence[int] | None) -> list[int]:
    if not depends_on:
        return []
    if isinstance(depends_on, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in depends_on):
        raise ValidationError("depends_on must be a list of job ids", field="depends_on")
    return sorted(set(depends_on))


def _enqueue_dependent(session: Executor, row: NewJob, parents: list[int], clock: Clock) -> Enqueued:
    # Parents are locked first: none can finish unseen between our look and our insert.
    states = dependency_store.lock_parents(session, parents)
    missing = sorted(set(parents) - set(states))
    if missing:
        raise ValidationError(f"depends_on names jobs that do not exist: {missing[:10]}", field="depends_on")
    all_done = all(state == JobState.SUCCEEDED for state in states.values())
    waiting = row if all_done else replace(row, state=JobState.WAITING)
    job_id = job_store.insert_jobs(session, [waiting], sql_now(clock))[0]
    dependency_store.add_dependencies(session, job_id, parents)
    if not all_done:
        # Settles it now when a parent already failed or was cancelled.
        dependency_store.resolve(session, [job_id], sql_now(clock))
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
    declared = registry.get(job_type if isinstance(job_type, str) else job_type.name)
    options = _options(declared, clock, queue, priority, run_at, delay, max_attempts, timeout)
    limit = get_settings().max_payload_bytes
    metadata_json = _metadata_json(metadata)
    rows: list[NewJob] = []
    for index, payload in enumerate(payloads):
        try:
            payload_json, model = validate_payload(declared, payload, limit)
        except ValidationError as exc:
            raise type(exc)(f"payloads[{index}]: {exc}", field=f"payloads[{index}]") from None
        rows.append(NewJob(
            type=declared.name, queue=options.queue, state=options.state, priority=options.priority,
            payload_json=payload_json, metadata_json=metadata_json, max_attempts=options.max_attempts,
            timeout_seconds=options.timeout_seconds, run_at=options.run_at,
            limit_key=limit_key(declared, model),
        ))
    with translate_errors():
        queue_names.check(session, options.queue)
        return job_store.insert_jobs(session, rows, sql_now(clock))


def enqueue_many_now(job_type: str | JobType[Any], payloads: Sequence[Mapping[str, Any] | BaseModel], *, database: Database | None = None, **options: Any) -> list[int]:
    """`enqueue_many` in a transaction of its own."""
    with (database or get_database()).session() as session:
        return enqueue_many(session, job_type, payloads, **options)
