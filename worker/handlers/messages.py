"""Proactive Telegram messages: the fan-out of due messages, and one send.

A person never gets the same message twice: `send_started_at` is committed before the request.
An attempt that finds it set (an earlier one crashed, or lost the answer) cannot ask Telegram
whether the message arrived, so it flags the message `needs_review` and stops; only an operator
sends it again (`jobctl messages resolve ID resend`). When Telegram says it did not act (429,
5xx, a request that never left) the mark is taken back and the send is tried again.

Pace, checked when the request is about to leave (shared/workloads/pacing.py): at most
`JOBS_TELEGRAM_GLOBAL_RATE` sends per bot in any sliding second and one per chat per
`JOBS_TELEGRAM_CHAT_INTERVAL_SECONDS`, as Telegram receives them, reserved under the keys' row
locks on the database's clock in the transaction that marks the message. A send that may not go
yet waits here when the wait is short (`JOBS_SEND_WAIT_INLINE_SECONDS`), else it is snoozed for
the wait (a snooze spends no attempt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.crypto import DecryptionError, decrypt
from shared.db import get_database
from shared.jobtypes.messages import SEND, SEND_DUE, SendMessage
from shared.jobtypes.registry import EmptyPayload
from shared.models.domain import ProactiveMessage, TelegramConnection
from shared.models.states import MessageState
from shared.outcomes import Cancel, Discard, Outcome, Snooze
from shared.settings import get_settings
from shared.workloads import error_text, pacing
from shared.workloads.messages import FAN_OUT_PAGE, active_connection, deactivate_connection, enqueue_due_messages
from worker.binding import handles
from worker.context import JobContext
from worker.fanout import fan_out_pages
from worker.platforms import (
    AuthExpired, OutcomeUnknown, PermanentFailure, RateLimited, RecipientBlocked, TelegramBotApi, TransientFailure,
)
from worker.platforms.clients import shared_client


@dataclass(frozen=True)
class Delivery:
    message_id: int
    connection_id: int
    chat_id: int
    text: str
    token: str = field(repr=False)  # decrypted for this attempt only; never logged or raised
    reservation: pacing.Reservation | None = field(default=None, repr=False)


@handles(SEND_DUE)
def send_due(payload: EmptyPayload, ctx: JobContext) -> None:
    total = fan_out_pages(lambda session, limit: enqueue_due_messages(session, limit=limit), FAN_OUT_PAGE)
    if total:
        ctx.logger.info("%d message sends enqueued", total)


@handles(SEND)
def send(payload: SendMessage, ctx: JobContext) -> Outcome | None:
    settings = get_settings()
    while True:
        with get_database().session() as session:
            step = _begin(session, payload.message_id, ctx.job_id)
        if not isinstance(step, pacing.Wait):
            break
        if step.seconds > settings.send_wait_inline_seconds or ctx.cancelled:
            return Snooze(step.seconds)
        time.sleep(step.seconds)
    if not isinstance(step, Delivery):
        return step
    try:
        with TelegramBotApi(settings.telegram_api_base_url, step.token, timeout=settings.platform_timeout_seconds,
                            client=shared_client()) as bot:
            sent = bot.send_message(step.chat_id, step.text)
    except RateLimited as exc:
        _update(step, send_started_at=None)  # Telegram did not send it: take the mark back
        return Snooze(exc.retry_after)
    except TransientFailure as exc:
        if ctx.attempt >= ctx.max_attempts:
            return _fail(step, f"gave up after {ctx.attempt} attempts: {exc}")
        _update(step, send_started_at=None)
        raise  # retried with backoff
    except (RecipientBlocked, AuthExpired) as exc:
        # Blocked by the user, or the bot's token was revoked: this chat cannot be written to.
        with get_database().session() as session:
            deactivate_connection(session, step.connection_id, str(exc))
        return _fail(step, str(exc))
    except PermanentFailure as exc:
        return _fail(step, str(exc))
    except OutcomeUnknown as exc:
        reason = f"outcome unknown, not repeated: {exc}"
        _update(step, needs_review=True, failure_reason=reason)
        return Discard(f"message {step.message_id} flagged for review: {reason}")
    _update(step, state=MessageState.SENT, sent_at=func.now(), telegram_message_id=sent.message_id)
    ctx.logger.info("message %s sent as telegram message %s", step.message_id, sent.message_id)
    return None


def _begin(session: Session, message_id: int, job_id: int) -> Delivery | pacing.Wait | Outcome | None:
    """Lock the message, decide whether this attempt may send, reserve the send (per bot and
    per chat) and mark it; or say how long to wait."""
    message = session.get(ProactiveMessage, message_id, with_for_update=True, populate_existing=True)
    if message is None or message.state != MessageState.PENDING or message.needs_review:
        return None  # gone, settled, or waiting for an operator
    now = session.scalar(select(func.now()))
    assert now is not None
    if message.send_at is not None and message.send_at > now:  # moved later after it was enqueued
        return Snooze((message.send_at - now).total_seconds())
    if message.send_started_at is not None:
        message.needs_review = True
        message.failure_reason = (f"a send started at {message.send_started_at.isoformat()} did not finish; "
                                  "its outcome is unknown, so it is not repeated")
        return Discard(f"message {message_id} flagged for review: {message.failure_reason}")
    connection = active_connection(session, message.user_id, lock=True)
    if connection is None:
        message.state, message.failure_reason = MessageState.CANCELLED, "no active Telegram connection"
        return Cancel(f"message {message_id}: no active Telegram connection")
    try:
        token = decrypt(connection.bot_token_encrypted)
    except DecryptionError as exc:
        message.state, message.failure_reason = MessageState.FAILED, str(exc)
        return Discard(f"message {message_id}: {exc}")
    settings = get_settings()
    bot = token.split(":", 1)[0]  # the bot's public id: Telegram's limits are per bot
    # The mark is written before the reservation: the keys stay locked from the reservation to
    # the commit, so nothing else is written in between. Taken back if the send must wait; set
    # to the reservation's time when the send ends (_update).
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


def _update(step: Delivery, **values: object) -> None:
    """Record what became of the send and end its reservation (every path after the request
    comes here, so the limits count the send from its real end, not its pessimistic one)."""
    with get_database().session() as session:
        if step.reservation is not None:
            pacing.finish(session, step.reservation)
            session.execute(update(TelegramConnection).where(TelegramConnection.id == step.connection_id)
                            .values(last_sent_at=step.reservation.started_at))
            if values.get("send_started_at", True) is not None:  # not when the mark is taken back
                values.setdefault("send_started_at", step.reservation.started_at)
        message = session.get(ProactiveMessage, step.message_id, with_for_update=True)
        assert message is not None
        for name, value in values.items():
            # failure_reason quotes what Telegram or an exception said: stored cleaned.
            setattr(message, name, error_text(value) if name == "failure_reason" else value)


def _fail(step: Delivery, reason: str) -> Outcome:
    _update(step, state=MessageState.FAILED, failure_reason=reason)
    return Discard(f"message {step.message_id} failed: {reason}")
