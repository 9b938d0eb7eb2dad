"""Post publishing: the fan-out of due posts, and one publication of one post to one account.
What an attempt reads and writes is the service's (shared/workloads/posts.py); here are the
steps and the platform calls.

Never twice: before the request, the publication is marked `publishing` in a committed
transaction. An attempt that finds that mark knows an earlier one may have published, and does
not post blindly: a Graph-style API is searched for the marker the text carries, a webhook is
sent again under the same idempotency key (the receiver drops repeats), and Telegram, which
cannot be asked, gets the publication flagged `needs_review` for an operator. When the platform
says it did not act (429, 5xx, a request that never left), the mark is taken back.

Pace: at most `JOBS_POST_ACCOUNT_RATE` publications per account in any sliding
`JOBS_POST_ACCOUNT_RATE_PERIOD_SECONDS`, checked when the request is about to leave (the
reservation of shared/workloads/pacing.py, in the transaction that marks the publication); a
publication held back waits here when the wait is short, else it is snoozed for the wait.
"""

from __future__ import annotations

from shared.jobtypes.posts import PUBLISH, START_DUE, Publish
from shared.jobtypes.registry import EmptyPayload
from shared.models.states import PublicationState, SocialPlatform
from shared.outcomes import Discard, Outcome, Snooze
from shared.settings import Settings
from shared.workloads import posts as post_service
from shared.workloads import flagged_for_review
from shared.workloads.posts import FAN_OUT_PAGE, Target
from worker.binding import handles
from worker.context import JobContext
from worker.fanout import fan_out_pages
from worker.paced import begin_paced
from worker.platforms import (
    INSTAGRAM, THREADS, AuthExpired, GraphPublisher, OutcomeUnknown, PermanentFailure, RateLimited,
    RecipientBlocked, TelegramBotApi, TransientFailure, WebhookPublisher,
)
from worker.platforms.clients import shared_client


def marker(publication_id: int) -> str:
    """What a Graph-style post's text carries, so a later attempt can find it. Bracketed, so the
    marker of publication 4 is not found inside that of 42."""
    return f"[jp-{publication_id}]"


@handles(START_DUE)
def start_due(payload: EmptyPayload, ctx: JobContext) -> None:
    total = fan_out_pages(ctx.database, lambda session, limit: post_service.start_due_posts(session, limit=limit),
                          FAN_OUT_PAGE)
    if total:
        ctx.logger.info("%d publication jobs enqueued", total)


@handles(PUBLISH)
def publish(payload: Publish, ctx: JobContext) -> Outcome | None:
    step = begin_paced(ctx, lambda session: post_service.begin_publication(
        session, payload.publication_id, ctx.job_id, ctx.settings))
    if not isinstance(step, Target):
        return step
    last = ctx.attempt >= ctx.max_attempts
    try:
        platform_post_id = _publish_paced(ctx, step)
    except RateLimited as exc:
        _settle(ctx, step, PublicationState.PENDING, None)  # the platform did not act: take the mark back
        return Snooze(exc.retry_after)
    except TransientFailure as exc:
        if last:
            return _fail(ctx, step, f"gave up after {ctx.attempt} attempts: {exc}")
        _settle(ctx, step, PublicationState.PENDING, None)
        raise  # retried with backoff
    except AuthExpired as exc:
        with ctx.database.session() as session:
            post_service.fail_for_expired_token(session, step, str(exc))
        return Discard(f"account {step.account_id} token expired or revoked: {exc}")
    except (PermanentFailure, RecipientBlocked) as exc:
        return _fail(ctx, step, str(exc))
    except OutcomeUnknown as exc:
        if step.platform == SocialPlatform.TELEGRAM or last:
            message = f"outcome unknown: {exc}"
            _settle(ctx, step, PublicationState.NEEDS_REVIEW, message)
            return flagged_for_review(f"publication {step.publication_id}", message)
        raise  # the mark stays: the next attempt checks before it posts again
    state = _settle(ctx, step, PublicationState.PUBLISHED, None, platform_post_id)
    ctx.logger.info("publication %s published as %s; post %s is %s", step.publication_id, platform_post_id, step.post_id, state)
    return None


def _publish_paced(ctx: JobContext, target: Target) -> str:
    """`_publish`, then the account's reservation ends (the limit counts it from its real end)."""
    try:
        return _publish(target, ctx.settings)
    finally:
        with ctx.database.session() as session:
            post_service.end_publication(session, target)


def _publish(target: Target, settings: Settings) -> str:
    """One platform call (or two: Graph's container, then publish); returns the platform's id."""
    timeout = settings.platform_timeout_seconds
    if target.platform == SocialPlatform.TELEGRAM:
        with TelegramBotApi(settings.telegram_api_base_url, target.token, timeout=timeout, client=shared_client()) as bot:
            if target.media_url:
                sent = bot.send_photo(target.external_id, target.media_url, caption=target.content)
            else:
                sent = bot.send_message(target.external_id, target.content)
        return f"{sent.chat_id}:{sent.message_id}"
    if target.platform == SocialPlatform.WEBHOOK:
        if not target.url:
            raise PermanentFailure("the webhook account has no url")
        body = {"publication_id": target.publication_id, "post_id": target.post_id,
                "content": target.content, "media_url": target.media_url}
        with WebhookPublisher(target.url, target.token, timeout=timeout) as hook:
            # The same key on every attempt: a receiver that already has it answers with its id.
            return hook.publish(body, idempotency_key=f"publication-{target.publication_id}")
    threads = target.platform == SocialPlatform.THREADS
    base = settings.threads_api_base_url if threads else settings.instagram_api_base_url
    with GraphPublisher(base, target.token, target.external_id, timeout=timeout,
                        dialect=THREADS if threads else INSTAGRAM) as graph:
        if target.resumed:
            found = graph.find_published(marker(target.publication_id))
            if found is not None:
                return found  # the earlier attempt did publish: record it, do not post again
        return graph.publish(target.content, target.media_url, marker(target.publication_id))


def _settle(ctx: JobContext, target: Target, state: str, message: str | None, platform_post_id: str | None = None) -> str:
    with ctx.database.session() as session:
        return post_service.settle_publication(session, target, state, message, platform_post_id)


def _fail(ctx: JobContext, target: Target, message: str) -> Outcome:
    _settle(ctx, target, PublicationState.FAILED, message)
    return Discard(f"publication {target.publication_id} failed: {message}")
