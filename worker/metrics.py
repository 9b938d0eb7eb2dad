"""Worker metrics for Prometheus: what the pool processes ran, served by the worker's main process.

Celery's prefork pool runs jobs in child processes while one port belongs to the parent, so the
metrics use prometheus_client's multiprocess mode: each process writes its values to files in
`PROMETHEUS_MULTIPROC_DIR`, and the parent sums the files on every scrape of
`:JOBS_WORKER_METRICS_PORT/metrics`. Importing this module is the whole wiring: it registers the
runner observer and the Celery signal handlers below (so `celery inspect` or Flower, which import
the app but never start a worker, open no port and create no directory).
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from wsgiref.simple_server import WSGIServer

from celery.signals import task_postrun, worker_init, worker_process_init, worker_process_shutdown, worker_shutdown
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server, values
from prometheus_client.metrics_core import Metric

from shared.models.states import ExecutionState, JobState
from shared.settings import get_settings
from shared.store.rows import ClaimedJob
from worker import runner

log = logging.getLogger(__name__)

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
LABELS = ("queue", "job_type")
# From a millisecond (a no-op) to an hour (the longest report): one scale for every job type.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
)

# registry=None: no process serves these from its own memory; the parent reads every process's files.
STARTED = Counter("jobs_started_total", "Attempts claimed and started by worker processes.", LABELS, registry=None)
SUCCEEDED = Counter("jobs_succeeded_total", "Attempts that ended with the job succeeded.", LABELS, registry=None)
FAILED = Counter(
    "jobs_failed_total", "Attempts that ended with the job failed for good (attempts spent or discarded).",
    LABELS, registry=None,
)
RETRIED = Counter(
    "jobs_retried_total", "Attempts that failed or timed out and left the job scheduled for another attempt.",
    LABELS, registry=None,
)
RUN_SECONDS = Histogram(
    "jobs_run_seconds", "Wall time of an attempt in the worker process, claim to recorded outcome.",
    LABELS, buckets=DURATION_BUCKETS, registry=None,
)
QUEUE_WAIT_SECONDS = Histogram(
    "jobs_queue_wait_seconds", "Time from a job being due (run_at, or enqueue when later) to an attempt starting.",
    LABELS, buckets=DURATION_BUCKETS, registry=None,
)
# Counted by the worker's main process, where Celery accepts messages (worker/consumer.py); the
# reason label is a closed set: malformed, undecodable, unknown_task.
MESSAGES_REJECTED = Counter(
    "jobs_messages_rejected_total",
    "Broker messages the worker could not accept (bad headers or body, content type, unknown task): logged and dropped.",
    ("reason",), registry=None,
)
# livesum: a process that died (even by kill -9) stops counting once its file is swept.
RUNNING = Gauge(
    "jobs_running", "Attempts running now in this worker's processes.", LABELS,
    multiprocess_mode="livesum", registry=None,
)


def outcome_of(attempt: runner.Attempt) -> str | None:
    """Which outcome counter an attempt adds to; None for snoozes, cancellations and reports that
    came too late to count (the rescuer had already given the attempt up)."""
    if not attempt.recorded:
        return None
    state, execution = attempt.finish.job_state, attempt.finish.execution_state
    if state == JobState.SUCCEEDED:
        return "succeeded"
    if state == JobState.FAILED:
        return "failed"
    if state == JobState.SCHEDULED and execution in (ExecutionState.FAILED, ExecutionState.TIMED_OUT):
        return "retried"
    return None


def queue_wait_seconds(job: ClaimedJob) -> float:
    # Both times come from the database's clock, so host clock skew cannot distort the wait.
    due = max(job.run_at, job.created_at)
    return max(0.0, (job.started_at - due).total_seconds())


_OUTCOMES = {"succeeded": SUCCEEDED, "failed": FAILED, "retried": RETRIED}


class JobMetrics:
    """The runner observer: counts claims and outcomes, times attempts, tracks what runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # job id -> (labels, start); one process runs a given job at most once at a time.
        self._running: dict[int, tuple[tuple[str, str], float]] = {}

    def claimed(self, job: ClaimedJob) -> None:
        labels = (job.queue, job.type)
        STARTED.labels(*labels).inc()
        QUEUE_WAIT_SECONDS.labels(*labels).observe(queue_wait_seconds(job))
        RUNNING.labels(*labels).inc()
        with self._lock:
            self._running[job.id] = (labels, time.perf_counter())

    def finished(self, attempt: runner.Attempt) -> None:
        entry = self._forget(attempt.job.id)
        if entry is not None:
            labels, began = entry
            RUN_SECONDS.labels(*labels).observe(time.perf_counter() - began)
        outcome = outcome_of(attempt)
        if outcome is not None:
            _OUTCOMES[outcome].labels(attempt.job.queue, attempt.job.type).inc()

    def task_ended(self, job_id: int) -> None:
        """The Celery task returned or raised; an attempt whose outcome was never recorded (the
        database failed mid-way) must not stay counted as running."""
        self._forget(job_id)

    def _forget(self, job_id: int) -> tuple[tuple[str, str], float] | None:
        with self._lock:
            entry = self._running.pop(job_id, None)
        if entry is not None:
            RUNNING.labels(*entry[0]).dec()
        return entry


