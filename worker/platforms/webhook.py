"""A generic signed webhook: POST the post as JSON to a URL the customer runs.

The receiver checks `X-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>` with
the shared secret and uses `X-Idempotency-Key` to drop repeats, which is what makes it safe for
the caller to resend with the same key after an `OutcomeUnknown`. It answers `{"id": "..."}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from shared.clock import Clock, SystemClock
from worker.platforms.errors import OutcomeUnknown, PermanentFailure, RateLimited, TransientFailure
from shared.outside_text import Redactor
from worker.platforms.transport import json_body, remote_text, retry_after, send

SIGNATURE_HEADER = "X-Signature-256"
IDEMPOTENCY_HEADER = "X-Idempotency-Key"
TIMESTAMP_HEADER = "X-Timestamp"
_SCHEME = "sha256="
# Without a Retry-After header, back off a little rather than hammer the receiver.
_DEFAULT_RETRY_AFTER = 1.0


def sign(secret: str | bytes, body: bytes) -> str:
    """The `X-Signature-256` header value for these exact body bytes."""
    key = secret.encode() if isinstance(secret, str) else secret
    return _SCHEME + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare)."""
    if not header or not header.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


class WebhookPublisher:
    """Publishes to one webhook URL. Owns its HTTP client unless one is passed in."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client()
        self._clock = clock or SystemClock()
        self._redact = Redactor([secret])

    def __repr__(self) -> str:
        return f"WebhookPublisher(url={self._redact(self._url)!r})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebhookPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def publish(self, payload: dict[str, Any], idempotency_key: str) -> str:
        """Send the payload; return the receiver's id for it."""
        # Serialise once: the signature must cover exactly the bytes that go on the wire.
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(int(self._clock.now().timestamp())),
        }
        response = send(
            self._client,
            "POST",
            self._url,
            content=body,
            headers=headers,
            redact=self._redact,
            timeout=self._timeout,
        )
        reply = json_body(response)
        if response.is_success:
            if isinstance(reply, dict) and reply.get("id") not in (None, ""):
                return str(reply["id"])
            # Accepted, but we cannot tell under which id: resend with the same key to find out.
            raise OutcomeUnknown(
                "webhook accepted the request but its reply has no id", status_code=response.status_code
            )
        raise self._error(response, reply)

    def _error(self, response: httpx.Response, reply: Any) -> Exception:
        status = response.status_code
        # Redacted before it is cut (remote_text): a cut first could leave part of the secret.
        message = remote_text(_message(response, reply), self._redact)
        if status == 429:
            wait = retry_after(response.headers, self._clock.now())
            return RateLimited(_DEFAULT_RETRY_AFTER if wait is None else wait, message, status_code=status)
        if status >= 500 or status == 408:
            return TransientFailure(message, status_code=status)
        return PermanentFailure(message, status_code=status)


def _message(response: httpx.Response, reply: Any) -> str | bytes:
    """The receiver's own words for the failure, whichever common shape it used."""
    if isinstance(reply, dict):
        error = reply.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (error, reply.get("message"), reply.get("detail")):
            if isinstance(value, str) and value:
                return value
    body = response.content.strip()
    return body if body else f"HTTP {response.status_code} {response.reason_phrase}".strip()
