"""Checks made with Prometheus' own tools: `promtool` on the alert rules and their unit tests, the
Prometheus config, the Grafana dashboard's queries, and what the worker and scheduler exporters
serve (the parse and naming rules Prometheus applies).

This tier starts real tools: promtool comes from Debian's `prometheus` package, which
tests/prometheus.py installs with apt-get when it is missing (as root), since a check that
silently skips is a check that never runs. The unit tier checks the same files and expositions
in every other way without installing anything.
"""
# The scheduler metrics fixture is imported by name and then requested as a parameter of the same name.
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from shared.db import make_database
from shared.embedded import free_port
from shared.settings import get_settings
from scheduler.metrics import SchedulerCollector
from tests.integration.test_scheduler_metrics import insert_job, supervisor  # noqa: F401 - a fixture
from tests.prometheus import debian_tool, promtool_check_metrics
from tests.unit.test_deploy_files import PROMETHEUS_CONFIG, RULES, RULES_TEST, dashboard_exprs, run
from tests.unit.test_scheduler_exporter import lateness_exposition
from worker import metrics

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="session")
def promtool() -> str:
    return debian_tool("promtool")


def test_promtool_check_rules(promtool: str) -> None:
    run(promtool, "check", "rules", RULES)


def test_promtool_check_config(promtool: str) -> None:
    run(promtool, "check", "config", PROMETHEUS_CONFIG)


def test_promtool_alert_unit_tests(promtool: str) -> None:
    run(promtool, "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    grafana_variables = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$queue": ".*",
    }
    rules = []
    for index, (_, expr) in enumerate(dashboard_exprs()):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run(promtool, "check", "rules", path)


WRITER = """
import os, sys, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from worker.metrics import RUNNING, STARTED, RUN_SECONDS
RUNNING.labels("q", "unit.job").inc()
STARTED.labels("q", "unit.job").inc()
RUN_SECONDS.labels("q", "unit.job").observe(0.003)
print("ready", flush=True)
time.sleep(60)
"""


def test_multiprocess_files_sum_over_processes_and_a_killed_one_stops_running(tmp_path: Path):
    root = Path(__file__).resolve().parents[2]
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        os.kill(writers[0].pid, signal.SIGKILL)
        writers[0].wait()
        registry = CollectorRegistry()
        registry.register(metrics._SweepingCollector(registry=None, path=str(tmp_path)))
        exposition = generate_latest(registry).decode()
        promtool_check_metrics(exposition)
        assert 'jobs_running{job_type="unit.job",queue="q"} 1.0' in exposition  # only the live one
        assert 'jobs_started_total{job_type="unit.job",queue="q"} 2.0' in exposition  # counters keep the dead one's
        assert 'jobs_run_seconds_bucket{job_type="unit.job",le="0.005",queue="q"} 2.0' in exposition
        assert not list(tmp_path.glob(f"gauge_livesum_{writers[0].pid}.db"))
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()


def test_cron_lateness_histogram_passes_promtool() -> None:
    promtool_check_metrics(lateness_exposition()[1])


def test_scheduler_collector_exposition_passes_promtool(db, supervisor) -> None:
    """Every family the scheduler serves, with values: jobs in each state, ages, lag, workers,
    leadership, and a cron lateness histogram with fires in it."""
    with db.session() as s:
        schedule = s.execute(text(
            "INSERT INTO schedules (name, cron, job_type, queue, enabled) "
            "VALUES ('promtool-test', '* * * * *', 'platform.noop', 'default', false) RETURNING id")).scalar_one()
        insert_job(s, "default", "queued", 10)
        insert_job(s, "high", "dispatched", 20)
        insert_job(s, "high", "running", 30)
        insert_job(s, "low", "scheduled", 5)
        s.execute(text("INSERT INTO workers (id, hostname, pid, state, last_heartbeat_at) VALUES ('fresh', 'h', 1, 'online', now())"))
    collector = SchedulerCollector(db, get_settings(), supervisor, refresh_seconds=0)
    collector.prime()
    with db.session() as s:
        job = insert_job(s, "default", "queued", 0, schedule_id=schedule)
        s.execute(text("UPDATE jobs SET fire_time = created_at - interval '3 seconds' WHERE id = :id"), {"id": job})
    registry = CollectorRegistry()
    registry.register(collector)
    exposition = generate_latest(registry).decode()
    assert "jobs_in_state{" in exposition and "jobs_cron_lateness_seconds_count 1.0" in exposition
    promtool_check_metrics(exposition)


def test_scheduler_exposition_without_the_database_passes_promtool(test_env, supervisor) -> None:
    unreachable = make_database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing", pool_size=1)
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(unreachable, get_settings(), supervisor, refresh_seconds=0))
    try:
        promtool_check_metrics(generate_latest(registry).decode())
    finally:
        unreachable.dispose()
