"""Social accounts, posts and their publications: creating them, the fan-out of due posts, and
the post's state following its publications."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.crypto import encrypt
from shared.enqueue import enqueue
from shared.errors import InvalidTransition, NotFound, ValidationError
from shared.jobtypes.posts import PUBLISH
from shared.models.domain import Post, PostPublication, SocialAccount, User
from shared.models.states import AccountStatus, PostState, PublicationState, SocialPlatform
from shared.workloads import error_text

FAN_OUT_PAGE = 200  # due posts per transaction
_OPEN = (PublicationState.PENDING, PublicationState.PUBLISHING)


def add_social_account(
    session: Session, *, user_id: int, platform: str, external_id: str, token: str, url: str | None = None
) -> SocialAccount:
    """An account to publish to. `external_id`: the Telegram channel (`@name` or `-100...`), the
    Graph account id, or a name for a webhook. `token`: the bot token, OAuth access token or
    webhook secret (stored encrypted). `url`: the webhook's endpoint (webhook only)."""
    if platform not in set(SocialPlatform):
        raise ValidationError(f"platform must be one of {', '.join(SocialPlatform)}; got {platform!r}", field="platform")
    if not external_id:
        raise ValidationError("external_id is empty", field="external_id")
    if not token:
        raise ValidationError("a token (or webhook secret) is required", field="token")
    settings: dict[str, Any] = {}
    if platform == SocialPlatform.WEBHOOK:
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise ValidationError("a webhook account needs an http(s) url", field="url")
        settings["url"] = url
    elif url is not None:
        raise ValidationError("url is only for webhook accounts (other base URLs are settings)", field="url")
    _user(session, user_id)
    if session.scalar(select(SocialAccount.id).where(
        SocialAccount.platform == platform, SocialAccount.external_id == external_id
    )) is not None:
        raise ValidationError(f"a {platform} account {external_id!r} exists already", field="external_id")
    account = SocialAccount(
        user_id=user_id, platform=platform, external_id=external_id, access_token_encrypted=encrypt(token),
        settings=settings,
    )
    session.add(account)
    session.flush()
    return account


def set_account_token(session: Session, account_id: int, token: str) -> SocialAccount:
    """A reconnected account: a new token, and active again."""
    account = _account(session, account_id)
    account.access_token_encrypted = encrypt(token)
    account.status, account.status_reason = AccountStatus.ACTIVE, None
    return account


def create_post(
    session: Session, *, user_id: int, content: str, account_ids: Sequence[int],
    scheduled_at: datetime | None = None, media_url: str | None = None,
) -> Post:
    """A scheduled post (due now when no time is given) with one pending publication per account."""
    if not content or not content.strip():
        raise ValidationError("a post needs content", field="content")
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise ValidationError("scheduled_at must be timezone-aware", field="scheduled_at")
    if not account_ids:
        raise ValidationError("a post needs at least one target account", field="account_ids")
    _user(session, user_id)
    accounts = {a.id: a for a in session.scalars(select(SocialAccount).where(SocialAccount.id.in_(set(account_ids))))}
    for account_id in account_ids:
        account = accounts.get(account_id)
        if account is None or account.user_id != user_id:
            raise ValidationError(f"social account {account_id} does not exist or is not this user's", field="account_ids")
    post = Post(user_id=user_id, content=content, media_url=media_url, state=PostState.SCHEDULED,
                scheduled_at=scheduled_at or func.now())
    session.add(post)
    session.flush()
    session.add_all(PostPublication(post_id=post.id, social_account_id=a) for a in dict.fromkeys(account_ids))
    session.flush()
    return post


def cancel_post(session: Session, post_id: int) -> Post:
    post = _post(session, post_id, lock=True)
    if post.state not in (PostState.DRAFT, PostState.SCHEDULED):
        raise InvalidTransition(f"post {post_id} is {post.state}; only a draft or scheduled post can be cancelled")
    post.state, post.updated_at = PostState.CANCELLED, func.now()
    return post


def start_due_posts(session: Session, *, now: datetime | None = None, limit: int = FAN_OUT_PAGE) -> list[int]:
    """The fan-out: due scheduled posts move to publishing and get one job per pending
    publication, in this transaction. Posts another sweep holds are skipped, not waited for.
    Returns the ids of the publication jobs."""
    due_at = now if now is not None else func.now()
    posts = list(session.scalars(
        select(Post).where(Post.state == PostState.SCHEDULED, Post.scheduled_at <= due_at)
        .order_by(Post.scheduled_at, Post.id).limit(limit).with_for_update(skip_locked=True)
    ))
    jobs: list[int] = []
    for post in posts:
        post.state, post.updated_at = PostState.PUBLISHING, func.now()
        publications = session.scalars(select(PostPublication).where(
            PostPublication.post_id == post.id, PostPublication.state == PublicationState.PENDING,
            PostPublication.job_id.is_(None),
        ))
        started = 0
        for publication in publications:
            payload = {"publication_id": publication.id, "social_account_id": publication.social_account_id}
            publication.job_id = enqueue(session, PUBLISH, payload).id
            jobs.append(publication.job_id)
            started += 1
        session.flush()
        if not started:  # every publication was settled before the post was due (expired account)
            settle_post(session, post.id)
    return jobs


