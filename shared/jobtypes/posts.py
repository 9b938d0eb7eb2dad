"""Post publishing: due posts fan out into one publication job per target social account."""

from __future__ import annotations

from pydantic import Field

from shared.jobtypes.recurring import recurring
from shared.jobtypes.registry import EmptyPayload, Payload, declare, function_at


class Publish(Payload):
    publication_id: int = Field(gt=0)
    social_account_id: int = Field(gt=0)  # in the payload only as the key of the account's limits


PUBLISH = declare(
    "posts.publish", Publish,
    pool="io", queue="default", max_attempts=8, timeout_seconds=lambda s: s.platform_timeout_seconds * 4 + 30,
    # 5xx and timeouts retry with the platform's backoff (JOBS_BACKOFF_*); 429s snooze for
    # as long as the platform asks.
    unique_by=("publication_id",),
    # Per account, across platforms: platforms throttle (and flag) accounts that burst. The
    # rate (JOBS_POST_ACCOUNT_RATE per period) is checked at send time by the handler
    # (shared/workloads/pacing.py); dispatch bounds the publications in flight per account.
    limit_by=("social_account_id",), limit_scope="posts.account",
    key_concurrency=lambda s: s.post_account_concurrency,
    description="Publishes one post to one social account, at most once.",
)


START_DUE = declare(
    "posts.start_due", EmptyPayload,
    pool="io", queue="default", max_attempts=1, timeout_seconds=300,
    has_work=function_at("shared.workloads.posts:any_due_posts"),
    description="Moves due scheduled posts to publishing and enqueues their publications.",
)

recurring(
    START_DUE, cron=lambda s: s.posts_due_cron, when=lambda s: s.workload_schedules,
    name="posts.start_due", misfire="skip",
)
