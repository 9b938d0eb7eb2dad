"""The scheduler's HTTP endpoint: `/metrics` for Prometheus and `/healthz` for probes.

What only the database knows (queue depths, the oldest waiting job, dispatcher lag, live
workers, cron lateness) is read with a few cheap statements when Prometheus scrapes, at most
once per `REFRESH_SECONDS` however many scrapers there are. What only this process knows
(leadership, jobs its rescuer failed over, each service's health) is read from memory. Every
replica reports the same database figures (dashboards and alerts take `max`) and its own
leadership. If the database is unreachable the database figures are left out rather than
served stale, so `absent()` alerts fire.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from shared.clock import Clock, SystemClock
from shared.db import Database
from shared.errors import PlatformError
from shared.settings import Settings
from shared.store import operations as ops
from shared.store.rows import Executor
from scheduler.health import health_report
from scheduler.supervisor import Supervisor

log = logging.getLogger("scheduler.metrics")

REFRESH_SECONDS = 1.0
# Cron fires should be enqueued within a second of their due time; the 1 s boundary is the
# JobsCronLate alert's threshold, the rest show how late "late" is.
CRON_LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class LatenessHistogram:
    """A plain cumulative histogram: no prometheus_client value objects, so a process that has
    PROMETHEUS_MULTIPROC_DIR in its environment (the container image sets it for everyone) does
    not switch this one to files."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        value = max(0.0, value)  # an injected clock may enqueue "before" the fire time
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.counts[index] += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


class CronFireReader:
    """Hands each job a schedule made to the histogram exactly once.

    It follows job ids from the newest one at start. A row committed late, with an id below rows
    already seen, would be skipped by a plain cursor; so each read starts again from where the
    previous read started and ignores the ids it has already counted."""

    def __init__(self) -> None:
        self._floor: int | None = None
        self._top = 0
        self._seen: set[int] = set()

    def read(self, session: Executor) -> list[float]:
        if self._floor is None:
            self._floor = self._top = ops.newest_job_id(session)
            return []
        fires = ops.cron_fires_after(session, self._floor)
        new = [fire for fire in fires if fire.id not in self._seen]
        self._seen.update(fire.id for fire in new)
        self._floor, self._top = self._top, max([self._top, *(fire.id for fire in fires)])
        self._seen = {i for i in self._seen if i > self._floor}
        return [fire.lateness_seconds for fire in new]


def dispatcher_lag_seconds(queues: Sequence[ops.QueueOverview], overdue_scheduled_at: datetime | None) -> float:
    """How long due work has gone undispatched while nothing held it back.

    Two signs: a scheduled job past its time (the dispatcher promotes those every round), and a
    queue with due queued jobs and nothing in flight (a live dispatcher fills an empty window at
    once). Paused and rate-limited queues are left out: their jobs wait on purpose. A queue with
    jobs in flight is left out too, since per-key limits may then hold its backlog legitimately."""
    if not queues:
        return 0.0
    now = queues[0].now
    lags = [0.0]
    if overdue_scheduled_at is not None:
        lags.append((now - overdue_scheduled_at).total_seconds())
    for queue in queues:
        idle = queue.dispatched == 0 and queue.running == 0
        if queue.oldest_queued_at is not None and idle and not queue.paused and queue.rate_limit is None:
            lags.append((now - queue.oldest_queued_at).total_seconds())
    return max(lags)


