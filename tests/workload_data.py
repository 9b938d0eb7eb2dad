"""What the workload tests share: rows made through the services, a handler context for
calling handlers in the test process, and a search for leaked secrets."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from sqlalchemy import text

from shared.clock import Clock, SystemClock
from shared.db import Database
from shared.settings import Settings
from shared.workloads import messages as message_service
from shared.workloads import posts as post_service
from worker.context import JobContext, JobLogger


def context(
    database: Database, settings: Settings, job_id: int = 1, attempt: int = 1, max_attempts: int = 5,
    job_type: str = "test", clock: Clock | None = None,
) -> JobContext:
    """A handler's context as the runner makes it, for calling a handler directly: the test
    gives it the database and settings the handler is to use."""
    return JobContext(
        job_id=job_id, attempt=attempt, max_attempts=max_attempts, job_type=job_type, queue="default",
        task_id=None, metadata={}, logger=JobLogger(logging.getLogger("tests.workloads"), {}),
        database=database, settings=settings, clock=clock or SystemClock(), _write_progress=lambda fraction: None,
    )


def add_user(db: Database, name: str = "u1") -> int:
    with db.session() as session:
        return message_service.add_user(session, external_id=name).id


def connect(db: Database, user_id: int, chat_id: int, token: str) -> int:
    with db.session() as session:
        return message_service.connect_telegram(session, user_id=user_id, chat_id=chat_id, bot_token=token).id


def add_account(db: Database, user_id: int, platform: str, external_id: str, token: str, url: str | None = None) -> int:
    with db.session() as session:
        return post_service.add_social_account(
            session, user_id=user_id, platform=platform, external_id=external_id, token=token, url=url).id


def add_post(db: Database, user_id: int, content: str, accounts: Iterable[int], **options: Any) -> int:
    with db.session() as session:
        return post_service.create_post(session, user_id=user_id, content=content, account_ids=list(accounts), **options).id


def add_message(db: Database, user_id: int, message: str, **options: Any) -> int:
    with db.session() as session:
        return message_service.create_message(session, user_id=user_id, text=message, **options).id


def row(db: Database, sql: str, **params: Any) -> Any:
    with db.session() as session:
        return session.execute(text(sql), params).one()


def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    with db.session() as session:
        return list(session.execute(text(sql), params).all())


# Every place a secret could leak to that the database holds: payloads, metadata, errors, logs.
_STORED_TEXT = """
SELECT payload::text || metadata::text || coalesce(last_error, '') || coalesce(cancel_reason, '') FROM jobs
UNION ALL SELECT coalesce(error_class, '') || coalesce(error_message, '') || coalesce(traceback, '') FROM job_executions
UNION ALL SELECT message FROM job_logs
UNION ALL SELECT coalesce(error_message, '') FROM post_publications
UNION ALL SELECT coalesce(error_message, '') FROM posts
UNION ALL SELECT coalesce(failure_reason, '') FROM proactive_messages
UNION ALL SELECT coalesce(deactivated_reason, '') FROM telegram_connections
UNION ALL SELECT coalesce(status_reason, '') || settings::text FROM social_accounts
UNION ALL SELECT coalesce(error_message, '') FROM proxy_health_logs
"""


def leaks(db: Database, secrets: Iterable[str], logs: Iterable[str] = ()) -> list[str]:
    """Where any of the secrets shows up in clear: stored job data, domain error texts, logs."""
    with db.session() as session:
        stored = "\n".join(session.execute(text(_STORED_TEXT)).scalars())
    found = []
    for secret in secrets:
        if secret in stored:
            found.append(f"database holds {secret[:4]}...")
        for index, log in enumerate(logs):
            if secret in log:
                found.append(f"log {index} holds {secret[:4]}...")
    return found
