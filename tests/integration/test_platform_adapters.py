"""Platform adapters against the fake platform server: every success path and failure mapping."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from shared.clock import FrozenClock
from shared.errors import AdapterError
from tests.rigs.platform_server import KINDS, PlatformServer, platform_server  # noqa: F401
from worker.platforms import (
    THREADS,
    AuthExpired,
    GraphPublisher,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    RecipientBlocked,
    SentMessage,
    TelegramBotApi,
    TransientFailure,
    WebhookPublisher,
    verify_signature,
)
from worker.platforms.transport import REDACTED, Redactor

pytestmark = pytest.mark.timeout(20)

# Short enough to keep hang tests fast, long enough for a loaded CI box to answer normal calls.
HANG_TIMEOUT = 0.5
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def server(platform_server: PlatformServer) -> PlatformServer:  # noqa: F811
    # The rig's fixture under a short name; tests ask for `server`.
    return platform_server


@pytest.fixture
def bot(server: PlatformServer) -> Iterator[TelegramBotApi]:
    with TelegramBotApi(server.telegram_base, server.telegram_token, timeout=HANG_TIMEOUT) as api:
        yield api


@pytest.fixture
def graph(server: PlatformServer) -> Iterator[GraphPublisher]:
    account = server.graph_account_id
    with GraphPublisher(server.graph_base, server.graph_token, account, timeout=HANG_TIMEOUT) as pub:
        yield pub


@pytest.fixture
def webhook(server: PlatformServer) -> Iterator[WebhookPublisher]:
    secret, clock = server.webhook_secret, FrozenClock(NOW)
    with WebhookPublisher(server.webhook_url, secret, timeout=HANG_TIMEOUT, clock=clock) as pub:
        yield pub


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def assert_no_secret(exc: BaseException, secret: str) -> None:
    for text in (str(exc), repr(exc), repr(getattr(exc, "context", {}))):
        assert secret not in text
        assert secret.split(":")[-1] not in text


# -- Telegram ----------------------------------------------------------------------------------


def test_telegram_send_message_returns_ids_per_chat(bot: TelegramBotApi, server: PlatformServer) -> None:
    first = bot.send_message(42, "hello", parse_mode="HTML", disable_notification=True)
    second = bot.send_message(42, "again")
    other = bot.send_message("@channel", "hi")

    assert (first, second, other) == (SentMessage(1, 42), SentMessage(2, 42), SentMessage(1, "@channel"))
    sent = server.requests("telegram.sendMessage")[0]
    assert sent.method == "POST"
    assert sent.body == {"chat_id": 42, "text": "hello", "parse_mode": "HTML", "disable_notification": True}
    assert [m["text"] for m in server.messages[42]] == ["hello", "again"]


def test_telegram_send_photo(bot: TelegramBotApi, server: PlatformServer) -> None:
    sent = bot.send_photo(7, "https://img.example/cat.jpg", caption="a cat")

    assert sent == SentMessage(1, 7)
    assert server.requests("telegram.sendPhoto")[0].body == {
        "chat_id": 7,
        "photo": "https://img.example/cat.jpg",
        "caption": "a cat",
    }


@pytest.mark.parametrize(
    ("kind", "params", "error", "message"),
    [
        ("rate_limit", {"retry_after": 7}, RateLimited, "Too Many Requests: retry after 7"),
        ("server_error", {"status": 502}, TransientFailure, "Internal Server Error"),
        ("bad_request", {}, PermanentFailure, "Bad Request: chat not found"),
        ("unauthorized", {}, AuthExpired, "Unauthorized"),
        ("blocked", {}, RecipientBlocked, "Forbidden: bot was blocked by the user"),
        (
            "blocked",
            {"description": "Forbidden: user is deactivated"},
            RecipientBlocked,
            "Forbidden: user is deactivated",
        ),
        (
            "blocked",
            {"description": "Forbidden: bot is not a member of the channel chat"},
            PermanentFailure,
            "Forbidden: bot is not a member of the channel chat",
        ),
    ],
)
def test_telegram_error_mapping(
    bot: TelegramBotApi,
    server: PlatformServer,
    kind: str,
    params: dict[str, Any],
    error: type[AdapterError],
    message: str,
) -> None:
    server.fail_next("telegram.sendMessage", kind, **params)

    with pytest.raises(error) as caught:
        bot.send_message(42, "hello")

    assert type(caught.value) is error
    assert str(caught.value) == message  # the platform's own words, verbatim
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7
    assert server.messages[42] == []
    assert bot.send_message(42, "next one").message_id == 1  # the failure was one-shot


def test_telegram_wrong_token_is_auth_expired(server: PlatformServer) -> None:
    api = TelegramBotApi(server.telegram_base, "999:revokedTokenSecret", timeout=HANG_TIMEOUT)
    with api, pytest.raises(AuthExpired) as caught:
        api.send_message(1, "hi")
    assert_no_secret(caught.value, "999:revokedTokenSecret")


def test_telegram_blocked_chat_stays_blocked(bot: TelegramBotApi, server: PlatformServer) -> None:
    server.blocked_chats.add(5)
    for _ in range(2):
        with pytest.raises(RecipientBlocked):
            bot.send_message(5, "hello?")


def test_telegram_hang_is_unknown_outcome_and_the_message_went_out(
    bot: TelegramBotApi, server: PlatformServer
) -> None:
    server.fail_next("telegram.sendMessage", "hang")

    with pytest.raises(OutcomeUnknown) as caught:
        bot.send_message(42, "did it arrive?")

    assert "ReadTimeout" in str(caught.value)
    # Nothing chained: the httpx exception holds the request URL, and so the token.
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert len(server.requests("telegram.sendMessage")) == 1
    assert [m["text"] for m in server.messages[42]] == ["did it arrive?"]


def test_telegram_reset_after_sending_is_unknown_outcome(bot: TelegramBotApi, server: PlatformServer) -> None:
    server.fail_next("telegram.sendMessage", "reset")

    with pytest.raises(OutcomeUnknown):
        bot.send_message(42, "hello")
    assert len(server.requests("telegram.sendMessage")) == 1


def test_telegram_unreachable_server_is_transient(server: PlatformServer) -> None:
    token = server.telegram_token
    api = TelegramBotApi(closed_port_url(), token, timeout=HANG_TIMEOUT)
    with api, pytest.raises(TransientFailure) as caught:
        api.send_message(1, "hi")
    assert_no_secret(caught.value, token)


@pytest.mark.parametrize("kind", KINDS)
def test_telegram_token_never_in_errors(bot: TelegramBotApi, server: PlatformServer, kind: str) -> None:
    server.fail_next("telegram.sendPhoto", kind)

    with pytest.raises(AdapterError) as caught:
        bot.send_photo(42, "https://img.example/x.png")

    assert_no_secret(caught.value, server.telegram_token)


def test_telegram_repr_and_request_log_hide_the_token(
    bot: TelegramBotApi, server: PlatformServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = server.telegram_token
    with caplog.at_level(logging.INFO, logger="httpx"):
        bot.send_message(1, "logged")

    assert token not in repr(bot) and "123456789" in repr(bot)
    assert "sendMessage" in caplog.text and f"/bot{REDACTED}/" in caplog.text
    assert token not in caplog.text


def test_redactor_covers_plain_and_url_encoded_secrets() -> None:
    redact = Redactor(["12:ab/cd"])
    text = "POST http://x/bot12:ab/cd/sendMessage, http://x/bot12%3Aab%2Fcd/, ?access_token=EAAsecret&x=1"
    redacted = redact(text)
    assert "ab/cd" not in redacted and "ab%2Fcd" not in redacted and "EAAsecret" not in redacted
    assert "access_token=<redacted>&x=1" in redacted


# -- Webhook -----------------------------------------------------------------------------------


def test_webhook_publish_is_signed_and_returns_the_remote_id(
    webhook: WebhookPublisher, server: PlatformServer
) -> None:
    remote_id = webhook.publish({"text": "héllo", "post_id": 9}, idempotency_key="pub-9")

    assert remote_id == "wh_1"
    request = server.requests("webhook")[0]
    assert verify_signature(server.webhook_secret, request.raw, request.headers["x-signature-256"])
    assert request.headers["x-idempotency-key"] == "pub-9"
    assert request.headers["x-timestamp"] == str(int(NOW.timestamp()))
    assert server.deliveries["pub-9"]["payload"] == {"text": "héllo", "post_id": 9}


def test_webhook_wrong_secret_is_refused_by_the_receiver(server: PlatformServer) -> None:
    pub = WebhookPublisher(server.webhook_url, "not-the-secret", timeout=HANG_TIMEOUT)
    with pub, pytest.raises(PermanentFailure) as caught:
        pub.publish({"a": 1}, idempotency_key="k")

    assert str(caught.value) == "invalid signature"
    assert caught.value.status_code == 401
    assert server.deliveries == {}


@pytest.mark.parametrize(
    ("kind", "params", "error"),
    [
        ("rate_limit", {"retry_after": 4}, RateLimited),
        ("server_error", {"status": 503}, TransientFailure),
        ("bad_request", {"description": "text too long"}, PermanentFailure),
    ],
)
def test_webhook_error_mapping(
    webhook: WebhookPublisher,
    server: PlatformServer,
    kind: str,
    params: dict[str, Any],
    error: type[AdapterError],
) -> None:
    server.fail_next("webhook", kind, **params)

    with pytest.raises(error) as caught:
        webhook.publish({"a": 1}, idempotency_key="k1")

    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 4
    if kind == "bad_request":
        assert str(caught.value) == "text too long"
    assert_no_secret(caught.value, server.webhook_secret)


def test_webhook_unknown_outcome_resolved_by_resending_with_the_same_key(
    webhook: WebhookPublisher, server: PlatformServer
) -> None:
    server.fail_next("webhook", "hang")

    with pytest.raises(OutcomeUnknown):
        webhook.publish({"a": 1}, idempotency_key="same")
    assert webhook.publish({"a": 1}, idempotency_key="same") == "wh_1"
    assert len(server.deliveries) == 1


def test_verify_signature_rejects_tampering() -> None:
    from worker.platforms.webhook import sign

    header = sign("s3cret", b'{"a":1}')
    assert header.startswith("sha256=") and verify_signature("s3cret", b'{"a":1}', header)
    assert not verify_signature("s3cret", b'{"a":2}', header)
    assert not verify_signature("other", b'{"a":1}', header)
    assert not verify_signature("s3cret", b'{"a":1}', header.removeprefix("sha256="))
    assert not verify_signature("s3cret", b'{"a":1}', None)


# -- Graph (Threads / Instagram) ---------------------------------------------------------------


def test_graph_publish_is_two_steps_with_the_marker_in_the_caption(
    graph: GraphPublisher, server: PlatformServer
) -> None:
    media_id = graph.publish("New post", "https://img.example/p.jpg", marker="#ref-p1")

    assert [r.route for r in server.requests()] == ["graph.media", "graph.media_publish"]
    create = server.requests("graph.media")[0].body
    assert create == {
        "caption": "New post\n\n#ref-p1",
        "image_url": "https://img.example/p.jpg",
        "access_token": server.graph_token,
    }
    assert server.media == [{"id": media_id, "caption": "New post\n\n#ref-p1", "text": "New post\n\n#ref-p1"}]
    assert graph.find_published("#ref-p1") == media_id
    assert graph.find_published("#ref-other") is None


def test_graph_threads_dialect_sends_text_and_media_type(server: PlatformServer) -> None:
    threads = GraphPublisher(server.graph_base, server.graph_token, server.graph_account_id, dialect=THREADS)
    with threads:
        media_id = threads.publish("already tagged [m7]", None, marker="[m7]")
        assert threads.find_published("[m7]") == media_id

    assert server.requests("graph.media")[0].body["text"] == "already tagged [m7]"
    assert server.requests("graph.media")[0].body["media_type"] == "TEXT"
    assert server.requests("graph.media_list")[0].query["fields"] == "id,text"


def test_graph_find_published_pages_through_listing(graph: GraphPublisher, server: PlatformServer) -> None:
    server.media.append({"id": "old", "caption": "first post [mk]"})
    server.media.extend({"id": f"m{i}", "caption": f"post {i}"} for i in range(120))

    assert graph.find_published("[mk]") == "old"
    assert [r.query.get("after") for r in server.requests("graph.media_list")] == [None, "50", "100"]


def test_graph_hang_on_publish_then_find_published_sees_the_post(
    graph: GraphPublisher, server: PlatformServer
) -> None:
    creation_id = graph.create_container("Hello [u1]", "https://img.example/u.jpg")
    server.fail_next("graph.media_publish", "hang")

    with pytest.raises(OutcomeUnknown):
        graph.publish_container(creation_id)

    media_id = graph.find_published("[u1]")
    assert media_id is not None and [m["id"] for m in server.media] == [media_id]
    with pytest.raises(PermanentFailure, match="already been published"):
        graph.publish_container(creation_id)  # the platform refuses a second publish of one container


def test_graph_publish_resolves_own_unknown_outcome(graph: GraphPublisher, server: PlatformServer) -> None:
    server.fail_next("graph.media_publish", "hang")

    media_id = graph.publish("Hello", "https://img.example/u.jpg", marker="[u2]")

    assert [m["id"] for m in server.media] == [media_id]


def test_graph_publish_stays_unknown_when_the_post_is_not_found(
    graph: GraphPublisher, server: PlatformServer
) -> None:
    server.fail_next("graph.media_publish", "reset")  # dropped before the platform acted

    with pytest.raises(OutcomeUnknown):
        graph.publish("Hello", "https://img.example/u.jpg", marker="[u3]")
    assert server.media == []
    assert len(server.requests("graph.media_list")) == 1


def test_graph_lost_container_reply_is_safe_to_retry(graph: GraphPublisher, server: PlatformServer) -> None:
    server.fail_next("graph.media", "hang")

    with pytest.raises(TransientFailure):
        graph.create_container("Hello", "https://img.example/u.jpg")
    assert server.media == []


@pytest.mark.parametrize(
    ("kind", "params", "error", "retry_after"),
    [
        ("rate_limit", {}, RateLimited, 60.0),
        ("rate_limit", {"retry_after": 9}, RateLimited, 9.0),
        ("server_error", {}, TransientFailure, None),
        ("bad_request", {"description": "(#100) Param image_url is not a valid URL"}, PermanentFailure, None),
        ("auth_expired", {}, AuthExpired, None),
    ],
)
def test_graph_error_mapping(
    graph: GraphPublisher,
    server: PlatformServer,
    kind: str,
    params: dict[str, Any],
    error: type[AdapterError],
    retry_after: float | None,
) -> None:
    server.fail_next("graph.media_publish", kind, **params)
    creation_id = graph.create_container("Hello", "https://img.example/u.jpg")

    with pytest.raises(error) as caught:
        graph.publish_container(creation_id)

    assert type(caught.value) is error
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == retry_after
    if "description" in params:
        assert str(caught.value) == params["description"]
    assert_no_secret(caught.value, server.graph_token)
    assert server.media == []


def test_graph_wrong_token_and_unreachable_listing_hide_the_token(server: PlatformServer) -> None:
    token = "EAAwrongTokenSecretValue"
    for base, error in ((server.graph_base, AuthExpired), (closed_port_url(), TransientFailure)):
        pub = GraphPublisher(base, token, server.graph_account_id, timeout=HANG_TIMEOUT)
        with pub, pytest.raises(error) as caught:
            pub.find_published("[x]")
        assert_no_secret(caught.value, token)
        assert token not in repr(pub)


def test_adapter_leaves_a_passed_in_client_open(server: PlatformServer) -> None:
    with httpx.Client() as client:
        with TelegramBotApi(server.telegram_base, server.telegram_token, client=client) as api:
            api.send_message(1, "via a shared client")
        assert not client.is_closed


def test_fail_next_refuses_unknown_routes_and_kinds(server: PlatformServer) -> None:
    with pytest.raises(ValueError, match="routes"):
        server.fail_next("telegram.sendSticker", "hang")
    with pytest.raises(ValueError, match="kinds"):
        server.fail_next("webhook", "explode")


def test_graph_request_log_hides_the_token(
    graph: GraphPublisher, server: PlatformServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="httpx"):
        graph.find_published("[nothing]")

    assert "access_token=<redacted>" in caplog.text
    assert server.graph_token not in caplog.text