class SchedulerCollector:
    """A prometheus_client collector: reads the database when collected (rate-limited)."""

    def __init__(
        self, database: Database, settings: Settings, supervisor: Supervisor, clock: Clock | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.database = database
        self.refresh_seconds = refresh_seconds
        self.settings = settings
        self.supervisor = supervisor
        self.clock = clock or SystemClock()
        self.cron_lateness = LatenessHistogram(CRON_LATENESS_BUCKETS)
        self._cron = CronFireReader()
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at = float("-inf")

    def collect(self) -> Iterable[Metric]:
        leader = self.supervisor.election.is_leader.is_set()
        yield GaugeMetricFamily(
            "jobs_scheduler_leader", "1 when this scheduler replica holds the leader lease.", value=int(leader)
        )
        rescued = sum(int(getattr(service, "rescued_total", 0)) for service in self.supervisor.services)
        yield CounterMetricFamily(
            "jobs_rescued", "Running jobs of dead worker processes this replica failed over (retried or failed).", value=rescued
        )
        for service in self.supervisor.services:
            probe = getattr(service, "probe", None)
            if probe is not None and probe.ok is not None:  # absent until a probe was judged
                yield GaugeMetricFamily(
                    "jobs_dispatcher_notify_ok",
                    "1 when the dispatcher's last NOTIFY probe reached its listener, 0 when it did not (then it polls).",
                    value=int(probe.ok),
                )
                break
        yield from self._database_metrics()

    def prime(self) -> None:
        """Start following cron fires now, not at the first scrape (which may come much later)."""
        try:
            with self.database.session() as session:
                self._cron.read(session)
        except PlatformError as exc:
            log.warning("scheduler metrics: the database could not be read: %s", exc)

    def _database_metrics(self) -> list[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_seconds:
                try:
                    self._cached = self._read()
                except PlatformError as exc:
                    log.warning("scheduler metrics: the database could not be read: %s", exc)
                    self._cached = []
                except Exception:  # noqa: BLE001 - a bug here must not take the leader gauge down with it
                    log.exception("scheduler metrics: reading the database failed")
                    self._cached = []
                self._read_at = time.monotonic()
            return self._cached

    def _read(self) -> list[Metric]:
        now = self.clock.sql_now()
        with self.database.session() as session:
            queues = ops.queue_overview(session, now)
            overdue = ops.oldest_overdue_scheduled(session, now)
            alive = ops.count_live_workers(session, self.settings.worker_stale_after_seconds, now)
            for lateness in self._cron.read(session):
                self.cron_lateness.observe(lateness)
        states = GaugeMetricFamily(
            "jobs_in_state", "Jobs in each active state, per queue (finished jobs are not counted here).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "jobs_oldest_waiting_seconds", "Age, from its due time, of the oldest due job that has not started, per queue.",
            labels=["queue"],
        )
        for queue in queues:
            for state, count in queue.counts().items():
                states.add_metric([queue.name, state], count)
            oldest.add_metric([queue.name], queue.oldest_waiting_seconds())
        return [
            states,
            oldest,
            GaugeMetricFamily(
                "jobs_dispatcher_lag_seconds", "How long due work has waited for the dispatcher while nothing held it back.",
                value=dispatcher_lag_seconds(queues, overdue),
            ),
            GaugeMetricFamily("jobs_workers_alive", "Worker processes with a fresh heartbeat.", value=alive),
            self.cron_lateness.family(
                "jobs_cron_lateness_seconds", "Delay from a schedule's fire time to its job being enqueued."
            ),
        ]


class Exporter:
    """The HTTP server thread."""

    def __init__(self, registry: CollectorRegistry, supervisor: Supervisor) -> None:
        self.registry = registry
        self.supervisor = supervisor
        self.started_at = time.monotonic()
        self.server: ThreadingHTTPServer | None = None
        self._leader_since: float | None = None

    def start(self, port: int, address: str = "127.0.0.1") -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._answer(200, content_type, encoder(exporter.registry))
                elif path == "/healthz":
                    healthy, report = exporter.health()
                    self._answer(200 if healthy else 503, "application/json", json.dumps(report).encode())
                else:
                    self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # a scrape a second would drown the scheduler's own log

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True).start()

    def health(self) -> tuple[bool, dict[str, object]]:
        leader = self.supervisor.election.is_leader.is_set()
        # Leadership is only seen here, at probe time: late, so the grace it gives is never too short.
        if leader and self._leader_since is None:
            self._leader_since = time.monotonic()
        elif not leader:
            self._leader_since = None
        return health_report(
            self.supervisor.services, leader, time.time(), time.monotonic() - self.started_at,
            None if self._leader_since is None else time.monotonic() - self._leader_since,
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_exporter(
    supervisor: Supervisor, database: Database, settings: Settings, clock: Clock | None = None, address: str | None = None
) -> Exporter | None:
    """Serve /metrics and /healthz on JOBS_SCHEDULER_METRICS_PORT (None when it is 0, or taken)."""
    port = settings.scheduler_metrics_port
    if not port:
        return None
    address = address or settings.metrics_address
    collector = SchedulerCollector(database, settings, supervisor, clock)
    collector.prime()
    registry = CollectorRegistry()
    registry.register(collector)
    exporter = Exporter(registry, supervisor)
    try:
        exporter.start(port, address)
    except OSError as exc:
        # The scheduler's work matters more than its metrics: run on, loudly.
        log.error("scheduler metrics: cannot listen on port %d (%s); /metrics and /healthz are not served", port, exc)
        return None
    log.info("scheduler metrics on http://%s:%d/metrics, health on /healthz", address, port)
    return exporter
