"""How adapters send one HTTP request without leaking secrets or guessing about outcomes.

Two things every adapter needs and must get right the same way:

* Classify transport failures by whether the platform could have acted. A request that never
  left (connect error, pool timeout, a write that did not finish) is safe to repeat; one that
  was fully sent and then lost its answer (read timeout, reset while reading) is not.
* Keep credentials out of error messages and logs. Telegram puts the bot token in the URL path
  and Graph APIs accept the access token as a query parameter, so any text that mentions the
  URL (httpx exception texts, httpx's own INFO request log) would carry them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared.outside_text import REDACTED, Redactor, clean
from worker.platforms.errors import OutcomeUnknown, PermanentFailure, TransientFailure

__all__ = ["MAX_MESSAGE", "REDACTED", "Redactor", "install_httpx_log_redaction", "json_body", "remote_text",
           "retry_after", "send"]

# The most characters of a platform's own words an adapter error carries (it is stored as
# jobs.last_error, job_executions.error_message and the workloads' error columns).
MAX_MESSAGE = 500

# Exceptions raised before the request was completely handed to the server: repeating is safe.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.WriteError,
    httpx.ProxyError,
)
# The request could not even be built (bad base URL in settings): no retry will fix it.
_UNSENDABLE: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
)


def remote_text(text: str | bytes, redact: Redactor) -> str:
    """A platform's words, as an adapter error may carry them: cleaned, redacted, then cut."""
    return clean(text, secrets=redact, limit=MAX_MESSAGE)


class _RedactHttpxLog(logging.Filter):
    # httpx logs every request URL at INFO; Celery workers usually run at INFO. No secret list
    # here: the credential shapes (a token in the path, access_token=) are what it finds.
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = clean(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_httpx_log_redaction() -> None:
    """Make httpx's request log safe to ship; idempotent."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxLog) for f in logger.filters):
        logger.addFilter(_RedactHttpxLog())


def send(
    client: httpx.Client, method: str, url: str, *, redact: Redactor, timeout: float, **kwargs: Any
) -> httpx.Response:
    """Send one request; transport failures come back as adapter errors, never as httpx ones."""
    try:
        return client.request(method, url, timeout=timeout, **kwargs)
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        error = _classify(exc, redact)
    # Raised outside the except block so the httpx exception is not even kept as __context__:
    # it holds the request, whose URL may carry the token.
    raise error


def _classify(exc: Exception, redact: Redactor) -> Exception:
    if isinstance(exc, _UNSENDABLE):
        return PermanentFailure(_describe(exc, redact))
    if isinstance(exc, _NOT_SENT):
        return TransientFailure(_describe(exc, redact))
    # ReadTimeout, ReadError, RemoteProtocolError ("server disconnected without sending a
    # response") and anything unforeseen: the request went out, the answer did not come back.
    return OutcomeUnknown(_describe(exc, redact))


def _describe(exc: Exception, redact: Redactor) -> str:
    return remote_text(f"{type(exc).__name__}: {exc}".rstrip(": "), redact)


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or None when there is none or it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay seconds or an HTTP date), if there is one."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
