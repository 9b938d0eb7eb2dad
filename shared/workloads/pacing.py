"""Send-time limits, exact against the receiver's clock: at most N sends per sliding period per
key (a bot, a chat of a bot, a social account), decided when the request is about to leave.

The receiver sees a request at some instant r between the moment its send was reserved (s,
the database's `clock_timestamp()` under the key's row lock, before the request leaves) and the
moment its answer came (e, an upper bound: s plus the time the worker measured from just before
reading the clock to the answer). The rule: a send may start at s only if fewer than N of the
key's earlier sends have e > s - period (a send still in flight has e = infinity). Then no window
[t, t + period) ever holds N + 1 receipts: of N + 1 receipts inside one, the latest-reserved x had
s_x <= r_x < t + period, and each of the other N had e >= r >= t > s_x - period when x was
reserved, which the rule forbids. It needs no clock agreement with the receiver and no margin
for jitter (a late wake-up or a slow request only makes e later). Its price is the request's
round trip: N sends per (period + round trip), e.g. 30 per 1.02 s on loopback.

The rule runs in the database (the function `send_reserve`, migration 0008) in one statement,
so a key's row lock is held for that statement and the commit only. A send that may not start
is told when it may (a lower bound: sends in flight are assumed to answer now); for a key shared
by many waiters (a bot) the waiters are told successive slots (`retry_tail`), so they do not all
wake at once and fight for one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy.orm import Session

from shared.store import sends as store


@dataclass(frozen=True)
class SendLimit:
    key: str  # "telegram.bot|<bot id>", "telegram.chat|<bot id>|<chat id>", "posts.account|<id>"
    limit: int
    period: float


@dataclass(frozen=True)
class Reservation:
    slot_ids: list[int]
    started_at: datetime  # the database's clock when the send was allowed
    clock_read_at: float = field(repr=False)  # time.monotonic() just before that clock was read

    def answered_by(self) -> datetime:
        """An upper bound, on the database's clock, of when the receiver saw the request."""
        return self.started_at + timedelta(seconds=time.monotonic() - self.clock_read_at)


@dataclass(frozen=True)
class Wait:
    seconds: float
    key: str  # the limit that holds the send back


def reserve(
    session: Session, limits: Sequence[SendLimit], *, holder: int | None, hold_seconds: float,
) -> Reservation | Wait:
    """Reserve one send against every limit, or say how long to wait (a lower bound). The keys
    stay locked until the transaction ends: call it last and commit at once. `hold_seconds`
    bounds how long the send can be in flight (its holder may die without saying)."""
    limits = sorted(limits, key=lambda limit: limit.key)
    clock_read_at = time.monotonic()  # before the database reads its clock: the end stays an upper bound
    decision = store.reserve_send(
        session, [limit.key for limit in limits], [limit.limit for limit in limits],
        [limit.period for limit in limits], holder=holder, hold_seconds=hold_seconds,
    )
    if not decision.ok:
        return Wait(decision.wait_seconds, decision.blocking_key or "")
    return Reservation(decision.slot_ids, decision.started_at, clock_read_at)


def finish(session: Session, reservation: Reservation) -> None:
    """The send's answer came, or it gave up: from now on its slots count until their end."""
    store.finish_send_slots(session, reservation.slot_ids, reservation.answered_by())
