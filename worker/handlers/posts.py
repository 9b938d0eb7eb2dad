"""Post publishing: the fan-out of due posts, and one publication of one post to one account.

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

import time
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.orm import Session

from shared.crypto import DecryptionError, decrypt
from shared.db import get_database
from shared.jobtypes.posts import PUBLISH, START_DUE, Publish
from shared.jobtypes.registry import EmptyPayload
from shared.models.domain import Post, PostPublication, SocialAccount
from shared.models.states import AccountStatus, PostState, PublicationState, SocialPlatform
from shared.outcomes import Discard, Outcome, Snooze
from shared.settings import Settings, get_settings
from shared.workloads import error_text, pacing
from shared.workloads.posts import FAN_OUT_PAGE, expire_account, settle_post, start_due_posts
from worker.binding import handles
from worker.context import JobContext
from worker.fanout import fan_out_pages
from worker.platforms import (
    INSTAGRAM, THREADS, AuthExpired, GraphPublisher, OutcomeUnknown, PermanentFailure, RateLimited,
    RecipientBlocked, TelegramBotApi, TransientFailure, WebhookPublisher,
)
from worker.platforms.clients import shared_client


@dataclass(frozen=True)
class Target:
    """What one attempt publishes, and where."""

    publication_id: int
    post_id: int
    account_id: int
    platform: str
    external_id: str
    url: str | None
    content: str
    media_url: str | None
    resumed: bool  # an earlier attempt marked it publishing and did not finish: outcome unknown
    token: str = field(repr=False)  # decrypted for this attempt only; never logged or raised
    reservation: pacing.Reservation | None = field(default=None, repr=False)


def marker(publication_id: int) -> str:
    """What a Graph-style post's text carries, so a later attempt can find it. Bracketed, so the
    marker of publication 4 is not found inside that of 42."""
    return f"[jp-{publication_id}]"


@handles(START_DUE)
def start_due(payload: EmptyPayload, ctx: JobContext) -> None:
    total = fan_out_pages(lambda session, limit: start_due_posts(session, limit=limit), FAN_OUT_PAGE)
    if total:
        ctx.logger.info("%d publication jobs enqueued", total)


@handles(PUBLISH)
def publish(payload: Publish, ctx: JobContext) -> Outcome | None:
    settings = get_settings()
    while True:
        with get_database().session() as session:
            step = _begin(session, payload.publication_id, ctx.job_id)
        if not isinstance(step, pacing.Wait):
            break
        if step.seconds > settings.send_wait_inline_seconds or ctx.cancelled:
            return Snooze(step.seconds)
        time.sleep(step.seconds)
    if not isinstance(step, Target):
        return step
    last = ctx.attempt >= ctx.max_attempts
    try:
        platform_post_id = _publish_paced(step, settings)
    except RateLimited as exc:
        _finish(step, PublicationState.PENDING, None)  # the platform did not act: take the mark back
        return Snooze(exc.retry_after)
    except TransientFailure as exc:
        if last:
            return _fail(step, f"gave up after {ctx.attempt} attempts: {exc}")
        _finish(step, PublicationState.PENDING, None)
        raise  # retried with backoff
    except AuthExpired as exc:
        with get_database().session() as session:
            _set(session, step.publication_id, PublicationState.FAILED, f"account token expired or revoked: {exc}")
            for post_id in {step.post_id, *expire_account(session, step.account_id, str(exc))}:
                settle_post(session, post_id)
        return Discard(f"account {step.account_id} token expired or revoked: {exc}")
    except (PermanentFailure, RecipientBlocked) as exc:
        return _fail(step, str(exc))
    except OutcomeUnknown as exc:
        if step.platform == SocialPlatform.TELEGRAM or last:
            return _review(step, f"outcome unknown: {exc}")
        raise  # the mark stays: the next attempt checks before it posts again
    with get_database().session() as session:
        _set(session, step.publication_id, PublicationState.PUBLISHED, None, platform_post_id)
        state = settle_post(session, step.post_id)
    ctx.logger.info("publication %s published as %s; post %s is %s", step.publication_id, platform_post_id, step.post_id, state)
    return None


def _begin(session: Session, publication_id: int, job_id: int) -> Target | pacing.Wait | Outcome | None:
    """Lock the publication, decide whether and how this attempt may publish, reserve the
    account's send and mark it; or say how long to wait."""
    publication = session.get(PostPublication, publication_id, with_for_update=True, populate_existing=True)
    if publication is None or publication.state not in (PublicationState.PENDING, PublicationState.PUBLISHING):
        return None  # gone, or settled by an earlier attempt or an operator: nothing to do
    post = session.get(Post, publication.post_id)
    account = session.get(SocialAccount, publication.social_account_id)
    assert post is not None and account is not None  # foreign keys
    refusal = None
    if post.state == PostState.CANCELLED:
        refusal = "the post was cancelled"
    elif account.status != AccountStatus.ACTIVE:
        refusal = f"account {account.id} is {account.status}" + (f": {account.status_reason}" if account.status_reason else "")
    resumed = publication.state == PublicationState.PUBLISHING
    if refusal is None and resumed and account.platform == SocialPlatform.TELEGRAM:
        return _settle_now(session, publication, PublicationState.NEEDS_REVIEW,
                           "an earlier attempt may have posted (it did not finish) and Telegram cannot be asked")
    token = ""
    if refusal is None:
        try:
            token = decrypt(account.access_token_encrypted or "")
        except DecryptionError as exc:
            refusal = str(exc)
    if refusal is not None:
        return _settle_now(session, publication, PublicationState.FAILED, refusal)
    settings = get_settings()
    reserved = pacing.reserve(session, [pacing.SendLimit(
        f"posts.account|{account.id}", settings.post_account_rate, settings.post_account_rate_period_seconds,
    )], holder=job_id, hold_seconds=settings.platform_timeout_seconds * 4 + 5)
    if isinstance(reserved, pacing.Wait):
        return reserved
    if not resumed:
        publication.publish_started_at = func.now()
    publication.state, publication.job_id = PublicationState.PUBLISHING, job_id
    return Target(
        publication_id=publication.id, post_id=post.id, account_id=account.id, platform=account.platform,
        external_id=account.external_id, url=account.settings.get("url"), content=post.content,
        media_url=post.media_url, resumed=resumed, token=token, reservation=reserved,
    )


