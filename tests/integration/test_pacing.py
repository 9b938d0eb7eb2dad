"""The send-time rule (send_reserve, through shared/workloads/pacing.py) on a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.workloads.pacing import Reservation, SendLimit, Wait, finish, reserve

CHAT = SendLimit("telegram.chat|1|7", 1, 1.0)
BOT = SendLimit("telegram.bot|1", 3, 1.0)


def take(db, *limits: SendLimit, hold: float = 30.0) -> Reservation | Wait:
    with db.session() as session:
        return reserve(session, list(limits), holder=None, hold_seconds=hold)


def end(db, reservation: Reservation) -> None:
    with db.session() as session:
        finish(session, reservation)


def age(db, seconds: float) -> None:
    """Move every recorded send `seconds` into the past (instead of sleeping)."""
    with db.session() as session:
        session.execute(text("UPDATE send_slots SET started_at = started_at - make_interval(secs => :s), "
                             "ended_at = ended_at - make_interval(secs => :s), "
                             "expires_at = expires_at - make_interval(secs => :s)"), {"s": seconds})


def test_a_send_in_flight_holds_its_chat_until_it_answers_and_a_period_after(db):
    first = take(db, CHAT)
    assert isinstance(first, Reservation) and len(first.slot_ids) == 1
    blocked = take(db, CHAT)
    assert isinstance(blocked, Wait) and blocked.key == CHAT.key and 0.9 <= blocked.seconds <= 1.0
    end(db, first)
    age(db, 0.6)
    later = take(db, CHAT)
    assert isinstance(later, Wait) and 0.3 <= later.seconds <= 0.45
    age(db, 0.5)
    assert isinstance(take(db, CHAT), Reservation)


def test_a_bot_allows_its_limit_then_tells_waiters_successive_slots(db):
    sends = [take(db, BOT) for _ in range(3)]
    assert all(isinstance(s, Reservation) for s in sends)
    for send in sends:
        end(db, send)  # all answered: the key frees one period after the earliest of the last three
    waits = [take(db, BOT) for _ in range(3)]
    assert all(isinstance(w, Wait) for w in waits)
    seconds = [w.seconds for w in waits]  # type: ignore[union-attr]
    assert seconds[0] == pytest.approx(1.0, abs=0.1)
    assert seconds[1] - seconds[0] == pytest.approx(1 / 3, abs=0.05)  # after the last waiter
    assert seconds[2] - seconds[1] == pytest.approx(1 / 3, abs=0.05)


def test_every_key_of_a_send_must_allow_it_and_the_latest_wait_is_reported(db):
    assert isinstance(take(db, BOT, CHAT), Reservation)
    other_chat = SendLimit("telegram.chat|1|8", 1, 1.0)
    assert isinstance(take(db, BOT, other_chat), Reservation)
    blocked = take(db, BOT, CHAT)
    assert isinstance(blocked, Wait) and blocked.key == CHAT.key


def test_a_send_whose_holder_died_counts_until_its_expiry_then_for_a_period(db):
    assert isinstance(take(db, CHAT, hold=2.0), Reservation)  # never finished
    age(db, 2.5)  # expired 0.5 s ago
    wait = take(db, CHAT)
    assert isinstance(wait, Wait) and 0.4 <= wait.seconds <= 0.55
    age(db, 0.6)
    assert isinstance(take(db, CHAT), Reservation)


def test_old_sends_are_forgotten_when_a_new_one_is_taken(db):
    for _ in range(3):
        sent = take(db, BOT)
        assert isinstance(sent, Reservation)
        end(db, sent)
        age(db, 2.0)
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM send_slots")).scalar() == 1
