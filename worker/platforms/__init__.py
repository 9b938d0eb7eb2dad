"""Adapters that talk HTTP to the platforms posts and messages go to.

Each adapter turns the platform's answer into a value or into one of the closed set of errors
in `worker.platforms.errors`; handlers decide what an outcome means for a job (retry, snooze,
fail, deactivate a connection). Adapters know nothing about jobs or the database.
"""

from worker.platforms.errors import (
    AuthExpired,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    RecipientBlocked,
    TransientFailure,
)
from worker.platforms.graph import INSTAGRAM, THREADS, GraphDialect, GraphPublisher
from worker.platforms.telegram import SentMessage, TelegramBotApi
from worker.platforms.webhook import WebhookPublisher, verify_signature

__all__ = [
    "INSTAGRAM",
    "THREADS",
    "AuthExpired",
    "GraphDialect",
    "GraphPublisher",
    "OutcomeUnknown",
    "PermanentFailure",
    "RateLimited",
    "RecipientBlocked",
    "SentMessage",
    "TelegramBotApi",
    "TransientFailure",
    "WebhookPublisher",
    "verify_signature",
]
