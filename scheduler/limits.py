"""Choosing which runnable jobs a dispatch round may send, under every limit.

Pure: given the ordered candidates, the queue's room, each key's jobs in flight and each
scope's recent starts, it returns the jobs to dispatch (in order, skipping only those whose
key is at its limit, so one busy key never blocks the rest of the queue), the new rate
windows, and when a rate limit will next allow a start.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from shared.jobtypes.registry import KeyLimit
from shared.store.rows import Candidate

QUEUE_SCOPE = "queue:"


def scope_of(limit_key: str) -> str:
    return limit_key.split("|", 1)[0]


def live_starts(recent: Sequence[datetime], now: datetime, period: float) -> list[datetime]:
    """The starts still inside the sliding window."""
    horizon = now - timedelta(seconds=period)
    return sorted(t for t in recent if t > horizon)


@dataclass
class RatePlan:
    limit: int
    period: float
    live: list[datetime]
    taken: int = 0

    def allows(self) -> bool:
        return len(self.live) + self.taken < self.limit

    def next_free(self) -> datetime | None:
        """When the oldest start leaves the window (only meaningful when full)."""
        return self.live[0] + timedelta(seconds=self.period) if self.live else None

    def window_after(self, now: datetime) -> list[datetime]:
        return (self.live + [now] * self.taken)[-self.limit:]


@dataclass
class Plan:
    chosen: list[int] = field(default_factory=list)
    windows: dict[str, list[datetime]] = field(default_factory=dict)
    wake_at: datetime | None = None


def plan(
    candidates: Sequence[Candidate],
    room: int,
    key_limits: Mapping[str, KeyLimit],
    in_flight: Mapping[str, int],
    rates: Mapping[str, RatePlan],
    queue_rate_key: str | None,
    now: datetime | None,
) -> Plan:
    result = Plan()
    taken_per_key: Counter[str] = Counter()
    queue_rate = rates.get(queue_rate_key) if queue_rate_key else None
    for candidate in candidates:
        if len(result.chosen) >= room:
            break
        if queue_rate is not None and not queue_rate.allows():
            result.wake_at = _earliest(result.wake_at, queue_rate.next_free())
            break
        key = candidate.limit_key
        limit = key_limits.get(scope_of(key)) if key else None
        if key and limit:
            if limit.concurrency is not None and in_flight.get(key, 0) + taken_per_key[key] >= limit.concurrency:
                continue
            key_rate = rates.get(key)
            if key_rate is not None and not key_rate.allows():
                result.wake_at = _earliest(result.wake_at, key_rate.next_free())
                continue
            taken_per_key[key] += 1
            if key_rate is not None:
                key_rate.taken += 1
        if queue_rate is not None:
            queue_rate.taken += 1
        result.chosen.append(candidate.id)
    if now is not None:
        result.windows = {key: rate.window_after(now) for key, rate in rates.items() if rate.taken}
    return result


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
