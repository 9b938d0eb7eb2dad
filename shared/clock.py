"""Time, injected.

Everything that asks "what time is it" takes a `Clock`, so tests move time instead of sleeping.
Two questions, two methods:

- `now()`: the host's time, for what the host itself measures (when to wake, a log line's
  time, a request's signature).
- `sql_now()`: the `:now` every job statement takes (`coalesce(:now, now())`). The system
  clock answers None, so the database's own clock decides: every time written on a job (its
  `run_at` after a delay or a retry's backoff included, computed in SQL from a duration) comes
  from one clock, the server's, and application hosts with skewed clocks never disagree with
  it. A frozen clock answers its fixed time, which moves the database's idea of now too.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC), as this host sees it."""
        ...

    def sql_now(self) -> datetime | None:
        """The `:now` to pass to SQL: None to let the database's clock decide, or a fixed time."""
        ...


class SystemClock:
    """The real time: the host's for `now()`, the database's in SQL."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sql_now(self) -> None:
        return None


class FrozenClock:
    """A clock that only moves when told to: for tests. SQL sees the same fixed time."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start time")
        self._now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sql_now(self) -> datetime:
        return self.now()

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
