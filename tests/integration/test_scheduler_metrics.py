"""The scheduler's collector and HTTP endpoint against the run's PostgreSQL: the figures only the
database knows, served on /metrics, and /healthz. promtool checks the same exposition in
tests/acceptance/test_prometheus_tools.py (the tier that installs Prometheus' tools)."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from shared.clock import SystemClock
from shared.db import make_database
from shared.embedded import free_port
from shared.settings import get_settings
from scheduler.leader import LeaderElection
from scheduler.metrics import SchedulerCollector, start_exporter
from scheduler.service import Service
from scheduler.supervisor import Supervisor
from tests.history import history_inserts
from tests.prometheus import http_get


class Idle(Service):
    """A service that does nothing: its health is set by the test."""

    def __init__(self, name: str, leader_only: bool = False, rescued_total: int = 0) -> None:
        super().__init__()
        self.name = name
        self.leader_only = leader_only
        self.rescued_total = rescued_total

    def tick(self) -> int:
        return 0


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    exposition = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition) for s in family.samples
    }


@pytest.fixture
def supervisor(db) -> Supervisor:
    election = LeaderElection(db, "metrics-test", SystemClock())
    assert election.renew()
    return Supervisor([Idle("dispatcher"), Idle("rescuer", leader_only=True, rescued_total=3)], election)


def insert_job(session, queue: str, state: str, run_at_ago: float, **extra: object) -> int:
    columns = {"type": "platform.noop", "queue": queue, "state": state, **extra}
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    with history_inserts(session):  # dispatched, running and finished jobs stand for history
        return session.execute(
            text(f"INSERT INTO jobs ({names}, run_at) VALUES ({values}, now() - make_interval(secs => :ago)) RETURNING id"),
            {**columns, "ago": run_at_ago},
        ).scalar_one()


def test_collector_reports_depths_ages_lag_workers_and_leadership(db, supervisor):
    with db.session() as s:
        insert_job(s, "default", "queued", 10)
        insert_job(s, "default", "queued", -60)  # not due yet: neither waiting nor lagging
        insert_job(s, "high", "dispatched", 20)
        insert_job(s, "high", "running", 30)
        insert_job(s, "low", "scheduled", 5)  # overdue: the dispatcher should have promoted it
        insert_job(s, "bulk", "succeeded", 100)
        s.execute(text("""
            INSERT INTO workers (id, hostname, pid, state, last_heartbeat_at) VALUES
              ('fresh', 'h', 1, 'online', now()), ('stale', 'h', 2, 'online', now() - interval '1 hour'),
              ('gone', 'h', 3, 'stopped', now())"""))
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(db, get_settings(), supervisor, refresh_seconds=0))
    found = scrape(registry)

    def state_count(queue: str, state: str) -> float:
        return found[("jobs_in_state", frozenset({("queue", queue), ("state", state)}))]

    assert (state_count("default", "queued"), state_count("high", "dispatched"), state_count("high", "running"),
            state_count("low", "scheduled"), state_count("bulk", "waiting")) == (2, 1, 1, 1, 0)
    oldest = {dict(labels)["queue"]: v for (name, labels), v in found.items() if name == "jobs_oldest_waiting_seconds"}
    assert oldest["default"] == pytest.approx(10, abs=2) and oldest["high"] == pytest.approx(20, abs=2)
    assert oldest["low"] == 0 and oldest["bulk"] == 0
    # default has due queued jobs and nothing in flight: a live dispatcher would have taken one.
    assert found[("jobs_dispatcher_lag_seconds", frozenset())] == pytest.approx(10, abs=2)
    assert found[("jobs_workers_alive", frozenset())] == 1
    assert found[("jobs_scheduler_leader", frozenset())] == 1
    assert found[("jobs_rescued_total", frozenset())] == 3

    with db.session() as s:  # the dispatcher catches up: nothing due is left behind
        s.execute(text("UPDATE jobs SET state = 'dispatched', dispatched_at = now() "
                       "WHERE state IN ('queued', 'scheduled') AND run_at <= now()"))
    found = scrape(registry)
    assert found[("jobs_dispatcher_lag_seconds", frozenset())] < 1


def test_cron_lateness_counts_each_fire_once_from_when_the_scheduler_started(db, supervisor):
    with db.session() as s:
        schedule = s.execute(text(
            "INSERT INTO schedules (name, cron, job_type, queue, enabled) "
            "VALUES ('metrics-test', '* * * * *', 'platform.noop', 'default', false) RETURNING id")).scalar_one()
        insert_job(s, "default", "succeeded", 0, schedule_id=schedule)  # before the start: never counted
        s.execute(text("UPDATE jobs SET fire_time = created_at - interval '50 seconds'"))
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(db, get_settings(), supervisor, refresh_seconds=0))
    scrape(registry)
    with db.session() as s:
        for late in (0.2, 3.0):
            job = insert_job(s, "default", "queued", 0, schedule_id=schedule)
            s.execute(text("UPDATE jobs SET fire_time = created_at - make_interval(secs => :late) WHERE id = :id"),
                      {"late": late, "id": job})
        insert_job(s, "default", "queued", 0)  # not from a schedule
    for _ in range(3):  # every scrape re-reads the last stretch of ids: still counted once
        found = scrape(registry)

    def bucket(le: str) -> float:
        return found[("jobs_cron_lateness_seconds_bucket", frozenset({("le", le)}))]

    assert (bucket("0.1"), bucket("0.25"), bucket("1.0"), bucket("5.0"), bucket("+Inf")) == (0, 1, 1, 2, 2)
    assert found[("jobs_cron_lateness_seconds_sum", frozenset())] == pytest.approx(3.2)


def test_database_figures_are_left_out_while_the_database_is_unreachable(test_env, supervisor):
    unreachable = make_database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing", pool_size=1)
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(unreachable, get_settings(), supervisor, refresh_seconds=0))
    names = {name for name, _ in scrape(registry)}
    assert names == {"jobs_scheduler_leader", "jobs_rescued_total"}, "absent() alerts must fire, not stale values"
    unreachable.dispose()


def test_healthz_reports_each_service_and_fails_when_one_stops_going_round(db, supervisor):
    port = free_port()
    exporter = start_exporter(supervisor, db, get_settings().model_copy(update={"scheduler_metrics_port": port}))
    assert exporter is not None
    try:
        dispatcher, rescuer = supervisor.services
        dispatcher.health.last_round_at = time.time()
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok" and report["leader"] is True
        assert report["services"]["dispatcher"]["state"] == "ok"
        assert report["services"]["rescuer"]["state"] == "starting"  # leader, but no round yet

        dispatcher.health.last_round_at = time.time() - 3600
        dispatcher.health.last_error = "ServiceUnavailable: the database is not reachable"
        exporter.started_at -= 3600
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        report = json.loads(body)
        assert status == 503 and report["status"] == "failing"
        assert report["services"]["dispatcher"]["state"] == "failing"
        assert report["services"]["dispatcher"]["last_error"].startswith("ServiceUnavailable")

        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "jobs_scheduler_leader 1.0" in body
        assert http_get(f"http://127.0.0.1:{port}/nothing")[0] == 404
    finally:
        exporter.stop()


def test_a_taken_port_is_logged_and_the_scheduler_runs_on(db, supervisor, caplog):
    port = free_port()
    first = start_exporter(supervisor, db, get_settings().model_copy(update={"scheduler_metrics_port": port}))
    try:
        again = start_exporter(supervisor, db, get_settings().model_copy(update={"scheduler_metrics_port": port}))
        assert again is None and "cannot listen" in caplog.text
        assert start_exporter(supervisor, db, get_settings().model_copy(update={"scheduler_metrics_port": 0})) is None
    finally:
        assert first is not None
        first.stop()
