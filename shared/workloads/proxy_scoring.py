"""Proxy health: a 0..100 score from recent checks, and the status that follows from it.

Score
-----
Over the last `WINDOW` checks (oldest first in the sequence), each check weighs
`DECAY ** age`, where age is 0 for the newest check, so what happened lately counts most:

    success_rate = sum(weight * ok) / sum(weight)
    slowness     = clamp((median_ok_latency - FAST_MS) / (SLOW_MS - FAST_MS), 0, 1)
    score        = round_half_up(100 * success_rate * (1 - LATENCY_PENALTY * slowness))

`median_ok_latency` is the median latency of the successful checks in the window that have one
(the median, so one slow outlier does not sink a good proxy). A proxy answering within FAST_MS
loses nothing for speed; one at SLOW_MS or slower loses half its score, so a reliable but very
slow proxy lands in "degraded". No checks at all score 0: no evidence is not health. (A proxy
that was never checked is stored `unchecked` with no score at all: NULL, not 0 and not 100.)

Status
------
Rules in order, the first that applies wins:

1. `disabled` stays `disabled`: only an operator re-enables a proxy.
2. `consecutive_failures >= disable_after`                     -> `disabled`
3. `consecutive_failures >= DEAD_AFTER_FAILURES` or `score < DEAD_BELOW_SCORE` -> `dead`
4. from `dead` or `degraded`: back to `active` only when the last check succeeded
   (`consecutive_failures == 0`) and `score >= RECOVER_SCORE`; otherwise `degraded`.
   RECOVER_SCORE is above ACTIVE_MIN_SCORE on purpose, so a proxy hovering around the line
   does not flap between active and degraded on every check.
5. from `active` or `unchecked` (the first check): `active` while `score >= ACTIVE_MIN_SCORE`,
   else `degraded`.

No check returns `unchecked`: a proxy leaves it with its first check and never comes back.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

ProxyStatus = Literal["unchecked", "active", "degraded", "dead", "disabled"]
STATUSES: tuple[ProxyStatus, ...] = get_args(ProxyStatus)

WINDOW = 20  # checks considered; older ones no longer say much about the proxy
DECAY = 0.9  # per check of age; the oldest of 20 still weighs ~0.14 of the newest
FAST_MS = 500.0  # at or under this median latency: no speed penalty
SLOW_MS = 5000.0  # at or over this median latency: the full speed penalty
LATENCY_PENALTY = 0.5  # share of the score a slow proxy loses

ACTIVE_MIN_SCORE = 60  # an active proxy under this becomes degraded
RECOVER_SCORE = 70  # a degraded or dead proxy needs this to be active again
DEAD_BELOW_SCORE = 20  # under this a proxy is dead whatever its failure streak
DEAD_AFTER_FAILURES = 3  # this many failures in a row make a proxy dead


@dataclass(frozen=True)
class CheckOutcome:
    ok: bool
    latency_ms: float | None = None


def health_score(recent: Sequence[CheckOutcome]) -> int:
    """0..100 from the recent checks, oldest first (formula in the module docstring)."""
    window = list(recent)[-WINDOW:]
    if not window:
        return 0
    weights = [DECAY ** (len(window) - 1 - index) for index in range(len(window))]
    succeeded = sum(w for w, check in zip(weights, window, strict=True) if check.ok)
    success_rate = succeeded / sum(weights)
    latencies = [c.latency_ms for c in window if c.ok and c.latency_ms is not None]
    slowness = 0.0
    if latencies:
        median = statistics.median(latencies)
        slowness = min(1.0, max(0.0, (median - FAST_MS) / (SLOW_MS - FAST_MS)))
    raw = 100.0 * success_rate * (1.0 - LATENCY_PENALTY * slowness)
    # Half up, not Python's half-to-even, so equal inputs always land on the same side of a
    # threshold; the epsilon absorbs float noise such as 74.99999999999999 for 75.
    return min(100, max(0, math.floor(raw + 0.5 + 1e-9)))


def next_status(
    current: str, score: int, consecutive_failures: int, *, disable_after: int
) -> ProxyStatus:
    """The status after a check (rules in the module docstring)."""
    if current not in STATUSES:
        raise ValueError(f"unknown proxy status {current!r}, expected one of {STATUSES}")
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} is outside 0..100")
    if consecutive_failures < 0 or disable_after < 1:
        raise ValueError("consecutive_failures must be >= 0 and disable_after >= 1")
    if current == "disabled":
        return "disabled"
    if consecutive_failures >= disable_after:
        return "disabled"
    if consecutive_failures >= DEAD_AFTER_FAILURES or score < DEAD_BELOW_SCORE:
        return "dead"
    if current in ("dead", "degraded"):
        recovered = consecutive_failures == 0 and score >= RECOVER_SCORE
        return "active" if recovered else "degraded"
    return "active" if score >= ACTIVE_MIN_SCORE else "degraded"
