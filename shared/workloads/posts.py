"""Social accounts, posts and their publications: creating them, the fan-out of due posts, an
attempt's claim on a publication (and what becomes of it), and the post's state following its
publications."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.crypto import DecryptionError, decrypt, encrypt
from shared.enqueue import enqueue
from shared.errors import InvalidTransition, NotFound, ValidationError
from shared.jobtypes.posts import PUBLISH
from shared.models.domain import Post, PostPublication, SocialAccount, User
from shared.models.states import AccountStatus, PostState, PublicationState, SocialPlatform
from shared.outcomes import Discard, Outcome
from shared.settings import Settings
from shared.workloads import error_text, flagged_for_review, pacing, undecryptable

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


def begin_publication(
    session: Session, publication_id: int, job_id: int, settings: Settings,
) -> Target | pacing.Wait | Outcome | None:
    """Lock the publication, decide whether and how this attempt may publish, reserve the
    account's send and mark it `publishing`; or say how long to wait, or how the job ends
    (settled here: the post cancelled, the account not active, Telegram resumed, the token
    undecryptable). None: nothing to do (gone, or settled by an earlier attempt or an operator)."""
    publication = session.get(PostPublication, publication_id, with_for_update=True, populate_existing=True)
    if publication is None or publication.state not in _OPEN:
        return None
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
        reason = "an earlier attempt may have posted (it did not finish) and Telegram cannot be asked"
        _settle_now(session, publication, PublicationState.NEEDS_REVIEW, reason)
        return flagged_for_review(f"publication {publication.id}", reason)
    if refusal is not None:
        return _settle_now(session, publication, PublicationState.FAILED, refusal)
    try:
        token = decrypt(account.access_token_encrypted or "", settings)
    except DecryptionError as exc:
        _settle_now(session, publication, PublicationState.FAILED, str(exc))
        return undecryptable(f"publication {publication.id}", exc)
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


def _settle_now(session: Session, publication: PostPublication, state: str, message: str) -> Outcome:
    publication.state, publication.error_message = state, error_text(message)
    session.flush()
    settle_post(session, publication.post_id)
    return Discard(f"publication {publication.id}: {message}")


def end_publication(session: Session, target: Target) -> None:
    """The platform call returned (or gave up): the account's send counts from its real end."""
    if target.reservation is not None:
        pacing.finish(session, target.reservation)


def settle_publication(
    session: Session, target: Target, state: str, message: str | None, platform_post_id: str | None = None,
) -> str:
    """What became of the attempt: `pending` takes the mark back (the platform did not act),
    `published`, `failed` or `needs_review`; the post follows. Returns the post's state."""
    _set(session, target.publication_id, state, message, platform_post_id)
    return settle_post(session, target.post_id)


def fail_for_expired_token(session: Session, target: Target, reason: str) -> None:
    """The platform refused the account's token: this publication fails, the account expires
    (failing its pending publications), and every post concerned is settled."""
    _set(session, target.publication_id, PublicationState.FAILED, f"account token expired or revoked: {reason}")
    for post_id in {target.post_id, *expire_account(session, target.account_id, reason)}:
        settle_post(session, post_id)


def _set(session: Session, publication_id: int, state: str, message: str | None, platform_post_id: str | None = None) -> None:
    publication = session.get(PostPublication, publication_id, with_for_update=True, populate_existing=True)
    assert publication is not None
    publication.state, publication.error_message = state, error_text(message)
    if platform_post_id is not None:
        publication.platform_post_id, publication.published_at = platform_post_id, func.now()
    session.flush()


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
