"""The platform's tables: queues, jobs, executions and their companions.

Ids are bigint identities throughout (smaller, faster indexes than UUIDs; jobs are never
merged across databases). Each index below names the query that needs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import EMPTY_OBJECT, Base, created_at_column, one_of
from shared.models.states import ExecutionState, JobState, MisfirePolicy

PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 0, 9, 5
# What a plain INSERT INTO jobs may set is enforced by the trigger `jobs_insert_contract`
# (migration 0004); these are its ceilings, for code that wants to say them in an error.
INSERT_PAYLOAD_MAX_BYTES = 1048576
INSERT_METADATA_MAX_BYTES = 32768
INSERT_MAX_ATTEMPTS_MAX = 1000
INSERT_TIMEOUT_MAX_SECONDS = 2592000
INSERT_UNIQUE_PERIOD_MAX_SECONDS = 315360000


def finite(column: str) -> CheckConstraint:
    """Timestamps and seconds must be finite (-infinity cannot be loaded into a datetime; an
    infinite or NaN period breaks interval arithmetic). Added NOT VALID by migration 0004: old
    rows are not scanned, new rows and every update are checked. NULL passes."""
    is_float = column.endswith("_seconds")
    condition = f"{column} < 'Infinity'::float8" if is_float else f"isfinite({column})"
    short = {"timeout_seconds": "timeout", "unique_period_seconds": "unique_period",
             "jitter_seconds": "jitter", "rate_period_seconds": "rate_period"}.get(column, column)
    return CheckConstraint(condition, name=f"{short}_finite", postgresql_not_valid=True)
QUEUE_NAME_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,62}$"


class Queue(Base):
    __tablename__ = "queues"
    __table_args__ = (
        CheckConstraint(f"name ~ '{QUEUE_NAME_PATTERN}'", name="name_format"),
        CheckConstraint("dispatch_window IS NULL OR dispatch_window > 0", name="dispatch_window_positive"),
        CheckConstraint("concurrency_limit IS NULL OR concurrency_limit > 0", name="concurrency_limit_positive"),
        CheckConstraint(
            "(rate_limit IS NULL) = (rate_period_seconds IS NULL) AND (rate_limit IS NULL OR rate_limit > 0)",
            name="rate_limit_pair",
        ),
        CheckConstraint("retention_seconds > 0", name="retention_positive"),
        finite("rate_period_seconds"),
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    dispatch_window: Mapped[int | None] = mapped_column(Integer)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_period_seconds: Mapped[float | None] = mapped_column(Double)
    retention_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("604800"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        one_of("state", list(JobState)),
        CheckConstraint(f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}", name="priority_range"),
        CheckConstraint("jsonb_typeof(payload) = 'object'", name="payload_is_object"),
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata_is_object"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        CheckConstraint("progress IS NULL OR progress BETWEEN 0 AND 1", name="progress_range"),
        CheckConstraint("timeout_seconds IS NULL OR timeout_seconds > 0", name="timeout_positive"),
        CheckConstraint("length(type) BETWEEN 1 AND 200", name="type_length"),
        *(finite(c) for c in ("run_at", "created_at", "dispatched_at", "started_at", "finished_at",
                              "cancel_requested_at", "fire_time", "timeout_seconds", "unique_period_seconds")),
        # The dispatcher's claim: runnable jobs of one queue in exact (priority, run_at, id)
        # order. Partial, so millions of finished rows never enter it.
        Index("ix_jobs_runnable", "queue", "priority", "run_at", "id", postgresql_where=text("state = 'queued'")),
        # Promotion of due scheduled jobs (first runs and retry backoffs) to queued.
        Index("ix_jobs_scheduled_due", "run_at", postgresql_where=text("state = 'scheduled'")),
        # Window accounting per queue and the redispatch of jobs whose message was lost.
        Index("ix_jobs_dispatched", "queue", "dispatched_at", postgresql_where=text("state = 'dispatched'")),
        # Running jobs per queue (concurrency limits) and by holder process (the rescuer).
        Index("ix_jobs_running", "queue", "worker_id", postgresql_where=text("state = 'running'")),
        # The pruner: finished jobs by queue and age.
        Index(
            "ix_jobs_finished",
            "queue",
            "finished_at",
            postgresql_where=text("state IN ('succeeded', 'failed', 'cancelled')"),
        ),
        # Unique jobs: one holder per key (a constraint, not check-then-insert). A finished job
        # keeps holding its key for its unique period; an enqueue that meets an expired holder
        # releases it and tries again.
        Index(
            "uq_jobs_unique_key_held",
            "unique_key",
            unique=True,
            postgresql_where=text("unique_key IS NOT NULL AND NOT unique_released"),
        ),
        # Per-key concurrency limits: the jobs of a key in flight.
        Index(
            "ix_jobs_limit_key_in_flight",
            "limit_key",
            postgresql_where=text("limit_key IS NOT NULL AND state IN ('dispatched', 'running')"),
        ),
        # Dependency resolution sweep: jobs waiting on parents.
        Index("ix_jobs_waiting", "id", postgresql_where=text("state = 'waiting'")),
        CheckConstraint("unique_period_seconds >= 0", name="unique_period_not_negative"),
        CheckConstraint("crashes >= 0", name="crashes_not_negative"),
        # Every cron fire exactly once, whatever the number of scheduler replicas.
        # Partial, so the millions of jobs no schedule made cost this index nothing.
        Index(
            "uq_jobs_schedule_fire",
            "schedule_id",
            "fire_time",
            unique=True,
            postgresql_where=text("schedule_id IS NOT NULL"),
        ),
        # Room in each page for HOT updates of a running job's progress and cancel request
        # (state changes cannot be HOT: see migration 0009).
        {"postgresql_with": {"fillfactor": 90}},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    queue: Mapped[str] = mapped_column(
        Text,
        ForeignKey("queues.name", onupdate="CASCADE", ondelete="RESTRICT"),
        nullable=False,
        server_default=text("'default'"),
    )
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text(f"'{JobState.QUEUED}'"))
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text(str(PRIORITY_DEFAULT)))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=EMPTY_OBJECT)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, nullable=False, server_default=EMPTY_OBJECT)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("20"))
    timeout_seconds: Mapped[float | None] = mapped_column(Double)
    run_at: Mapped[datetime] = created_at_column()
    created_at: Mapped[datetime] = created_at_column()
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float | None] = mapped_column(Double)
    last_error: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]
    unique_key: Mapped[str | None] = mapped_column(Text)
    unique_period_seconds: Mapped[float] = mapped_column(Double, nullable=False, server_default=text("0"))
    unique_released: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    has_dependents: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    limit_key: Mapped[str | None] = mapped_column(Text)
    schedule_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("schedules.id", ondelete="SET NULL"))
    fire_time: Mapped[datetime | None]
    # Worker processes lost while running this job (killed, crashed, hard time limit): at
    # JOBS_POISON_AFTER_CRASHES the rescuer fails it as poison instead of handing it out again.
    crashes: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class JobExecution(Base):
    __tablename__ = "job_executions"
    __table_args__ = (
        one_of("state", list(ExecutionState)),
        UniqueConstraint("job_id", "attempt"),
        CheckConstraint("finished_at IS NULL OR finished_at >= started_at", name="finished_after_start"),
        # The roll-up's executions started in a window. Only started_at (written once): an index
        # on state or finished_at would make every finish a non-HOT update (migration 0009).
        Index("ix_job_executions_started_at", "started_at"),
        finite("started_at"),
        finite("finished_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text(f"'{ExecutionState.RUNNING}'"))
    worker_id: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None]
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)


class JobDependency(Base):
    __tablename__ = "job_dependencies"
    __table_args__ = (
        CheckConstraint("job_id <> depends_on_id", name="not_self"),
        # Promotion and cancellation cascade look up the dependents of a finished parent.
        Index("ix_job_dependencies_depends_on_id", "depends_on_id"),
    )

    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


class JobLog(Base):
    __tablename__ = "job_logs"
    __table_args__ = (
        one_of("level", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        # Reading a job's log in order.
        Index("ix_job_logs_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = created_at_column()
    level: Mapped[str] = mapped_column(Text, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)


class QueueMetric(Base):
    """One row per queue per minute, written by the roll-up (idempotent upsert)."""

    __tablename__ = "queue_metrics"

    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    enqueued: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    started: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    retried: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    depth: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=EMPTY_OBJECT)
    oldest_waiting_seconds: Mapped[float | None] = mapped_column(Double)
    wait_p50_ms: Mapped[float | None] = mapped_column(Double)
    wait_p95_ms: Mapped[float | None] = mapped_column(Double)
    run_p50_ms: Mapped[float | None] = mapped_column(Double)
    run_p95_ms: Mapped[float | None] = mapped_column(Double)


class JobMetric(Base):
    """One row per job type per minute, written by the roll-up (idempotent upsert)."""

    __tablename__ = "job_metrics"

    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    job_type: Mapped[str] = mapped_column(Text, primary_key=True)
    started: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    retried: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    run_p50_ms: Mapped[float | None] = mapped_column(Double)
    run_p95_ms: Mapped[float | None] = mapped_column(Double)
    run_max_ms: Mapped[float | None] = mapped_column(Double)
    failure_rate: Mapped[float | None] = mapped_column(Double)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        one_of("misfire_policy", list(MisfirePolicy)),
        CheckConstraint(f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}", name="priority_range"),
        CheckConstraint("catch_up_limit >= 1", name="catch_up_limit_positive"),
        CheckConstraint("jitter_seconds >= 0", name="jitter_not_negative"),
        CheckConstraint("jsonb_typeof(payload) = 'object'", name="payload_is_object"),
        one_of("source", ["code", "api"]),
        finite("next_fire_at"),
        finite("last_fire_at"),
        finite("jitter_seconds"),
        # The cron service: enabled schedules by next fire time.
        Index("ix_schedules_next_fire_at", "next_fire_at", postgresql_where=text("enabled")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    cron: Mapped[str] = mapped_column(Text, nullable=False)
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'UTC'"))
    job_type: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=EMPTY_OBJECT)
    queue: Mapped[str] = mapped_column(
        Text, ForeignKey("queues.name", onupdate="CASCADE", ondelete="RESTRICT"), nullable=False
    )
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text(str(PRIORITY_DEFAULT)))
    misfire_policy: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'run_once'"))
    catch_up_limit: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    jitter_seconds: Mapped[float] = mapped_column(Double, nullable=False, server_default=text("0"))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    source: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'api'"))
    next_fire_at: Mapped[datetime | None]
    last_fire_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Worker(Base):
    """One row per worker *process*: a prefork child killed with -9 stops heartbeating even
    while its parent lives on, so liveness has to be tracked per process."""

    __tablename__ = "workers"
    __table_args__ = (
        one_of("state", ["online", "stopping", "stopped"]),
        # The rescuer: stale heartbeats.
        Index("ix_workers_last_heartbeat_at", "last_heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'online'"))
    started_at: Mapped[datetime] = created_at_column()
    last_heartbeat_at: Mapped[datetime] = created_at_column()
    # The job ids this process holds (registered before the claim is sent, removed once the
    # attempt's end is written or given up), as of `last_heartbeat_at`: a running job whose
    # live process's later heartbeat does not list it is rescued. NULL: not reported.
    holding: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))


class RateWindow(Base):
    """Sliding-window rate limits: the start times of the last N dispatches of a scope (a
    queue, or a limit key), so "at most N per period" holds in every window, exactly."""

    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    recent: Mapped[list[datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), nullable=False, server_default=text("'{}'")
    )


class Lease(Base):
    """Leader leases for the singleton services (one row per role); PgBouncer-safe, unlike
    session advisory locks."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    acquired_at: Mapped[datetime] = created_at_column()