def _publish_paced(target: Target, settings: Settings) -> str:
    """`_publish`, then the account's reservation ends (the limit counts it from its real end)."""
    try:
        return _publish(target, settings)
    finally:
        if target.reservation is not None:
            with get_database().session() as session:
                pacing.finish(session, target.reservation)


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


def _settle_now(session: Session, publication: PostPublication, state: str, message: str) -> Outcome:
    publication.state, publication.error_message = state, error_text(message)
    session.flush()
    settle_post(session, publication.post_id)
    return Discard(f"publication {publication.id}: {message}")


def _set(session: Session, publication_id: int, state: str, message: str | None, platform_post_id: str | None = None) -> None:
    publication = session.get(PostPublication, publication_id, with_for_update=True, populate_existing=True)
    assert publication is not None
    publication.state, publication.error_message = state, error_text(message)
    if platform_post_id is not None:
        publication.platform_post_id, publication.published_at = platform_post_id, func.now()
    session.flush()


def _finish(target: Target, state: str, message: str | None) -> None:
    with get_database().session() as session:
        _set(session, target.publication_id, state, message)
        settle_post(session, target.post_id)


def _fail(target: Target, message: str) -> Outcome:
    _finish(target, PublicationState.FAILED, message)
    return Discard(f"publication {target.publication_id} failed: {message}")


def _review(target: Target, message: str) -> Outcome:
    _finish(target, PublicationState.NEEDS_REVIEW, message)
    return Discard(f"publication {target.publication_id} flagged for review: {message}")
