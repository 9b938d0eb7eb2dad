"""The scheduler exporter's pure parts: the cron lateness histogram, the dispatcher lag rule and
the service states /healthz reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared.store.operations import QueueOverview
from scheduler.health import MIN_STALE_SECONDS, health_report, service_state
from scheduler.metrics import CRON_LATENESS_BUCKETS, LatenessHistogram, dispatcher_lag_seconds
from scheduler.service import Service

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def lateness_exposition() -> tuple[LatenessHistogram, str]:
    """A lateness histogram after a few fires (one on time, one early), and its exposition."""
    histogram = LatenessHistogram(CRON_LATENESS_BUCKETS)
    for seconds in (0.004, 0.3, 1.0, 4.0, 7200.0, -0.5):
        histogram.observe(seconds)

    class Once:
        def collect(self) -> list[Any]:
            return [histogram.family("jobs_cron_lateness_seconds", "Delay from fire time to enqueue.")]

    registry = CollectorRegistry()
    registry.register(Once())
    return histogram, generate_latest(registry).decode()


def test_cron_lateness_histogram_has_a_one_second_boundary():
    # promtool checks this exposition in tests/acceptance/test_prometheus_tools.py.
    assert 1.0 in CRON_LATENESS_BUCKETS and list(CRON_LATENESS_BUCKETS) == sorted(CRON_LATENESS_BUCKETS)
    histogram, exposition = lateness_exposition()
    assert 'jobs_cron_lateness_seconds_bucket{le="0.01"} 2.0' in exposition  # -0.5 counts as on time
    assert 'jobs_cron_lateness_seconds_bucket{le="1.0"} 4.0' in exposition  # 1.0 is <= 1
    assert 'jobs_cron_lateness_seconds_bucket{le="3600.0"} 5.0' in exposition
    assert 'jobs_cron_lateness_seconds_bucket{le="+Inf"} 6.0' in exposition
    assert "jobs_cron_lateness_seconds_count 6.0" in exposition
    assert histogram.total == pytest.approx(7205.304)


def queue(name: str = "default", **fields: Any) -> QueueOverview:
    values: dict[str, Any] = dict(
        name=name, paused=False, dispatch_window=None, concurrency_limit=None, rate_limit=None,
        rate_period_seconds=None, retention_seconds=604800, waiting=0, scheduled=0, queued=0, dispatched=0,
        running=0, oldest_queued_at=None, oldest_dispatched_at=None, last_dispatched_at=None, now=NOW,
    )
    values.update(fields)
    return QueueOverview(**values)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_dispatcher_lag_counts_only_work_nothing_held_back():
    assert dispatcher_lag_seconds([], None) == 0
    assert dispatcher_lag_seconds([queue()], None) == 0
    idle_backlog = queue(queued=3, oldest_queued_at=ago(40))
    assert dispatcher_lag_seconds([idle_backlog], None) == 40
    assert dispatcher_lag_seconds([queue(queued=3, oldest_queued_at=ago(40), paused=True)], None) == 0
    assert dispatcher_lag_seconds([queue(queued=3, oldest_queued_at=ago(40), rate_limit=1, rate_period_seconds=60)], None) == 0
    # A backlog behind jobs in flight is the workers' pace (or per-key limits), not the dispatcher's.
    assert dispatcher_lag_seconds([queue(queued=300, oldest_queued_at=ago(600), running=8)], None) == 0
    # A scheduled job past its time is promoted every round whatever the queue does.
    assert dispatcher_lag_seconds([queue(running=8)], ago(12)) == 12
    assert dispatcher_lag_seconds([queue("a", queued=1, oldest_queued_at=ago(3)), queue("b")], ago(2)) == 3


def test_oldest_waiting_counts_queued_and_dispatched_from_their_due_time():
    assert queue().oldest_waiting_seconds() == 0
    assert queue(oldest_queued_at=ago(5), oldest_dispatched_at=ago(9)).oldest_waiting_seconds() == 9
    assert queue(oldest_queued_at=ago(-1)).oldest_waiting_seconds() == 0


class Looping(Service):
    def __init__(self, name: str, leader_only: bool = False, interval: float = 1.0, last_round_ago: float | None = None) -> None:
        super().__init__()
        self.name, self.leader_only, self.interval_seconds = name, leader_only, interval
        self.health.last_round_at = None if last_round_ago is None else 1_000_000.0 - last_round_ago

    def tick(self) -> int:
        return 0


@pytest.mark.parametrize("service, leader, uptime, leader_for, expected", [
    (Looping("dispatcher", last_round_ago=0.5), False, 500, None, "ok"),
    (Looping("dispatcher", last_round_ago=MIN_STALE_SECONDS + 1), True, 500, 500, "failing"),
    (Looping("dispatcher"), True, 5, 5, "starting"),
    (Looping("dispatcher"), True, 500, 500, "failing"),  # never completed a round
    (Looping("pruner", leader_only=True, interval=3600, last_round_ago=3 * 3600 - 1), True, 10**5, 10**5, "ok"),
    (Looping("rescuer", leader_only=True), False, 500, None, "standby"),
    (Looping("rescuer", leader_only=True, last_round_ago=900), True, 900, 2, "starting"),  # leader again, just now
    (Looping("rescuer", leader_only=True, last_round_ago=900), True, 900, 400, "failing"),
])
def test_service_states(service, leader, uptime, leader_for, expected):
    assert service_state(service, leader, 1_000_000.0, uptime, leader_for) == expected


def test_health_report_fails_when_any_service_fails():
    good, bad = Looping("dispatcher", last_round_ago=1), Looping("cron", last_round_ago=10_000)
    bad.health.errors, bad.health.last_error = 7, "ServiceUnavailable: the database is not reachable"
    healthy, report = health_report([good], True, 1_000_000.0, 500, 500)
    assert healthy and report["status"] == "ok"
    healthy, report = health_report([good, bad], True, 1_000_000.0, 500, 500)
    assert not healthy and report["status"] == "failing"
    assert report["services"]["cron"] == {  # type: ignore[index]
        "state": "failing", "leader_only": False, "rounds": 0, "errors": 7, "last_round_age_seconds": 10000.0,
        "last_error": "ServiceUnavailable: the database is not reachable",
    }
