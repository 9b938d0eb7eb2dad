"""The workload handlers called in the test process, against the real database and the fake
platform server: every answer a platform can give ends in the right rows and outcome."""
# ruff: noqa: F811

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from shared.jobtypes.messages import SendMessage
from shared.jobtypes.posts import Publish
from shared.outcomes import Cancel, Discard, Snooze
from shared.settings import Settings, load_settings
from shared.workloads import posts as post_service
from shared.workloads.messages import enqueue_due_messages
from tests.rigs.platform_server import PlatformServer, platform_server  # noqa: F401
from tests.workload_data import add_account, add_message, add_post, add_user, connect, context, row, rows
from worker.handlers import messages as message_handlers
from worker.handlers import posts as post_handlers
from worker.platforms import TransientFailure

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(db, platform_server: PlatformServer) -> PlatformServer:
    return platform_server


@pytest.fixture
def settings(server: PlatformServer) -> Settings:
    """The handlers' settings, given to them in their context (as the runner does)."""
    return load_settings(
        telegram_api_base_url=server.telegram_base, instagram_api_base_url=server.graph_base,
        threads_api_base_url=server.graph_base, platform_timeout_seconds=0.5, telegram_chat_interval_seconds=5,
    )


def started_post(db, server: PlatformServer, platforms: list[str], content: str = "hello") -> tuple[int, list[int]]:
    """A due post to one account per platform, fanned out; returns its id and publication ids."""
    user = add_user(db)
    accounts = []
    for platform in platforms:
        if platform == "telegram":
            accounts.append(add_account(db, user, "telegram", "@channel", server.telegram_token))
        elif platform == "webhook":
            accounts.append(add_account(db, user, "webhook", "hook", server.webhook_secret, url=server.webhook_url))
        else:
            accounts.append(add_account(db, user, platform, server.graph_account_id, server.graph_token))
    post = add_post(db, user, content, accounts)
    with db.session() as session:
        assert len(post_service.start_due_posts(session)) == len(accounts)
    publications = [r.id for r in rows(db, "SELECT id FROM post_publications WHERE post_id = :p ORDER BY id", p=post)]
    return post, publications


def publish(db, settings: Settings, publication: int, attempt: int = 1, max_attempts: int = 8):
    account = row(db, "SELECT social_account_id FROM post_publications WHERE id = :i", i=publication)[0]
    payload = Publish(publication_id=publication, social_account_id=account)
    return post_handlers.publish(payload, context(db, settings, publication, attempt, max_attempts))


def publication(db, publication_id: int):
    return row(db, "SELECT state, platform_post_id, error_message FROM post_publications WHERE id = :i", i=publication_id)


def post_state(db, post_id: int):
    return row(db, "SELECT state, error_message FROM posts WHERE id = :i", i=post_id)


def test_a_post_to_every_platform_is_published_once(db, server, settings):
    post, pubs = started_post(db, server, ["telegram", "webhook", "threads"])
    assert post_state(db, post).state == "publishing"
    for pub in pubs:
        assert publish(db, settings, pub) is None
        assert publish(db, settings, pub) is None  # a second run (a duplicate job) finds it published
    assert [publication(db, p).state for p in pubs] == ["published"] * 3
    assert [publication(db, p).platform_post_id for p in pubs] == ["@channel:1", "wh_1", server.media[0]["id"]]
    assert post_state(db, post) == ("published", None)
    assert len(server.requests("telegram.sendMessage")) == len(server.requests("webhook")) == 1
    assert len(server.media) == 1 and "[jp-" in server.media[0]["text"]


def test_429_snoozes_5xx_retries_and_4xx_fails_with_the_platform_message(db, server, settings):
    post, (tg, hook) = started_post(db, server, ["telegram", "webhook"])
    server.fail_next("telegram.sendMessage", "rate_limit", retry_after=7)
    assert publish(db, settings, tg) == Snooze(7.0)
    assert publication(db, tg).state == "pending"  # Telegram did not act: no mark left behind
    server.fail_next("webhook", "server_error")
    with pytest.raises(TransientFailure):
        publish(db, settings, hook)
    assert publication(db, hook).state == "pending"
    server.fail_next("webhook", "bad_request", description="content rejected: too long")
    outcome = publish(db, settings, hook)
    assert isinstance(outcome, Discard) and "content rejected: too long" in outcome.reason
    assert publication(db, hook) == ("failed", None, "content rejected: too long")
    assert post_state(db, post).state == "publishing"  # the Telegram one is still open
    assert publish(db, settings, tg) is None
    state, message = post_state(db, post)
    assert state == "failed" and f"publication {hook} (webhook" in message and "too long" in message


def test_5xx_on_the_last_attempt_fails_the_publication(db, server, settings):
    post, (hook,) = started_post(db, server, ["webhook"])
    server.fail_next("webhook", "server_error")
    assert isinstance(publish(db, settings, hook, attempt=8, max_attempts=8), Discard)
    assert publication(db, hook).state == "failed" and post_state(db, post).state == "failed"


