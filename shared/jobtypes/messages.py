"""Proactive Telegram messages: due pending messages go to the user's active connection."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.jobtypes.registry import EmptyPayload, Payload, declare
from shared.schedules import schedule
from shared.settings import get_settings

_settings = get_settings()


class SendMessage(Payload):
    message_id: int = Field(gt=0)
    # The bot's public id (never its token), only as the key of the per-bot rate; None when the
    # user had no active connection at fan-out time (the handler then cancels the message).
    bot_id: int | None = None


SEND = declare(
    "messages.send", SendMessage,
    pool="io", queue="high", max_attempts=5, timeout_seconds=_settings.platform_timeout_seconds + 30,
    unique_by=("message_id",),
    # Telegram's limits (30 a second per bot, one a second per chat) are checked at send time, by
    # the handler (shared/workloads/pacing.py), not at dispatch: a dispatch-time rate would
    # throttle the sends (a job held back at send time had already spent its dispatch slot).
    # Dispatch only bounds one bot's jobs in flight (two seconds' worth), so one bot's backlog
    # cannot take every worker thread from the others.
    limit_by=("bot_id",), limit_scope="telegram.bot",
    key_concurrency=2 * _settings.telegram_global_rate,
    description="Sends one proactive message through the Bot API, never twice.",
)


def _has_work(session: Any) -> bool:
    from shared.workloads.messages import any_due_messages  # that module imports this one: look it up at call time

    return any_due_messages(session)


SEND_DUE = declare(
    "messages.send_due", EmptyPayload,
    pool="io", queue="high", max_attempts=1, timeout_seconds=300,
    has_work=_has_work,
    description="Enqueues a messages.send for every due pending message.",
)

if _settings.workload_schedules:
    schedule(SEND_DUE, cron=_settings.messages_due_cron, name="messages.send_due", misfire="skip")
