"""Operating a running stack: the workers' and scheduler's Prometheus endpoints (checked by
promtool and scraped by a real Prometheus), and Flower behind basic auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from shared.broker import job_id_from_task_id
from shared.embedded import free_port
from shared.enqueue import enqueue_many_now, enqueue_now
from tests.processes import wait_for
from tests.prometheus import http_get, promtool_check_metrics, start_prometheus

pytestmark = pytest.mark.acceptance

QUEUES = ("high", "default", "low", "bulk")
ACTIVE = ("waiting", "scheduled", "queued", "dispatched", "running")


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition) for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def states(db) -> dict[str, int]:
    with db.session() as s:
        return dict(s.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all())


def terminal(db, ids: list[int]) -> bool:
    """Every one of these jobs ended (jobs of the code-declared schedules may run beside them)."""
    with db.session() as s:
        return not s.execute(text(
            "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND state NOT IN ('succeeded', 'failed', 'cancelled')"
        ), {"ids": ids}).scalar()


def test_metrics_endpoints_pass_promtool_and_prometheus_counts_the_jobs(db, processes, tmp_path):
    worker_port, scheduler_port = free_port(), free_port()
    metrics_dir = tmp_path / "multiproc"
    processes.worker(env={"JOBS_WORKER_METRICS_PORT": str(worker_port), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    processes.scheduler(env={"JOBS_SCHEDULER_METRICS_PORT": str(scheduler_port)})
    prometheus = start_prometheus(
        {"jobs-worker": [f"127.0.0.1:{worker_port}"], "jobs-scheduler": [f"127.0.0.1:{scheduler_port}"]},
        tmp_path / "prometheus",
    )
    try:
        noops = 25
        ids = enqueue_many_now("platform.noop", [{}] * noops)
        ids += enqueue_many_now("test.fail", [{"key": "f1"}, {"key": "f2"}])  # 3 attempts each, then failed
        ids.append(enqueue_now("test.flaky", {"key": "fl", "fail_times": 1}, queue="high").id)  # a retry, a success
        wait_for(lambda: terminal(db, ids), 60, f"every job ends, have {states(db)}")

        status, worker_text = http_get(f"http://127.0.0.1:{worker_port}/metrics")
        assert status == 200
        promtool_check_metrics(worker_text)
        found = samples(worker_text)
        noop = {"queue": "default", "job_type": "platform.noop"}
        fail = {"queue": "default", "job_type": "test.fail"}
        flaky = {"queue": "high", "job_type": "test.flaky"}
        assert value(found, "jobs_started_total", **noop) == noops
        assert value(found, "jobs_succeeded_total", **noop) == noops
        assert value(found, "jobs_run_seconds_count", **noop) == noops
        assert value(found, "jobs_queue_wait_seconds_count", **noop) == noops
        assert value(found, "jobs_run_seconds_bucket", **noop, le="3600.0") == noops
        assert (value(found, "jobs_started_total", **fail), value(found, "jobs_retried_total", **fail),
                value(found, "jobs_failed_total", **fail)) == (6, 4, 2)
        assert (value(found, "jobs_retried_total", **flaky), value(found, "jobs_succeeded_total", **flaky)) == (1, 1)
        assert value(found, "jobs_running", **noop) == 0
        assert list(metrics_dir.glob("*.db")), "the pool processes write to PROMETHEUS_MULTIPROC_DIR"

        status, scheduler_text = http_get(f"http://127.0.0.1:{scheduler_port}/metrics")
        assert status == 200
        promtool_check_metrics(scheduler_text)
        found = samples(scheduler_text)
        assert {(q, s) for (name, labels) in found if name == "jobs_in_state"
                for q, s in [(dict(labels)["queue"], dict(labels)["state"])]} == {(q, s) for q in QUEUES for s in ACTIVE}
        assert value(found, "jobs_scheduler_leader") == 1
        assert value(found, "jobs_workers_alive") == 2  # the two pool processes
        assert {dict(labels)["queue"] for (name, labels) in found if name == "jobs_oldest_waiting_seconds"} == set(QUEUES)
        assert value(found, "jobs_rescued_total") == 0
        assert ("jobs_cron_lateness_seconds_bucket", frozenset({("le", "1.0")})) in found

        status, body = http_get(f"http://127.0.0.1:{scheduler_port}/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["leader"] is True
        assert health["services"]["dispatcher"]["state"] == "ok"

        query = 'sum(jobs_succeeded_total{job_type="platform.noop"})'
        wait_for(lambda: [float(r["value"][1]) for r in prometheus.query(query)] == [noops], 20,
                 f"Prometheus sees {noops} succeeded noop jobs: {prometheus.query(query)}", interval=0.25)
        wait_for(lambda: {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
                 == {"jobs-worker": "1", "jobs-scheduler": "1"}, 20, "both targets scraped and up", interval=0.25)
        assert prometheus.query("jobs_scheduler_leader")[0]["value"][1] == "1"
        assert len(prometheus.query('jobs_in_state{job="jobs-scheduler"}')) == len(QUEUES) * len(ACTIVE)
        failed = prometheus.query('sum by (job_type) (jobs_failed_total)')
        assert {r["metric"]["job_type"]: r["value"][1] for r in failed}["test.fail"] == "2"
    finally:
        prometheus.stop()


def test_private_metrics_dir_and_a_killed_pool_process_stops_counting_as_running(db, processes, tmp_path):
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    worker = processes.worker(concurrency=2, env={"JOBS_WORKER_METRICS_PORT": str(port), "TMPDIR": str(scratch)})
    processes.scheduler(env={"JOBS_SCHEDULER_METRICS_PORT": "0"})
    [private] = list(scratch.glob("jobs-worker-metrics-*"))  # created at start, before the pool forked
    job = enqueue_now("test.sleep", {"key": "s", "seconds": 5})
    url = f"http://127.0.0.1:{port}/metrics"
    running = lambda: value(samples(http_get(url)[1]), "jobs_running", queue="default", job_type="test.sleep")  # noqa: E731
    wait_for(lambda: running() == 1, 30, "the sleeping job counts as running")
    with db.session() as s:
        pid = s.execute(text(
            "SELECT w.pid FROM jobs j JOIN workers w ON w.id = j.worker_id WHERE j.id = :j"), {"j": job.id}).scalar()
    assert pid in processes.pool_pids(worker)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running() == 0, 10, "a process killed with -9 no longer counts")
    # The dead process's counters stay: a counter never goes down (the rescued job may have restarted).
    assert value(samples(http_get(url)[1]), "jobs_started_total", queue="default", job_type="test.sleep") >= 1
    worker.stop()
    assert not private.exists(), "the private metrics directory is removed when the worker stops"


@pytest.fixture
def flower_process(test_env, tmp_path) -> Iterator[tuple[int, str]]:
    port, credentials = free_port(), "ops:s3cret-pass"
    env = dict(os.environ, **test_env, JOBS_FLOWER_PORT=str(port), JOBS_FLOWER_BASIC_AUTH=credentials)
    log_path = tmp_path / "flower.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "shared.cli.flower"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, f"flower exited with {process.returncode}:\n{log_path.read_text()}"
            try:
                return http_get(f"http://127.0.0.1:{port}/healthcheck", timeout=1)[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, "flower answers /healthcheck", interval=0.2)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert "s3cret-pass" not in cmdline, "credentials must not be visible in the process list"
        yield port, credentials
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_flower_asks_for_credentials_and_lists_the_platform_tasks_by_job_type(db, processes, flower_process):
    port, credentials = flower_process
    processes.worker(env={"JOBS_WORKER_METRICS_PORT": "0"})
    base = f"http://127.0.0.1:{port}"
    for page in ("/", "/tasks", "/workers", "/api/tasks", "/api/workers", "/metrics"):
        assert http_get(base + page)[0] == 401, page
    assert http_get(base + "/api/tasks", auth="ops:wrong")[0] == 401
    assert http_get(base + "/metrics", auth="ops:wrong")[0] == 401
    assert http_get(base + "/", auth=credentials)[0] == 200
    assert http_get(base + "/metrics", auth=credentials)[0] == 200
    assert http_get(base + "/healthcheck")[0] == 200  # probes: it says only "OK"

    ids = enqueue_many_now("platform.noop", [{}] * 3)
    processes.scheduler(env={"JOBS_SCHEDULER_METRICS_PORT": "0"})
    wait_for(lambda: terminal(db, ids), 30, f"noop jobs succeed, have {states(db)}")

    def succeeded_noops() -> set[int | None]:
        status, body = http_get(base + "/api/tasks", auth=credentials)
        assert status == 200, body
        return {job_id_from_task_id(task_id) for task_id, task in json.loads(body).items()
                if task["name"] == "platform.noop" and task["state"] == "SUCCESS"}

    wait_for(lambda: succeeded_noops() == set(ids), 20, "Flower lists the three platform.noop tasks", interval=0.2)
