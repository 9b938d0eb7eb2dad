"""The closed sets of states, shared by models, store and tests."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    WAITING = "waiting"  # dependencies unmet
    SCHEDULED = "scheduled"  # run_at in the future (first run or retry backoff)
    QUEUED = "queued"  # runnable, backlog in PostgreSQL
    DISPATCHED = "dispatched"  # its id is in the broker
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
ACTIVE_JOB_STATES = tuple(s for s in JobState if s not in TERMINAL_JOB_STATES)


class ExecutionState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the handler raised or asked for a retry
    SNOOZED = "snoozed"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"
    TIMED_OUT = "timed_out"
    LOST = "lost"  # its worker process died or stopped heartbeating


class MisfirePolicy(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    CATCH_UP = "catch_up"


class ProxyType(StrEnum):
    HTTP = "http"
    HTTPS = "https"
    SOCKS4 = "socks4"
    SOCKS5 = "socks5"


class ProxyStatus(StrEnum):
    UNCHECKED = "unchecked"  # added, no check recorded yet: no score, not counted active
    ACTIVE = "active"
    DEGRADED = "degraded"
    DEAD = "dead"
    DISABLED = "disabled"


class PostState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELLED = "cancelled"


# One model for "the outcome is unknown and cannot be checked: an operator decides", in both
# workloads that talk to people: a state of the row (nothing picks it up again, the console's
# review page lists it), left only by an operator's verdict (`jobctl posts resolve`,
# `jobctl messages resolve`, the console).
NEEDS_REVIEW = "needs_review"


class PublicationState(StrEnum):
    PENDING = "pending"
    PUBLISHING = "publishing"  # a request may be in flight: never blindly repeated
    PUBLISHED = "published"
    FAILED = "failed"
    NEEDS_REVIEW = NEEDS_REVIEW


class MessageState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_REVIEW = NEEDS_REVIEW


class SocialPlatform(StrEnum):
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    THREADS = "threads"
    INSTAGRAM = "instagram"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    DISABLED = "disabled"