def test_an_expired_token_expires_the_account_and_fails_its_publications(db, server, settings):
    user = add_user(db)
    account = add_account(db, user, "instagram", server.graph_account_id, server.graph_token)
    first, second = add_post(db, user, "one", [account]), add_post(db, user, "two", [account])
    with db.session() as session:
        post_service.start_due_posts(session)
    pubs = [r.id for r in rows(db, "SELECT id FROM post_publications ORDER BY id")]
    server.fail_next("graph.media", "auth_expired")
    assert isinstance(publish(db, settings, pubs[0]), Discard)
    assert row(db, "SELECT status FROM social_accounts WHERE id = :a", a=account).status == "expired"
    assert [publication(db, p).state for p in pubs] == ["failed", "failed"]
    assert "Session has expired" in publication(db, pubs[1]).error_message
    assert post_state(db, first).state == post_state(db, second).state == "failed"
    assert publish(db, settings, pubs[1]) is None  # its job finds it settled
    assert len(server.requests("graph.media")) == 1


def test_a_graph_publish_whose_answer_is_lost_is_found_not_repeated(db, server, settings):
    post, (pub,) = started_post(db, server, ["threads"])
    server.fail_next("graph.media_publish", "hang", seconds=2)  # published, answer lost
    assert publish(db, settings, pub) is None  # the adapter found it by its marker
    assert len(server.media) == 1 and publication(db, pub).platform_post_id == server.media[0]["id"]


def test_a_resumed_graph_publication_checks_before_it_posts(db, server, settings):
    post, (pub,) = started_post(db, server, ["instagram"])
    server.fail_next("graph.media_publish", "reset", publish=True)  # published, connection reset
    server.fail_next("graph.media_list", "server_error")  # and the adapter's own search fails
    with pytest.raises(Exception):
        publish(db, settings, pub)
    assert publication(db, pub).state == "publishing"  # the mark stays: outcome unknown
    assert publish(db, settings, pub, attempt=2) is None  # the next attempt searches first and finds it
    assert len(server.media) == 1 and len(server.requests("graph.media_publish")) == 1
    assert post_state(db, post).state == "published"


def test_telegram_with_an_unknown_outcome_is_flagged_never_repeated(db, server, settings):
    post, (pub,) = started_post(db, server, ["telegram"])
    server.fail_next("telegram.sendMessage", "hang", seconds=2)
    assert isinstance(publish(db, settings, pub), Discard)
    assert publication(db, pub).state == "needs_review"
    assert publish(db, settings, pub, attempt=2) is None
    assert len(server.requests("telegram.sendMessage")) == 1
    state, message = post_state(db, post)
    assert state == "publishing" and "needs review" in message
    with db.session() as session:
        post_service.resolve_publication(session, pub, platform_post_id="@channel:1", failed_reason=None)
    assert post_state(db, post).state == "published"


def test_a_resumed_telegram_publication_is_flagged_without_a_request(db, server, settings):
    post, (pub,) = started_post(db, server, ["telegram"])
    with db.session() as session:  # as a crashed attempt leaves it
        session.execute(text("UPDATE post_publications SET state = 'publishing', publish_started_at = now()"))
    assert isinstance(publish(db, settings, pub, attempt=2), Discard)
    assert publication(db, pub).state == "needs_review" and server.requests() == []


def test_a_webhook_whose_answer_was_lost_is_sent_again_under_the_same_key(db, server, settings):
    post, (pub,) = started_post(db, server, ["webhook"])
    server.fail_next("webhook", "reset", publish=True)  # delivered, connection reset before the answer
    with pytest.raises(Exception):
        publish(db, settings, pub)
    assert publication(db, pub).state == "publishing"
    assert publish(db, settings, pub, attempt=2) is None
    calls = server.requests("webhook")
    assert len(calls) == 2 and calls[0].headers["x-idempotency-key"] == calls[1].headers["x-idempotency-key"]
    assert len(server.deliveries) == 1 and publication(db, pub).platform_post_id == "wh_1"


def test_a_post_whose_only_account_expired_before_it_was_due_fails_at_the_fan_out(db, server, settings):
    user = add_user(db)
    account = add_account(db, user, "webhook", "hook", server.webhook_secret, url=server.webhook_url)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    post = add_post(db, user, "later", [account], scheduled_at=later)
    with db.session() as session:
        assert post_service.expire_account(session, account, "token revoked") == [post]
    with db.session() as session:
        assert post_service.start_due_posts(session, now=later) == []
    state, message = post_state(db, post)
    assert state == "failed" and "account expired: token revoked" in message


def test_a_cancelled_post_is_never_started(db, server, settings):
    user = add_user(db)
    account = add_account(db, user, "webhook", "hook", server.webhook_secret, url=server.webhook_url)
    post = add_post(db, user, "never", [account])
    with db.session() as session:
        post_service.cancel_post(session, post)
    with db.session() as session:
        assert post_service.start_due_posts(session) == []
    assert post_state(db, post).state == "cancelled" and server.requests() == []


# -- messages ----------------------------------------------------------------------------------


