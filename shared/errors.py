"""The platform's one error family.

Every error the platform raises on purpose derives from `PlatformError`; the class docstring
is the default message, so `raise UnknownQueue()` still says something useful. Errors from
SQLAlchemy, redis and kombu are wrapped into this family where they cross into the platform
(see `shared.db` and the store), so callers catch one base class.
"""

from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    """The job platform failed."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.context = context
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(PlatformError):
    """The platform settings are invalid."""


class StackRunning(ConfigurationError):
    """Another `jobctl up` is running on this data folder."""


class ValidationError(PlatformError):
    """The input was refused; nothing was written."""

    def __init__(self, message: str | None = None, *, field: str | None = None, **context: Any) -> None:
        self.field = field
        super().__init__(message, field=field, **context)


class InputInvalid(ValidationError):
    """The input has the wrong type, is out of range, or holds what the database cannot store
    (a NUL character, a lone surrogate, NaN or Infinity)."""


class UnknownJobType(ValidationError):
    """No job type is declared under that name."""


class UnknownQueue(ValidationError):
    """No queue exists under that name."""


class PayloadInvalid(ValidationError):
    """The payload does not match the job type's model."""


class PayloadTooLarge(ValidationError):
    """The payload is larger than the configured limit."""


class ScheduleInvalid(ValidationError):
    """The schedule definition is invalid (cron expression, time zone or misfire policy)."""


class NotFound(PlatformError):
    """The requested object does not exist."""


class JobNotFound(NotFound):
    """No job with that id."""


class InvalidTransition(PlatformError):
    """The job is not in a state that allows this operation."""


class StoreError(PlatformError):
    """The database refused or failed an operation."""


class BrokerError(PlatformError):
    """The message broker refused or failed an operation."""


class ServiceUnavailable(PlatformError):
    """A service the platform needs (database, broker) is not reachable."""


class AdapterError(PlatformError):
    """A remote platform (Telegram, a webhook, a Graph-style API) answered with an error."""
