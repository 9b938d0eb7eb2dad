"""The closed set of ways a platform adapter can fail.

Every adapter call either returns a value or raises exactly one of these, so a handler can map
outcomes to job decisions with one `except` per class and nothing falls through as a bare
`httpx` error. The split that matters most is between failures that are safe to repeat
(`RateLimited`, `TransientFailure`: the platform did not act) and `OutcomeUnknown` (it may
have acted: repeating could post or message twice).

Messages never carry credentials: adapters pass the platform's words through
`transport.remote_text` (`shared.outside_text.clean` with the adapter's secrets: redacted in
every encoding, then cut) before raising.
"""

from __future__ import annotations

from typing import Any

from shared.errors import AdapterError


class RateLimited(AdapterError):
    """The platform asked us to slow down; nothing was done, retry after the given delay."""

    def __init__(self, retry_after: float, message: str | None = None, **context: Any) -> None:
        self.retry_after = float(retry_after)
        super().__init__(message or f"Rate limited: retry after {self.retry_after:g} s", **context)


class TransientFailure(AdapterError):
    """The platform did not act (server error, or the request never reached it); retry with backoff."""


class _Refusal(AdapterError):
    # Private on purpose: the three refusals below call for different handling (fail the job,
    # reconnect the account, deactivate the chat), so callers must not catch them as one.
    def __init__(self, message: str | None = None, *, status_code: int | None = None, **context: Any) -> None:
        self.status_code = status_code
        super().__init__(message, status_code=status_code, **context)


class PermanentFailure(_Refusal):
    """The platform refused the request; repeating it will not help."""


class AuthExpired(_Refusal):
    """The access token is expired or revoked; the account must be reconnected."""


class RecipientBlocked(_Refusal):
    """The recipient cannot be reached any more (blocked the bot, deactivated); stop writing to them."""


class OutcomeUnknown(AdapterError):
    """The request may have reached the platform but no answer came back; do not blindly repeat it."""