def due_message(db, server: PlatformServer, chat_id: int | None = 42, words: str = "hi") -> int:
    user = add_user(db, f"user-{chat_id}-{words}")
    if chat_id is not None:
        connect(db, user, chat_id, server.telegram_token)
    return add_message(db, user, words)


def send(db, settings: Settings, message_id: int, attempt: int = 1):
    found = rows(db, "SELECT bot_id FROM telegram_connections c JOIN proactive_messages m ON m.user_id = c.user_id "
                     "WHERE m.id = :m AND c.is_active", m=message_id)
    bot = found[0].bot_id if found else None
    return message_handlers.send(SendMessage(message_id=message_id, bot_id=bot), context(db, settings, message_id, attempt))


def message(db, message_id: int):
    return row(db, "SELECT state, sent_at, telegram_message_id, failure_reason, send_started_at "
                   "FROM proactive_messages WHERE id = :m", m=message_id)


def test_a_message_is_sent_once_and_the_fan_out_enqueues_it_once(db, server, settings):
    message_id = due_message(db, server)
    with db.session() as session:
        assert len(enqueue_due_messages(session, chat_interval=settings.telegram_chat_interval_seconds)) == 1
    with db.session() as session:
        assert enqueue_due_messages(session, chat_interval=settings.telegram_chat_interval_seconds) == []
    assert send(db, settings, message_id) is None and send(db, settings, message_id) is None
    state, sent_at, telegram_id, *_ = message(db, message_id)
    assert (state, telegram_id) == ("sent", 1) and sent_at is not None
    assert [m["text"] for m in server.messages[42]] == ["hi"]


def test_no_active_connection_cancels(db, server, settings):
    message_id = due_message(db, server, chat_id=None)
    assert isinstance(send(db, settings, message_id), Cancel)
    assert message(db, message_id)[:1] == ("cancelled",)


def test_a_blocked_bot_deactivates_the_connection_and_fails_the_message(db, server, settings):
    message_id = due_message(db, server)
    server.blocked_chats.add(42)
    assert isinstance(send(db, settings, message_id), Discard)
    assert message(db, message_id).failure_reason == "Forbidden: bot was blocked by the user"
    connection = row(db, "SELECT is_active, deactivated_reason FROM telegram_connections")
    assert connection == (False, "Forbidden: bot was blocked by the user")


def test_429_snoozes_and_takes_the_mark_back(db, server, settings):
    message_id = due_message(db, server)
    server.fail_next("telegram.sendMessage", "rate_limit", retry_after=3)
    assert send(db, settings, message_id) == Snooze(3.0)
    assert message(db, message_id).send_started_at is None


def test_the_chat_interval_snoozes_a_second_message(db, server, settings):
    message_id = due_message(db, server)
    user = row(db, "SELECT user_id FROM proactive_messages WHERE id = :m", m=message_id)[0]
    second = add_message(db, user, "again")
    assert send(db, settings, message_id) is None
    outcome = send(db, settings, second)
    assert isinstance(outcome, Snooze) and 4 < outcome.after <= 5


def test_an_unknown_outcome_is_flagged_and_not_repeated(db, server, settings):
    message_id = due_message(db, server)
    server.fail_next("telegram.sendMessage", "hang", seconds=2)
    assert isinstance(send(db, settings, message_id), Discard)
    assert message(db, message_id).state == "needs_review"
    assert send(db, settings, message_id, attempt=2) is None
    assert len(server.requests("telegram.sendMessage")) == 1


def test_a_send_left_unfinished_is_flagged_without_a_request(db, server, settings):
    message_id = due_message(db, server)
    with db.session() as session:
        session.execute(text("UPDATE proactive_messages SET send_started_at = now()"))
    assert isinstance(send(db, settings, message_id, attempt=2), Discard)
    assert message(db, message_id).state == "needs_review" and server.requests() == []


# -- secrets no key opens ------------------------------------------------------------------------


def test_a_token_no_key_opens_fails_the_row_and_discards_the_job_alike(db, server, settings):
    """Posts and messages (and proxies, test_proxy_records.py) end the same way: the row fails
    with the reason, the job is discarded (`<what> <id>: ...`), nothing is sent."""
    post, (pub,) = started_post(db, server, ["webhook"])
    message_id = due_message(db, server)
    with db.session() as session:
        session.execute(text("UPDATE social_accounts SET access_token_encrypted = 'not-a-fernet-token'"))
        session.execute(text("UPDATE telegram_connections SET bot_token_encrypted = 'not-a-fernet-token'"))
    published, sent = publish(db, settings, pub), send(db, settings, message_id)
    assert isinstance(published, Discard) and published.reason.startswith(f"publication {pub}: ")
    assert isinstance(sent, Discard) and sent.reason.startswith(f"message {message_id}: ")
    assert published.reason.removeprefix(f"publication {pub}: ") == sent.reason.removeprefix(f"message {message_id}: ")
    assert publication(db, pub).state == "failed" and post_state(db, post).state == "failed"
    assert message(db, message_id).state == "failed" and server.requests() == []
