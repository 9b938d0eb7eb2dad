"""Post publishing: due posts fan out into one publication job per target social account."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.jobtypes.registry import EmptyPayload, Payload, declare
from shared.schedules import schedule
from shared.settings import get_settings

_settings = get_settings()


class Publish(Payload):
    publication_id: int = Field(gt=0)
    social_account_id: int = Field(gt=0)  # in the payload only as the key of the account's limits


PUBLISH = declare(
    "posts.publish", Publish,
    pool="io", queue="default", max_attempts=8, timeout_seconds=_settings.platform_timeout_seconds * 4 + 30,
    # 5xx and timeouts retry with the platform's backoff (JOBS_BACKOFF_*); 429s snooze for
    # as long as the platform asks.
    unique_by=("publication_id",),
    # Per account, across platforms: platforms throttle (and flag) accounts that burst. The
    # rate (JOBS_POST_ACCOUNT_RATE per period) is checked at send time by the handler
    # (shared/workloads/pacing.py); dispatch bounds the publications in flight per account.
    limit_by=("social_account_id",), limit_scope="posts.account",
    key_concurrency=_settings.post_account_concurrency,
    description="Publishes one post to one social account, at most once.",
)


def _has_work(session: Any) -> bool:
    from shared.workloads.posts import any_due_posts  # that module imports this one: look it up at call time

    return any_due_posts(session)


START_DUE = declare(
    "posts.start_due", EmptyPayload,
    pool="io", queue="default", max_attempts=1, timeout_seconds=300,
    has_work=_has_work,
    description="Moves due scheduled posts to publishing and enqueues their publications.",
)

if _settings.workload_schedules:
    schedule(START_DUE, cron=_settings.posts_due_cron, name="posts.start_due", misfire="skip")
