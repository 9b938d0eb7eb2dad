"""Time, injected.

Everything that asks "what time is it" takes a `Clock`, so tests move time instead of sleeping.
SQL that needs the time takes it as a parameter (`coalesce(:now, now())`): passing `None` uses
the database's clock, passing a value moves the database's idea of now too.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that only moves when told to: for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start time")
        self._now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock.set needs a timezone-aware time")
        with self._lock:
            self._now = when


def sql_now(clock: Clock | None) -> datetime | None:
    """The `:now` to pass to SQL: None for the real clock, so the database's own clock decides
    (no skew between application hosts and the server), else the injected time."""
    if clock is None or isinstance(clock, SystemClock):
        return None
    return clock.now()
