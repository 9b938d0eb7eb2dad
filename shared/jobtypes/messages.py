"""Proactive Telegram messages: due pending messages go to the user's active connection."""

from __future__ import annotations

from pydantic import Field

from shared.jobtypes.recurring import recurring
from shared.jobtypes.registry import EmptyPayload, Payload, declare, function_at


class SendMessage(Payload):
    message_id: int = Field(gt=0)
    # The bot's public id (never its token), only as the key of the per-bot rate; None when the
    # user had no active connection at fan-out time (the handler then cancels the message).
    bot_id: int | None = None


SEND = declare(
    "messages.send", SendMessage,
    pool="io", queue="high", max_attempts=5, timeout_seconds=lambda s: s.platform_timeout_seconds + 30,
    unique_by=("message_id",),
    # Telegram's limits (30 a second per bot, one a second per chat) are checked at send time, by
    # the handler (shared/workloads/pacing.py), not at dispatch: a dispatch-time rate would
    # throttle the sends (a job held back at send time had already spent its dispatch slot).
    # Dispatch only bounds one bot's jobs in flight (two seconds' worth), so one bot's backlog
    # cannot take every worker thread from the others.
    limit_by=("bot_id",), limit_scope="telegram.bot",
    key_concurrency=lambda s: 2 * s.telegram_global_rate,
    description="Sends one proactive message through the Bot API, never twice.",
)


SEND_DUE = declare(
    "messages.send_due", EmptyPayload,
    pool="io", queue="high", max_attempts=1, timeout_seconds=300,
    has_work=function_at("shared.workloads.messages:any_due_messages"),
    description="Enqueues a messages.send for every due pending message.",
)

recurring(
    SEND_DUE, cron=lambda s: s.messages_due_cron, when=lambda s: s.workload_schedules,
    name="messages.send_due", misfire="skip",
)
