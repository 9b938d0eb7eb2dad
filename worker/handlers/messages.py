"""Proactive Telegram messages: the fan-out of due messages, and one send.

A person never gets the same message twice: `send_started_at` is committed before the request.
An attempt that finds it set (an earlier one crashed, or lost the answer) cannot ask Telegram
whether the message arrived, so it moves the message to `needs_review` and stops; only an operator
sends it again (`jobctl messages resolve ID resend`). When Telegram says it did not act (429,
5xx, a request that never left) the mark is taken back and the send is tried again.

Pace, checked when the request is about to leave (shared/workloads/pacing.py): at most
`JOBS_TELEGRAM_GLOBAL_RATE` sends per bot in any sliding second and one per chat per
`JOBS_TELEGRAM_CHAT_INTERVAL_SECONDS`, as Telegram receives them, reserved under the keys' row
locks on the database's clock in the transaction that marks the message. A send that may not go
yet waits here when the wait is short (`JOBS_SEND_WAIT_INLINE_SECONDS`), else it is snoozed for
the wait (a snooze spends no attempt).

What an attempt reads and writes is the service's (shared/workloads/messages.py); here are the
steps and the call to Telegram.
"""

from __future__ import annotations

from sqlalchemy import func

from shared.jobtypes.messages import SEND, SEND_DUE, SendMessage
from shared.jobtypes.registry import EmptyPayload
from shared.models.states import MessageState
from shared.outcomes import Discard, Outcome, Snooze
from shared.workloads import messages as message_service
from shared.workloads import flagged_for_review
from shared.workloads.messages import FAN_OUT_PAGE, Delivery
from worker.binding import handles
from worker.context import JobContext
from worker.fanout import fan_out_pages
from worker.paced import begin_paced
from worker.platforms import (
    AuthExpired, OutcomeUnknown, PermanentFailure, RateLimited, RecipientBlocked, TelegramBotApi, TransientFailure,
)
from worker.platforms.clients import shared_client


@handles(SEND_DUE)
def send_due(payload: EmptyPayload, ctx: JobContext) -> None:
    interval = ctx.settings.telegram_chat_interval_seconds
    total = fan_out_pages(ctx.database, lambda session, limit: message_service.enqueue_due_messages(
        session, chat_interval=interval, limit=limit), FAN_OUT_PAGE)
    if total:
        ctx.logger.info("%d message sends enqueued", total)


@handles(SEND)
def send(payload: SendMessage, ctx: JobContext) -> Outcome | None:
    settings = ctx.settings
    step = begin_paced(ctx, lambda session: message_service.begin_send(session, payload.message_id, ctx.job_id, settings))
    if not isinstance(step, Delivery):
        return step
    try:
        with TelegramBotApi(settings.telegram_api_base_url, step.token, timeout=settings.platform_timeout_seconds,
                            client=shared_client()) as bot:
            sent = bot.send_message(step.chat_id, step.text)
    except RateLimited as exc:
        _end(ctx, step, send_started_at=None)  # Telegram did not send it: take the mark back
        return Snooze(exc.retry_after)
    except TransientFailure as exc:
        if ctx.attempt >= ctx.max_attempts:
            return _fail(ctx, step, f"gave up after {ctx.attempt} attempts: {exc}")
        _end(ctx, step, send_started_at=None)
        raise  # retried with backoff
    except (RecipientBlocked, AuthExpired) as exc:
        # Blocked by the user, or the bot's token was revoked: this chat cannot be written to.
        with ctx.database.session() as session:
            message_service.deactivate_connection(session, step.connection_id, str(exc))
        return _fail(ctx, step, str(exc))
    except PermanentFailure as exc:
        return _fail(ctx, step, str(exc))
    except OutcomeUnknown as exc:
        reason = f"outcome unknown, not repeated: {exc}"
        _end(ctx, step, state=MessageState.NEEDS_REVIEW, failure_reason=reason)
        return flagged_for_review(f"message {step.message_id}", reason)
    _end(ctx, step, state=MessageState.SENT, sent_at=func.now(), telegram_message_id=sent.message_id)
    ctx.logger.info("message %s sent as telegram message %s", step.message_id, sent.message_id)
    return None


def _end(ctx: JobContext, step: Delivery, **values: object) -> None:
    with ctx.database.session() as session:
        message_service.end_send(session, step, **values)


def _fail(ctx: JobContext, step: Delivery, reason: str) -> Outcome:
    _end(ctx, step, state=MessageState.FAILED, failure_reason=reason)
    return Discard(f"message {step.message_id} failed: {reason}")
