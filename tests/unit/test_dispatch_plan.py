"""The dispatch plan under limits: pure, so every rule is checked without a database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from scheduler.limits import RatePlan, live_starts, plan
from shared.jobtypes.registry import KeyLimit
from shared.store.rows import Candidate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def cands(*keys: str | None) -> list[Candidate]:
    return [Candidate(i + 1, key) for i, key in enumerate(keys)]


def test_room_caps_the_round_and_order_is_kept():
    assert plan(cands(None, None, None), 2, {}, {}, {}, None, NOW).chosen == [1, 2]


def test_a_key_at_its_concurrency_is_skipped_not_blocking_others():
    limits = {"acct": KeyLimit(concurrency=2, rate=None)}
    result = plan(cands("acct|a", "acct|a", "acct|a", "acct|b", None), 10, limits, {"acct|a": 1}, {}, None, NOW)
    assert result.chosen == [1, 4, 5]  # a has 1 in flight: one more allowed; b and unkeyed go


def test_keys_without_declared_limits_are_free():
    assert plan(cands("other|x", "other|x"), 5, {}, {"other|x": 99}, {}, None, NOW).chosen == [1, 2]


def test_key_rate_window_is_exact_and_says_when_it_frees():
    limits = {"chat": KeyLimit(concurrency=None, rate=(2, 1.0))}
    window = RatePlan(2, 1.0, [NOW - timedelta(seconds=0.4)])
    result = plan(cands("chat|1", "chat|1", "chat|1"), 10, limits, {}, {"chat|1": window}, None, NOW)
    assert result.chosen == [1]
    assert result.wake_at == NOW + timedelta(seconds=0.6)
    assert result.windows["chat|1"] == [NOW - timedelta(seconds=0.4), NOW]


def test_queue_rate_stops_the_round():
    queue = RatePlan(3, 1.0, [NOW - timedelta(seconds=0.5)])
    result = plan(cands(None, None, None, None), 10, {}, {}, {"queue:q": queue}, "queue:q", NOW)
    assert result.chosen == [1, 2]
    assert result.wake_at == NOW + timedelta(seconds=0.5)


def test_old_starts_leave_the_window():
    recent = [NOW - timedelta(seconds=s) for s in (2.0, 1.0, 0.5)]
    assert live_starts(recent, NOW, 1.0) == [NOW - timedelta(seconds=0.5)]
