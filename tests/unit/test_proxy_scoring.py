"""The health score formula and the status thresholds, at their boundaries."""

from __future__ import annotations

import pytest

from shared.workloads.proxy_scoring import (
    ACTIVE_MIN_SCORE,
    DEAD_AFTER_FAILURES,
    DEAD_BELOW_SCORE,
    FAST_MS,
    RECOVER_SCORE,
    SLOW_MS,
    WINDOW,
    CheckOutcome,
    health_score,
    next_status,
)

OK = CheckOutcome(ok=True, latency_ms=100.0)
FAIL = CheckOutcome(ok=False)
DISABLE_AFTER = 10


def ok_at(latency_ms: float | None) -> CheckOutcome:
    return CheckOutcome(ok=True, latency_ms=latency_ms)


# --- health_score ---------------------------------------------------------------------------


def test_no_checks_score_zero() -> None:
    assert health_score([]) == 0


def test_all_ok_and_fast_is_100_and_all_failed_is_0() -> None:
    assert health_score([OK] * 5) == 100
    assert health_score([FAIL] * 5) == 0


@pytest.mark.parametrize(
    ("latency_ms", "score"),
    [
        (FAST_MS, 100),  # at the fast line: no penalty
        (FAST_MS + 1, 100),  # a millisecond over costs less than half a point
        ((FAST_MS + SLOW_MS) / 2, 75),  # halfway: half the 50-point penalty
        (SLOW_MS, 50),  # at the slow line: the full penalty
        (SLOW_MS * 10, 50),  # the penalty is capped
        (None, 100),  # success without a measured latency: no penalty
    ],
)
def test_latency_penalty(latency_ms: float | None, score: int) -> None:
    assert health_score([ok_at(latency_ms)] * 3) == score


def test_latency_is_the_median_of_successes_only() -> None:
    one_outlier = [ok_at(100), ok_at(100), ok_at(SLOW_MS * 2)]
    assert health_score(one_outlier) == 100
    # A failed check's latency (an http_error is timed too) does not count as speed.
    assert health_score([CheckOutcome(False, SLOW_MS * 2), OK, OK]) < 100
    assert health_score([OK, OK, CheckOutcome(False, SLOW_MS * 2)]) == health_score([OK, OK, FAIL])


def test_newer_checks_weigh_more() -> None:
    assert health_score([FAIL, OK]) == 53  # 1 / (1 + 0.9), rounded half up
    assert health_score([OK, FAIL]) == 47  # 0.9 / 1.9


def test_only_the_last_window_counts() -> None:
    assert health_score([FAIL] * 50 + [OK] * WINDOW) == 100
    assert health_score([FAIL] * 50 + [OK] * (WINDOW - 1)) < 100


# --- next_status ----------------------------------------------------------------------------


def status(current: str, score: int, failures: int = 0, disable_after: int = DISABLE_AFTER) -> str:
    return next_status(current, score, failures, disable_after=disable_after)


def test_active_stays_active_down_to_the_active_line() -> None:
    assert status("active", ACTIVE_MIN_SCORE) == "active"
    assert status("active", ACTIVE_MIN_SCORE - 1) == "degraded"


def test_dead_below_the_dead_score() -> None:
    assert status("active", DEAD_BELOW_SCORE) == "degraded"
    assert status("active", DEAD_BELOW_SCORE - 1) == "dead"


def test_dead_after_consecutive_failures_whatever_the_score() -> None:
    assert status("active", 100, DEAD_AFTER_FAILURES - 1) == "active"
    assert status("active", 100, DEAD_AFTER_FAILURES) == "dead"


def test_disabled_after_disable_after_failures() -> None:
    assert status("dead", 0, DISABLE_AFTER - 1) == "dead"
    assert status("dead", 0, DISABLE_AFTER) == "disabled"
    # A disable_after below the dead streak still wins: disabling is the stronger verdict.
    assert status("active", 100, 1, disable_after=1) == "disabled"


def test_disabled_is_sticky() -> None:
    assert status("disabled", 100, 0) == "disabled"


@pytest.mark.parametrize("current", ["dead", "degraded"])
def test_recovery_needs_the_recover_score_and_a_good_last_check(current: str) -> None:
    assert status(current, RECOVER_SCORE, 0) == "active"
    assert status(current, RECOVER_SCORE - 1, 0) == "degraded"
    assert status(current, 100, 1) == "degraded"


def test_hysteresis_between_the_active_and_recover_lines() -> None:
    between = (ACTIVE_MIN_SCORE + RECOVER_SCORE) // 2
    assert ACTIVE_MIN_SCORE <= between < RECOVER_SCORE
    assert status("active", between) == "active"
    assert status("degraded", between) == "degraded"


@pytest.mark.parametrize(
    ("current", "score", "failures", "disable_after"),
    [
        ("new", 50, 0, 5),
        ("active", 101, 0, 5),
        ("active", -1, 0, 5),
        ("active", 50, -1, 5),
        ("active", 50, 0, 0),
    ],
)
def test_bad_arguments_raise(current: str, score: int, failures: int, disable_after: int) -> None:
    with pytest.raises(ValueError):
        next_status(current, score, failures, disable_after=disable_after)
