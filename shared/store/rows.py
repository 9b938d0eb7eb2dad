"""Typed rows the store takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Union

from sqlalchemy import Connection
from sqlalchemy.orm import Session

Executor = Union[Session, Connection]


@dataclass(frozen=True)
class NewJob:
    """A validated job, ready to insert (payload and metadata already JSON text).

    `state` is `queued` or `waiting`; the insert makes a queued job `scheduled` when its run_at
    is later than now. `run_at` is an instant the caller named; else `delay` after now; else
    now, where now is the database's clock (or an injected one), never this host's."""

    type: str
    queue: str
    state: str
    priority: int
    payload_json: str
    metadata_json: str
    max_attempts: int
    timeout_seconds: float | None
    run_at: datetime | None
    limit_key: str | None = None
    unique_key: str | None = None
    unique_period_seconds: float = 0.0
    delay: timedelta | None = None


@dataclass(frozen=True)
class QueueRow:
    name: str
    paused: bool
    dispatch_window: int | None
    concurrency_limit: int | None
    rate_limit: int | None
    rate_period_seconds: float | None
    retention_seconds: int


@dataclass(frozen=True)
class Candidate:
    id: int
    limit_key: str | None
    priority: int = 0
    run_at: datetime | None = None


@dataclass(frozen=True)
class DispatchedJob:
    id: int
    type: str
    queue: str
    priority: int
    run_at: datetime
    attempt: int
    timeout_seconds: float | None


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    type: str
    queue: str
    priority: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    created_at: datetime
    run_at: datetime
    dispatched_at: datetime | None
    started_at: datetime
    execution_id: int


@dataclass(frozen=True)
class Finish:
    """How an attempt ended, as the store writes it."""

    job_state: str
    execution_state: str
    delay: timedelta | None = None  # scheduled again this long after the database's now
    extra_attempts: int = 0
    error_class: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    cancel_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishWritten:
    """What writing an attempt's end did: whether it was recorded, whether the job has
    dependents to settle, and the job's due time as written (a retry's, by the database's clock)."""

    recorded: bool
    has_dependents: bool = False
    run_at: datetime | None = None
