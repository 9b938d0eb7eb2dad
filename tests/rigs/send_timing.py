"""What rate tests and benchmarks measure on a receiver's own timestamps (seconds, any clock)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Hashable, Sequence


def busiest_window(times: Sequence[float], period: float = 1.0) -> int:
    """The most receipts in any half-open window [t, t + period)."""
    ordered = sorted(times)
    # A busiest window can start at a receipt: slide its start over each one.
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


def windows_over(times: Sequence[float], limit: int, period: float = 1.0) -> int:
    """How many receipts start a window [t, t + period) holding more than `limit`."""
    ordered = sorted(times)
    return sum(1 for i, t in enumerate(ordered) if bisect_left(ordered, t + period) - i > limit)


def gaps_per_key(receipts: Sequence[tuple[Hashable, float]]) -> list[float]:
    """Every gap between consecutive receipts to the same key (a chat)."""
    by_key: dict[Hashable, list[float]] = defaultdict(list)
    for key, at in receipts:
        by_key[key].append(at)
    return [b - a for times in by_key.values() for a, b in zip(sorted(times), sorted(times)[1:])]


def overall_rate(times: Sequence[float]) -> float:
    """Receipts per second from the first to the last (the first opens the span)."""
    ordered = sorted(times)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0]) if len(ordered) > 1 else 0.0


def sustained_rate(times: Sequence[float], trim: float = 0.1) -> float:
    """Receipts per second between the receipt at `trim` and the one at `1 - trim` of the run:
    the steady pace, without the workers' start and the last few chats' tail."""
    ordered = sorted(times)
    first, last = int(len(ordered) * trim), int(len(ordered) * (1 - trim)) - 1
    return overall_rate(ordered[first:last + 1]) if last > first else 0.0
