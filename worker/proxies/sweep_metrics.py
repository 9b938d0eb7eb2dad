"""Proxy sweep metrics: checks done, and the latest sweep's progress and duration.

Kept apart from worker/metrics.py (the job metrics) but served by the same exporter: these too
are prometheus_client multiprocess metrics, written by whichever pool process records a batch
and summed (counters) or taken from the most recent writer (gauges) on every scrape. The gauges
copy the sweep's row as a batch left it, so every process reports the same sweep.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.models.domain import ProxySweep

CHECKS = Counter(
    "jobs_proxy_checks_total", "Proxy checks recorded, by result (ok, failed).", ("result",), registry=None,
)
SWEEP_ID = Gauge(
    "jobs_proxy_sweep_id", "Id of the latest proxy sweep a worker recorded checks for.",
    multiprocess_mode="mostrecent", registry=None,
)
SWEEP_TOTAL = Gauge(
    "jobs_proxy_sweep_total", "Proxies in the latest sweep.", multiprocess_mode="mostrecent", registry=None,
)
SWEEP_CHECKED = Gauge(
    "jobs_proxy_sweep_checked", "Proxies of the latest sweep checked so far.", multiprocess_mode="mostrecent",
    registry=None,
)
SWEEP_HEALTHY = Gauge(
    "jobs_proxy_sweep_healthy", "Proxies of the latest sweep whose check succeeded.",
    multiprocess_mode="mostrecent", registry=None,
)
SWEEP_SECONDS = Gauge(
    "jobs_proxy_sweep_duration_seconds", "The latest sweep's duration: start to finish, or to its last recorded check.",
    multiprocess_mode="mostrecent", registry=None,
)


def observe(sweep: ProxySweep, ok: int, failed: int, seconds: float) -> None:
    CHECKS.labels("ok").inc(ok)
    CHECKS.labels("failed").inc(failed)
    SWEEP_ID.set(sweep.id)
    SWEEP_TOTAL.set(sweep.total)
    SWEEP_CHECKED.set(sweep.checked)
    SWEEP_HEALTHY.set(sweep.healthy)
    SWEEP_SECONDS.set(seconds)
