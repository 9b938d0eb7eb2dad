"""Telegram Bot API: send messages and photos, with every answer mapped to an outcome.

Bot API shape: `POST {base}/bot{token}/{method}` with a JSON body; the reply is
`{"ok": true, "result": {...}}` or `{"ok": false, "error_code": N, "description": "...",
"parameters": {"retry_after": S}}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from worker.platforms.errors import (
    AuthExpired,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    RecipientBlocked,
    TransientFailure,
)
from shared.outside_text import Redactor
from worker.platforms.transport import install_httpx_log_redaction, json_body, remote_text, retry_after, send

# 403 descriptions that mean "this chat is gone for the bot", as opposed to other refusals.
# Proactive messaging deactivates the connection on these, so the list is deliberately narrow.
_UNREACHABLE = (
    "bot was blocked by the user",
    "user is deactivated",
    "bot was kicked",
    "bot can't initiate conversation",
)
# Telegram rarely omits retry_after on 429; when it does, wait a little rather than hammer it.
_DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: int
    chat_id: int | str


class TelegramBotApi:
    """A bot's view of the Bot API. Owns its HTTP client unless one is passed in."""

    def __init__(
        self, base_url: str, token: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        if not token:
            raise ValueError("a bot token is required")
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client()
        self._redact = Redactor([token])
        install_httpx_log_redaction()

    def __repr__(self) -> str:
        # The part before ':' is the bot's public user id; the rest is the secret.
        bot_id = self._token.split(":", 1)[0] if ":" in self._token else "?"
        return f"TelegramBotApi(base_url={self._base_url!r}, bot_id={bot_id})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> TelegramBotApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = None,
        disable_notification: bool = False,
    ) -> SentMessage:
        params: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if parse_mode:
            params["parse_mode"] = parse_mode
        if disable_notification:
            params["disable_notification"] = True
        return self._sent(self._call("sendMessage", params))

    def send_photo(
        self, chat_id: int | str, photo_url: str, caption: str | None = None, *, parse_mode: str | None = None
    ) -> SentMessage:
        params: dict[str, Any] = {"chat_id": chat_id, "photo": photo_url}
        if caption is not None:
            params["caption"] = caption
        if parse_mode:
            params["parse_mode"] = parse_mode
        return self._sent(self._call("sendPhoto", params))

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        url = f"{self._base_url}/bot{self._token}/{method}"
        response = send(self._client, "POST", url, json=params, redact=self._redact, timeout=self._timeout)
        body = json_body(response)
        if isinstance(body, dict) and body.get("ok") is True and response.is_success:
            return body.get("result")
        raise self._error(method, response, body)

    def _error(self, method: str, response: httpx.Response, body: Any) -> Exception:
        body = body if isinstance(body, dict) else {}
        code = body["error_code"] if isinstance(body.get("error_code"), int) else response.status_code
        description = remote_text(str(body.get("description") or response.reason_phrase or f"HTTP {code}"), self._redact)
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        context: dict[str, Any] = {"method": method, "status_code": code}
        if response.is_success and body.get("ok") is not False:
            # A 2xx we cannot read (a proxy's page, a truncated body): the send may have happened.
            return OutcomeUnknown(f"{method}: unreadable success reply", **context)
        if code == 429:
            wait = parameters.get("retry_after")
            wait = retry_after(response.headers) if wait is None else float(wait)
            return RateLimited(_DEFAULT_RETRY_AFTER if wait is None else wait, description, **context)
        if code >= 500:
            return TransientFailure(description, **context)
        if code == 401:
            return AuthExpired(description, **context)
        if code == 403 and any(phrase in description.lower() for phrase in _UNREACHABLE):
            return RecipientBlocked(description, **context)
        if "migrate_to_chat_id" in parameters:
            # The group became a supergroup: the caller can store the new id and send again.
            context["migrate_to_chat_id"] = parameters["migrate_to_chat_id"]
        return PermanentFailure(description, **context)

    @staticmethod
    def _sent(result: Any) -> SentMessage:
        try:
            return SentMessage(message_id=int(result["message_id"]), chat_id=result["chat"]["id"])
        except (TypeError, KeyError, ValueError):
            # "ok": true means Telegram sent it; we just cannot tell which message it was.
            raise OutcomeUnknown("Telegram accepted the message but the reply has no message id") from None