observer = JobMetrics()
runner.observers.append(observer)


class _SweepingCollector(multiprocess.MultiProcessCollector):
    """MultiProcessCollector that first drops the live gauges of processes that are gone.

    A pool child that exits cleanly marks itself dead (below), but one killed with -9 cannot, and
    the parent learns of it only through billiard's internals; checking pids at scrape time is
    cheap and catches every way a process can end."""

    _LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")

    def collect(self) -> Iterable[Metric]:
        for path in glob.glob(os.path.join(self._path, "gauge_live*_*.db")):
            found = self._LIVE_FILE.search(path)
            if found and not _alive(int(found.group(1))):
                multiprocess.mark_process_dead(int(found.group(1)), self._path)
        return super().collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0) until its parent reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class _Exporter:
    directory: str
    owned: bool  # we created the directory, so we remove it
    owner_pid: int = field(default_factory=os.getpid)
    server: WSGIServer | None = None

    def close(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)


_exporter: _Exporter | None = None


def prepare_directory() -> tuple[str, bool]:
    """The directory the processes write to: the configured one, or a private temporary one put in
    the environment, so the pool children forked later inherit it. Returns (path, created)."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        os.makedirs(configured, exist_ok=True)
        path, created = configured, False
    else:
        path, created = tempfile.mkdtemp(prefix="jobs-worker-metrics-"), True
        os.environ[ENV_DIR] = path
    # The value class is picked when prometheus_client is imported, which may have been before the
    # directory existed: switch it now, before any pool process creates a value.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
    return path, created


def start(port: int, address: str = "127.0.0.1") -> _Exporter:
    """Prepare the directory and serve /metrics from this (the main) process."""
    global _exporter
    path, created = prepare_directory()
    exporter = _Exporter(path, created)
    atexit.register(exporter.close)
    registry = CollectorRegistry()
    registry.register(_SweepingCollector(registry=None, path=path))
    try:
        exporter.server, _ = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        # Jobs matter more than their metrics: run on, loudly.
        log.error("worker metrics: cannot listen on port %d (%s); /metrics is not served", port, exc)
    else:
        log.info("worker metrics on http://%s:%d/metrics (files in %s)", address, port, path)
    _exporter = exporter
    return exporter


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    # worker_init runs in the main process before the pool forks: the children inherit the
    # environment variable and never hold a port.
    settings = get_settings()
    if settings.worker_metrics_port:
        start(settings.worker_metrics_port, settings.metrics_address)


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    # A forked child inherits the listening socket; closing its copy keeps the port the parent's
    # alone. The solo pool sends this signal in the main process itself, which must keep serving.
    if _exporter is not None and _exporter.server is not None and os.getpid() != _exporter.owner_pid:
        _exporter.server.socket.close()


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    if _exporter is not None and os.getpid() != _exporter.owner_pid:
        multiprocess.mark_process_dead(os.getpid(), _exporter.directory)


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _exporter is not None:
        _exporter.close()


@task_postrun.connect
def _on_task_postrun(kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    job_id = (kwargs or {}).get("job_id")
    if job_id is not None:
        observer.task_ended(int(job_id))