def any_due_posts(session: Session) -> bool:
    """Whether the fan-out would find a post to start (the sweep's schedule asks first)."""
    return bool(session.scalar(select(
        select(Post.id).where(Post.state == PostState.SCHEDULED, Post.scheduled_at <= func.now()).exists()
    )))


def settle_post(session: Session, post_id: int) -> str:
    """Bring the post's state in line with its publications: published when every one is,
    failed (naming them) once none is open and one failed, publishing while any is open or
    waits for an operator. Locks the post, so concurrent last publications settle once."""
    post = _post(session, post_id, lock=True)
    rows = session.execute(
        select(PostPublication.id, PostPublication.state, PostPublication.error_message, SocialAccount.platform,
               SocialAccount.id.label("account_id"))
        .join(SocialAccount, SocialAccount.id == PostPublication.social_account_id)
        .where(PostPublication.post_id == post_id).order_by(PostPublication.id)
    ).all()
    states = {row.state for row in rows}
    if post.state != PostState.PUBLISHING or states & set(_OPEN):
        return post.state
    review = [r for r in rows if r.state == PublicationState.NEEDS_REVIEW]
    failed = [r for r in rows if r.state == PublicationState.FAILED]
    if review:
        post.error_message = error_text("needs review: " + ", ".join(f"publication {r.id} ({r.platform} account {r.account_id})" for r in review))
    elif failed:
        post.state = PostState.FAILED
        post.error_message = error_text(f"{len(failed)} of {len(rows)} publications failed: " + "; ".join(
            f"publication {r.id} ({r.platform} account {r.account_id}): {r.error_message}" for r in failed
        ))
    else:
        post.state, post.published_at, post.error_message = PostState.PUBLISHED, func.now(), None
    post.updated_at = func.now()
    session.flush()
    return post.state


def expire_account(session: Session, account_id: int, reason: str) -> list[int]:
    """The account's token was refused: the account becomes expired and its publications that
    have not started fail. Returns the posts whose state may have changed (settle them)."""
    account = _account(session, account_id, lock=True)
    reason = error_text(reason) or "no reason given"
    account.status, account.status_reason = AccountStatus.EXPIRED, reason
    pending = list(session.scalars(select(PostPublication).where(
        PostPublication.social_account_id == account_id, PostPublication.state == PublicationState.PENDING,
    ).with_for_update()))
    for publication in pending:
        publication.state, publication.error_message = PublicationState.FAILED, error_text(f"account expired: {reason}")
    session.flush()
    return sorted({p.post_id for p in pending})


def resolve_publication(session: Session, publication_id: int, *, platform_post_id: str | None, failed_reason: str | None) -> PostPublication:
    """An operator's verdict on a publication flagged for review: it was published (under
    `platform_post_id`) or it was not (`failed_reason`)."""
    if (platform_post_id is None) == (failed_reason is None):
        raise ValidationError("give either the platform post id or a failure reason", field="platform_post_id")
    publication = session.get(PostPublication, publication_id, with_for_update=True)
    if publication is None:
        raise NotFound(f"no publication with id {publication_id}")
    if publication.state != PublicationState.NEEDS_REVIEW:
        raise InvalidTransition(f"publication {publication_id} is {publication.state}, not needs_review")
    if platform_post_id is not None:
        publication.state, publication.platform_post_id, publication.published_at = (
            PublicationState.PUBLISHED, platform_post_id, func.now())
    else:
        publication.state, publication.error_message = PublicationState.FAILED, error_text(failed_reason)
    session.flush()
    settle_post(session, publication.post_id)
    return publication


def list_posts(session: Session, limit: int = 50) -> list[Post]:
    return list(session.scalars(select(Post).order_by(Post.id.desc()).limit(limit)))


def publications_of(session: Session, post_id: int) -> list[PostPublication]:
    return list(session.scalars(select(PostPublication).where(PostPublication.post_id == post_id).order_by(PostPublication.id)))


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise ValidationError(f"no user with id {user_id}", field="user_id")
    return user


def _account(session: Session, account_id: int, *, lock: bool = False) -> SocialAccount:
    account = session.get(SocialAccount, account_id, with_for_update=lock)
    if account is None:
        raise NotFound(f"no social account with id {account_id}")
    return account


def _post(session: Session, post_id: int, *, lock: bool = False) -> Post:
    post = session.get(Post, post_id, with_for_update=lock, populate_existing=lock)
    if post is None:
        raise NotFound(f"no post with id {post_id}")
    return post
