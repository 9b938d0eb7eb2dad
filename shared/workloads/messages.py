"""Users, their Telegram connections and proactive messages: creating them, the fan-out of due
messages, an attempt's claim on a message (and what becomes of its send), and an operator's
verdict on a message whose send has an unknown outcome."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared.crypto import DecryptionError, decrypt, encrypt
from shared.enqueue import enqueue
from shared.errors import InvalidTransition, NotFound, ValidationError
from shared.jobtypes.messages import SEND
from shared.models.domain import ProactiveMessage, TelegramConnection, User
from shared.models.states import MessageState
from shared.outcomes import Cancel, Outcome, Snooze
from shared.settings import Settings
from shared.workloads import error_text, flagged_for_review, pacing, undecryptable

FAN_OUT_PAGE = 500  # due messages per transaction
# A bot token is "<bot id>:<secret>"; the id is public (it is the bot's user id).
_BOT_TOKEN = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{20,}$")


def add_user(session: Session, *, external_id: str, display_name: str | None = None) -> User:
    if not external_id:
        raise ValidationError("external_id is empty", field="external_id")
    if session.scalar(select(User.id).where(User.external_id == external_id)) is not None:
        raise ValidationError(f"a user {external_id!r} exists already", field="external_id")
    user = User(external_id=external_id, display_name=display_name)
    session.add(user)
    session.flush()
    return user


def connect_telegram(session: Session, *, user_id: int, chat_id: int, bot_token: str) -> TelegramConnection:
    """The user's new active connection (token encrypted); a previous active one is replaced."""
    match = _BOT_TOKEN.match(bot_token or "")
    if match is None:
        # The value is not echoed: a mistyped token is still mostly a secret.
        raise ValidationError("bot_token does not look like a Telegram bot token (<bot id>:<secret>)", field="bot_token")
    if session.get(User, user_id) is None:
        raise ValidationError(f"no user with id {user_id}", field="user_id")
    session.execute(
        update(TelegramConnection).where(TelegramConnection.user_id == user_id, TelegramConnection.is_active)
        .values(is_active=False, deactivated_at=func.now(), deactivated_reason="replaced by a new connection")
    )
    connection = TelegramConnection(
        user_id=user_id, chat_id=chat_id, bot_token_encrypted=encrypt(bot_token), bot_id=int(match.group(1)),
    )
    session.add(connection)
    session.flush()
    return connection


def active_connection(session: Session, user_id: int, *, lock: bool = False) -> TelegramConnection | None:
    query = select(TelegramConnection).where(TelegramConnection.user_id == user_id, TelegramConnection.is_active)
    return session.scalar(query.with_for_update() if lock else query)


def deactivate_connection(session: Session, connection_id: int, reason: str) -> None:
    session.execute(
        update(TelegramConnection).where(TelegramConnection.id == connection_id, TelegramConnection.is_active)
        .values(is_active=False, deactivated_at=func.now(), deactivated_reason=error_text(reason))
    )


def create_message(session: Session, *, user_id: int, text: str, send_at: datetime | None = None) -> ProactiveMessage:
    """A pending message: sent when due (now when `send_at` is None) by the next fan-out."""
    if not text or len(text) > 4096:
        raise ValidationError("text must be 1 to 4096 characters (Telegram's limit)", field="text")
    if send_at is not None and send_at.tzinfo is None:
        raise ValidationError("send_at must be timezone-aware", field="send_at")
    if session.get(User, user_id) is None:
        raise ValidationError(f"no user with id {user_id}", field="user_id")
    message = ProactiveMessage(user_id=user_id, text=text, send_at=send_at)
    session.add(message)
    session.flush()
    return message


def enqueue_due_messages(
    session: Session, *, chat_interval: float, now: datetime | None = None, limit: int = FAN_OUT_PAGE,
) -> list[int]:
    """The fan-out: one send job per due pending message that has none yet, recorded on the
    message in this transaction (so a message gets one job, however many sweeps run). Messages
    in `needs_review` are not pending: they wait for an operator. Returns the job ids.

    A chat's second and later messages in one page start one chat interval apart: the limit is
    kept at send time anyway, but jobs that would only wait there would hold worker threads
    that other chats' messages could use. `chat_interval`: JOBS_TELEGRAM_CHAT_INTERVAL_SECONDS."""
    due_at = now if now is not None else func.now()
    rows = session.execute(
        select(ProactiveMessage.id, TelegramConnection.bot_id, TelegramConnection.id.label("connection_id"))
        .outerjoin(TelegramConnection, and_(
            TelegramConnection.user_id == ProactiveMessage.user_id, TelegramConnection.is_active))
        .where(
            ProactiveMessage.state == MessageState.PENDING, ProactiveMessage.job_id.is_(None),
            or_(ProactiveMessage.send_at.is_(None), ProactiveMessage.send_at <= due_at),
        )
        .order_by(func.coalesce(ProactiveMessage.send_at, ProactiveMessage.created_at), ProactiveMessage.id)
        .limit(limit).with_for_update(of=ProactiveMessage, skip_locked=True)
    ).all()
    jobs = []
    interval = chat_interval
    queued_per_chat: Counter[int | None] = Counter()
    for message_id, bot_id, connection_id in rows:
        ahead = queued_per_chat[connection_id] if connection_id is not None else 0
        queued_per_chat[connection_id] += 1
        job_id = enqueue(session, SEND, {"message_id": message_id, "bot_id": bot_id},
                         delay=ahead * interval if ahead else None).id
        session.execute(update(ProactiveMessage).where(ProactiveMessage.id == message_id).values(job_id=job_id))
        jobs.append(job_id)
    return jobs


