"""Graph-API style two-step publishing, as Threads and Instagram do it.

Step one creates a media container (`POST {base}/{account}/media`) and returns a creation id;
step two publishes it (`POST {base}/{account}/media_publish`) and returns the media id. Only
the second step is visible to anyone, and only it is unsafe to repeat. After an unknown outcome
the account's media listing is searched for a marker the caption carries, so the caller can tell
whether the post already went out before it posts again.

Errors look like `{"error": {"message": "...", "type": "OAuthException", "code": 190, ...}}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from shared.errors import AdapterError
from worker.platforms.errors import (
    AuthExpired,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TransientFailure,
)
from shared.outside_text import Redactor
from worker.platforms.transport import install_httpx_log_redaction, json_body, remote_text, retry_after, send

_AUTH_EXPIRED_CODES = frozenset({190})
# 4 app, 17 user, 32 page, 613 custom rate limit (Graph's documented throttling codes).
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
# 1 "unknown error", 2 "service temporarily unavailable": Graph's own "try again later".
_TRANSIENT_CODES = frozenset({1, 2})
# Graph throttles over an hour-long window and rarely says how long to wait.
_DEFAULT_RETRY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class GraphDialect:
    """Where the two Graph-style APIs differ in what we send."""

    name: str
    text_field: str  # the container's text parameter and listing field
    sends_media_type: bool  # Threads wants media_type=TEXT|IMAGE; Instagram infers it


INSTAGRAM = GraphDialect("instagram", text_field="caption", sends_media_type=False)
THREADS = GraphDialect("threads", text_field="text", sends_media_type=True)


class GraphPublisher:
    """Publishes to one account. Owns its HTTP client unless one is passed in."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        account_id: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        dialect: GraphDialect = INSTAGRAM,
        search_pages: int = 4,
    ) -> None:
        if not access_token:
            raise ValueError("an access token is required")
        self._base_url = base_url.rstrip("/")
        self._token = access_token
        self._account_id = account_id
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client()
        self._dialect = dialect
        self._search_pages = search_pages
        self._redact = Redactor([access_token])
        install_httpx_log_redaction()

    def __repr__(self) -> str:
        return (
            f"GraphPublisher(base_url={self._base_url!r}, account_id={self._account_id!r}, "
            f"dialect={self._dialect.name})"
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> GraphPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def publish(self, text: str | None, image_url: str | None, marker: str) -> str:
        """Create and publish a post whose text carries `marker`; return its media id.

        The marker is appended unless the text already contains it, so callers choose how it
        reads. If publishing ends with an unknown outcome, the listing is searched once for the
        marker; `OutcomeUnknown` is raised only when the post cannot be found there.
        """
        creation_id = self.create_container(_with_marker(text, marker), image_url)
        try:
            return self.publish_container(creation_id)
        except OutcomeUnknown as unknown:
            try:
                found = self.find_published(marker)
            except AdapterError:
                found = None  # the lookup failing leaves us exactly as unsure as before
            if found is not None:
                return found
            raise unknown

    def create_container(self, text: str | None, image_url: str | None) -> str:
        """Step one: an unpublished media container; returns its creation id."""
        if not text and not image_url:
            raise ValueError("a post needs text, an image, or both")
        params: dict[str, str] = {}
        if text:
            params[self._dialect.text_field] = text
        if image_url:
            params["image_url"] = image_url
        if self._dialect.sends_media_type:
            params["media_type"] = "IMAGE" if image_url else "TEXT"
        try:
            reply = self._request("POST", "media", data=params)
        except OutcomeUnknown as exc:
            # An unpublished container is invisible and expires on its own: making another is safe.
            raise TransientFailure(f"container creation: {exc}") from None
        return self._id(reply, unknown=TransientFailure)

    def publish_container(self, creation_id: str) -> str:
        """Step two: make the container public; returns the media id."""
        reply = self._request("POST", "media_publish", data={"creation_id": creation_id})
        return self._id(reply, unknown=OutcomeUnknown)

    def find_published(self, marker: str) -> str | None:
        """The id of a published post whose text contains `marker`, searching the newest pages."""
        if not marker:
            raise ValueError("an empty marker matches every post")
        field = self._dialect.text_field
        params = {"fields": f"id,{field}", "limit": "50"}
        for _ in range(self._search_pages):
            try:
                reply = self._request("GET", "media", params=params)
            except OutcomeUnknown as exc:
                # A read changes nothing on the platform, so a lost answer is just a failed try.
                raise TransientFailure(f"media listing: {exc}") from None
            for item in reply.get("data") or []:
                if isinstance(item, dict) and item.get("id") and marker in str(item.get(field) or ""):
                    return str(item["id"])
            after = (reply.get("paging") or {}).get("cursors", {}).get("after")
            if not after or not (reply.get("paging") or {}).get("next"):
                return None
            params = {**params, "after": after}
        return None

    def _request(self, method: str, edge: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self._base_url}/{self._account_id}/{edge}"
        # Graph takes the token as a parameter: in the form body for POST, the query for GET.
        key = "data" if method == "POST" else "params"
        kwargs[key] = {**kwargs.get(key, {}), "access_token": self._token}
        response = send(self._client, method, url, redact=self._redact, timeout=self._timeout, **kwargs)
        reply = json_body(response)
        if response.is_success and isinstance(reply, dict) and "error" not in reply:
            return reply
        raise self._error(edge, response, reply)

    def _error(self, edge: str, response: httpx.Response, reply: Any) -> Exception:
        status = response.status_code
        error = reply.get("error") if isinstance(reply, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        # Redacted before it is cut (remote_text): a cut first could leave part of the token.
        words = error.get("message") or response.content.strip() or f"HTTP {status}"
        message = remote_text(words if isinstance(words, (str, bytes)) else str(words), self._redact)
        context: dict[str, Any] = {
            "edge": edge,
            "status_code": status,
            "code": code,
            "subcode": error.get("error_subcode"),
        }
        if response.is_success and not error:
            return OutcomeUnknown(f"{edge}: unreadable success reply", **context)
        if code in _AUTH_EXPIRED_CODES:
            return AuthExpired(message, **context)
        if status == 429 or code in _RATE_LIMIT_CODES:
            return RateLimited(_throttle_seconds(response.headers), message, **context)
        if status >= 500 or code in _TRANSIENT_CODES or error.get("is_transient") is True:
            return TransientFailure(message, **context)
        return PermanentFailure(message, **context)

    @staticmethod
    def _id(reply: dict[str, Any], *, unknown: type[Exception]) -> str:
        if reply.get("id") in (None, ""):
            raise unknown("the platform accepted the request but its reply has no id")
        return str(reply["id"])


def _with_marker(text: str | None, marker: str) -> str:
    if not marker:
        raise ValueError("a marker is required to find the post after an unknown outcome")
    if text and marker in text:
        return text
    return f"{text}\n\n{marker}" if text else marker


def _throttle_seconds(headers: httpx.Headers) -> float:
    """How long to wait: `Retry-After`, else the usage header's estimate, else a default."""
    seconds = retry_after(headers)
    if seconds is not None:
        return seconds
    # X-Business-Use-Case-Usage: {"<id>": [{"estimated_time_to_regain_access": <minutes>, ...}]}
    try:
        usage = json.loads(headers.get("x-business-use-case-usage", ""))
        minutes = max(
            entry.get("estimated_time_to_regain_access", 0) for entries in usage.values() for entry in entries
        )
    except (ValueError, TypeError, AttributeError):
        return _DEFAULT_RETRY_AFTER
    return float(minutes) * 60 if minutes else _DEFAULT_RETRY_AFTER
