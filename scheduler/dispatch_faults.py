"""What the dispatcher blames: an outage (the database or the broker away: the round is tried
again later, whole) or the rows themselves (a job that cannot be dispatched or published is
failed alone, with `describe`'s line as its reason; scheduler/dispatcher.py)."""

from __future__ import annotations

import math

import psycopg
from kombu.exceptions import EncodeError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from shared.errors import BrokerError, PlatformError, ServiceUnavailable
from shared.store.rows import DispatchedJob

# A job's reason in `last_error` keeps the error's first line, up to this many characters.
REASON_MAX_CHARS = 500


def is_outage(exc: BaseException) -> bool:
    """The database or the broker is away: the round is tried again later, whole, and no job is
    to blame. Anything else met while handling a round's rows is the rows' fault."""
    if isinstance(exc, (ServiceUnavailable, OperationalError, InterfaceError, psycopg.OperationalError,
                        psycopg.InterfaceError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, BrokerError):  # publish wraps kombu's errors: the cause tells which kind
        return not isinstance(exc.__cause__, EncodeError)  # a message that cannot be encoded
    return False


def describe(exc: BaseException) -> str:
    """An error's first line, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    if not isinstance(exc, PlatformError) and orig is None:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:REASON_MAX_CHARS]


def unpublishable(job: DispatchedJob) -> str | None:
    """Why a dispatched job cannot become a message a worker can run, if it cannot: its time
    limit must be a finite, positive number of seconds (a worker cannot arm infinity)."""
    timeout = job.timeout_seconds
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        return f"timeout_seconds {timeout!r} is not a finite positive number"
    return None