def any_due_messages(session: Session) -> bool:
    """Whether the fan-out would find a message to send (the sweep's schedule asks first)."""
    return bool(session.scalar(select(
        select(ProactiveMessage.id).where(
            ProactiveMessage.state == MessageState.PENDING, ProactiveMessage.job_id.is_(None),
            or_(ProactiveMessage.send_at.is_(None), ProactiveMessage.send_at <= func.now()),
        ).exists()
    )))


def resolve_message(session: Session, message_id: int, verdict: str) -> ProactiveMessage:
    """An operator's verdict on a message flagged for review (its send has an unknown outcome):
    `sent` (the user got it), `failed` (they did not; do not send again) or `resend`."""
    message = session.get(ProactiveMessage, message_id, with_for_update=True)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    if message.state != MessageState.NEEDS_REVIEW:
        raise InvalidTransition(f"message {message_id} is {message.state}, not needs_review")
    if verdict == "sent":
        message.state, message.sent_at = MessageState.SENT, message.send_started_at or func.now()
    elif verdict == "failed":
        message.state = MessageState.FAILED
        message.failure_reason = error_text(f"{message.failure_reason}; operator: not delivered")
    elif verdict == "resend":
        # A new job by the next fan-out: the old one has finished, so the unique key is free.
        message.state = MessageState.PENDING
        message.send_started_at, message.job_id, message.failure_reason = None, None, None
    else:
        raise ValidationError("verdict must be sent, failed or resend", field="verdict")
    session.flush()
    return message


@dataclass(frozen=True)
class Delivery:
    """What one attempt sends, and where."""

    message_id: int
    connection_id: int
    chat_id: int
    text: str
    token: str = field(repr=False)  # decrypted for this attempt only; never logged or raised
    reservation: pacing.Reservation | None = field(default=None, repr=False)


def begin_send(
    session: Session, message_id: int, job_id: int, settings: Settings,
) -> Delivery | pacing.Wait | Outcome | None:
    """Lock the message, decide whether this attempt may send, reserve the send (per bot and
    per chat) and mark it; or say how long to wait, or how the job ends (settled here: no
    connection, an earlier send unfinished, the token undecryptable). None: nothing to do
    (gone, settled, or waiting for an operator)."""
    message = session.get(ProactiveMessage, message_id, with_for_update=True, populate_existing=True)
    if message is None or message.state != MessageState.PENDING:
        return None
    now = session.scalar(select(func.now()))
    assert now is not None
    if message.send_at is not None and message.send_at > now:  # moved later after it was enqueued
        return Snooze((message.send_at - now).total_seconds())
    if message.send_started_at is not None:
        reason = (f"a send started at {message.send_started_at.isoformat()} did not finish; "
                  "its outcome is unknown, so it is not repeated")
        message.state, message.failure_reason = MessageState.NEEDS_REVIEW, reason
        return flagged_for_review(f"message {message_id}", reason)
    connection = active_connection(session, message.user_id, lock=True)
    if connection is None:
        message.state, message.failure_reason = MessageState.CANCELLED, "no active Telegram connection"
        return Cancel(f"message {message_id}: no active Telegram connection")
    try:
        token = decrypt(connection.bot_token_encrypted, settings)
    except DecryptionError as exc:
        message.state, message.failure_reason = MessageState.FAILED, str(exc)
        return undecryptable(f"message {message_id}", exc)
    bot = token.split(":", 1)[0]  # the bot's public id: Telegram's limits are per bot
    # The mark is written before the reservation: the keys stay locked from the reservation to
    # the commit, so nothing else is written in between. Taken back if the send must wait; set
    # to the reservation's time when the send ends (end_send).
    earlier_job_id = message.job_id
    message.send_started_at, message.job_id = func.clock_timestamp(), job_id
    session.flush()
    reserved = pacing.reserve(session, [
        pacing.SendLimit(f"telegram.bot|{bot}", settings.telegram_global_rate, 1.0),
        pacing.SendLimit(f"telegram.chat|{bot}|{connection.chat_id}", 1, settings.telegram_chat_interval_seconds),
    ], holder=job_id, hold_seconds=settings.platform_timeout_seconds + 5)
    if isinstance(reserved, pacing.Wait):
        message.send_started_at, message.job_id = None, earlier_job_id
        return reserved
    return Delivery(message.id, connection.id, connection.chat_id, message.text, token, reserved)


def end_send(session: Session, delivery: Delivery, **values: object) -> None:
    """Record what became of the send (`values`: the message's columns) and end its reservation
    (every path after the request comes here, so the limits count the send from its real end,
    not its pessimistic one). `send_started_at=None` takes the mark back (Telegram did not act)."""
    if delivery.reservation is not None:
        pacing.finish(session, delivery.reservation)
        session.execute(update(TelegramConnection).where(TelegramConnection.id == delivery.connection_id)
                        .values(last_sent_at=delivery.reservation.started_at))
        if values.get("send_started_at", True) is not None:  # not when the mark is taken back
            values.setdefault("send_started_at", delivery.reservation.started_at)
    message = session.get(ProactiveMessage, delivery.message_id, with_for_update=True)
    assert message is not None
    for name, value in values.items():
        # failure_reason quotes what Telegram or an exception said: stored cleaned.
        setattr(message, name, error_text(value) if name == "failure_reason" else value)  # type: ignore[arg-type]


def list_messages(session: Session, limit: int = 50) -> list[ProactiveMessage]:
    return list(session.scalars(select(ProactiveMessage).order_by(ProactiveMessage.id.desc()).limit(limit)))
