"""What a handler can say about how its job ended, besides returning normally.

Outcomes are values: a handler may `return Snooze(30)` or, from deep inside its own code,
`raise Snooze(30)`; both mean the same. Any other exception means "failed, retry with
backoff until attempts run out".
"""

from __future__ import annotations

from dataclasses import dataclass


class Outcome(Exception):
    """Base of the explicit outcomes."""


@dataclass
class Retry(Outcome):
    """Fail this attempt and run again after `after` seconds (counts as an attempt)."""

    after: float
    reason: str = "retry requested"


@dataclass
class Snooze(Outcome):
    """Run again after `after` seconds without spending an attempt."""

    after: float


@dataclass
class Cancel(Outcome):
    """Stop: the job ends `cancelled` and is not retried."""

    reason: str


@dataclass
class Discard(Outcome):
    """Give up: the job ends `failed` and is not retried (bad input, nothing to gain by retrying)."""

    reason: str
