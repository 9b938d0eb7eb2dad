"""The workloads' tables: users and their Telegram connections, proactive messages, proxies
and their health logs, social accounts, posts and their publications.

Secrets (bot tokens, OAuth tokens, proxy passwords) are stored encrypted (`*_encrypted`
columns hold Fernet tokens, see `shared.crypto`), never in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Double, ForeignKey, Identity, Index, Integer, SmallInteger, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import EMPTY_OBJECT, Base, created_at_column, one_of
from shared.models.states import (
    AccountStatus,
    MessageState,
    PostState,
    ProxyStatus,
    ProxyType,
    PublicationState,
    SocialPlatform,
)


def _id() -> Any:
    return mapped_column(BigInteger, Identity(always=False), primary_key=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = _id()
    external_id: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class TelegramConnection(Base):
    __tablename__ = "telegram_connections"
    __table_args__ = (
        # A user has at most one active connection: the one messages go to.
        Index("uq_telegram_connections_user_active", "user_id", unique=True, postgresql_where=sql_text("is_active")),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    chat_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bot_token_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    # The bot's public user id (the token's part before ':'): the key of the per-bot send rate,
    # readable without decrypting the token.
    bot_id: Mapped[int | None] = mapped_column(BigInteger)
    # The last send to this chat was reserved at: paces sends to one chat.
    last_sent_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql_text("true"))
    deactivated_at: Mapped[datetime | None]
    deactivated_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class ProactiveMessage(Base):
    __tablename__ = "proactive_messages"
    __table_args__ = (
        one_of("state", list(MessageState)),
        CheckConstraint("length(text) BETWEEN 1 AND 4096", name="text_length"),
        CheckConstraint("state <> 'sent' OR sent_at IS NOT NULL", name="sent_has_sent_at"),
        # The fan-out: pending messages that are due.
        Index("ix_proactive_messages_due", "send_at", postgresql_where=sql_text("state = 'pending'")),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    send_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql_text("'pending'"))
    send_started_at: Mapped[datetime | None]  # set before the request: a crash after it is not repeated
    sent_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()


class Proxy(Base):
    __tablename__ = "proxies"
    __table_args__ = (
        one_of("type", list(ProxyType)),
        one_of("status", list(ProxyStatus)),
        CheckConstraint("health_score BETWEEN 0 AND 100", name="health_score_range"),
        # No check, no score: an unchecked proxy is not "healthy by default".
        CheckConstraint("status <> 'unchecked' OR health_score IS NULL", name="unchecked_has_no_score"),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint("consecutive_failures >= 0", name="consecutive_failures_not_negative"),
        UniqueConstraint("type", "host", "port", "username"),
    )

    id: Mapped[int] = _id()
    type: Mapped[str] = mapped_column(Text, nullable=False)
    host: Mapped[str] = mapped_column(Text, nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    username: Mapped[str | None] = mapped_column(Text)
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql_text("'unchecked'"))
    health_score: Mapped[int | None] = mapped_column(SmallInteger)  # NULL until the first check
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql_text("0"))
    last_checked_at: Mapped[datetime | None]
    last_latency_ms: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at_column()


class ProxyHealthLog(Base):
    __tablename__ = "proxy_health_logs"
    __table_args__ = (
        # Scoring reads a proxy's recent checks, newest first.
        Index("ix_proxy_health_logs_proxy_id_checked_at", "proxy_id", "checked_at"),
        # The pruner finds rows past retention by age (migration 0011).
        Index("ix_proxy_health_logs_checked_at", "checked_at"),
    )

    id: Mapped[int] = _id()
    proxy_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("proxies.id", ondelete="CASCADE"), nullable=False)
    checked_at: Mapped[datetime] = created_at_column()
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    exit_ip: Mapped[str | None] = mapped_column(Text)


class ProxySweep(Base):
    """One fan-out of proxy checks: how many proxies it holds, how many are checked, when it
    started and finished (what `jobctl proxies sweeps` and the sweep metrics read)."""

    __tablename__ = "proxy_sweeps"
    __table_args__ = (
        CheckConstraint("checked >= 0 AND checked <= total", name="checked_within_total"),
    )

    id: Mapped[int] = _id()
    started_at: Mapped[datetime] = created_at_column()
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    checked: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql_text("0"))
    healthy: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql_text("0"))
    batches: Mapped[int] = mapped_column(Integer, nullable=False)
    # Its check jobs: a new sweep waits while one of them is still active.
    job_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False, server_default=sql_text("'{}'"))
    finished_at: Mapped[datetime | None]  # every proxy checked, or its jobs ended without checking the rest


class SendWindow(Base):
    """A send-time limit's key (a bot, a chat of a bot, a social account): the row a reservation
    locks, and when the next waiter should try (a hint that spreads waiters over the free slots)."""

    __tablename__ = "send_windows"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    retry_tail: Mapped[datetime | None]


class SendSlot(Base):
    """One send counted against a key: started (the database's clock when it was reserved),
    ended (an upper bound of when its answer came; NULL while in flight) and the latest it can
    still be in flight (a holder that died stops counting as in flight then)."""

    __tablename__ = "send_slots"
    __table_args__ = (Index("ix_send_slots_key", "key"),)

    id: Mapped[int] = _id()
    key: Mapped[str] = mapped_column(Text, ForeignKey("send_windows.key", ondelete="CASCADE"), nullable=False)
    holder: Mapped[int | None] = mapped_column(BigInteger)  # the job id, for the reader
    started_at: Mapped[datetime] = mapped_column(nullable=False)
    ended_at: Mapped[datetime | None]
    expires_at: Mapped[datetime] = mapped_column(nullable=False)


class SocialAccount(Base):
    __tablename__ = "social_accounts"
    __table_args__ = (
        one_of("platform", list(SocialPlatform)),
        one_of("status", list(AccountStatus)),
        UniqueConstraint("platform", "external_id"),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    external_id: Mapped[str] = mapped_column(Text, nullable=False)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql_text("'active'"))
    status_reason: Mapped[str | None] = mapped_column(Text)  # why it is expired or disabled
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = created_at_column()


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        one_of("state", list(PostState)),
        # The fan-out: scheduled posts that are due.
        Index("ix_posts_due", "scheduled_at", postgresql_where=sql_text("state = 'scheduled'")),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    media_url: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql_text("'draft'"))
    scheduled_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class PostPublication(Base):
    __tablename__ = "post_publications"
    __table_args__ = (
        one_of("state", list(PublicationState)),
        UniqueConstraint("post_id", "social_account_id"),
        # "Never published twice" needs the platform's id of what was published.
        CheckConstraint("state <> 'published' OR platform_post_id IS NOT NULL", name="published_has_platform_post_id"),
        # An expired account fails its pending publications; deletes of accounts cascade here.
        Index("ix_post_publications_social_account_id", "social_account_id"),
    )

    id: Mapped[int] = _id()
    post_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False)
    social_account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("social_accounts.id", ondelete="CASCADE"), nullable=False
    )
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql_text("'pending'"))
    platform_post_id: Mapped[str | None] = mapped_column(Text)
    publish_started_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()
