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
# The gauges have no labels, and prometheus_client opens the value file of an unlabelled
# multiprocess metric the moment it is made: they are made at the first observation, not at
# import, because a worker imports this before its metrics directory exists.
_GAUGES = {
    "id": ("jobs_proxy_sweep_id", "Id of the latest proxy sweep a worker recorded checks for."),
    "total": ("jobs_proxy_sweep_total", "Proxies in the latest sweep."),
    "checked": ("jobs_proxy_sweep_checked", "Proxies of the latest sweep checked so far."),
    "healthy": ("jobs_proxy_sweep_healthy", "Proxies of the latest sweep whose check succeeded."),
    "seconds": ("jobs_proxy_sweep_duration_seconds",
                "The latest sweep's duration: start to finish, or to its last recorded check."),
}
_made: dict[str, Gauge] = {}


def _gauge(key: str) -> Gauge:
    if key not in _made:
        name, description = _GAUGES[key]
        _made[key] = Gauge(name, description, multiprocess_mode="mostrecent", registry=None)
    return _made[key]


def observe(sweep: ProxySweep, ok: int, failed: int, seconds: float) -> None:
    CHECKS.labels("ok").inc(ok)
    CHECKS.labels("failed").inc(failed)
    _gauge("id").set(sweep.id)
    _gauge("total").set(sweep.total)
    _gauge("checked").set(sweep.checked)
    _gauge("healthy").set(sweep.healthy)
    _gauge("seconds").set(seconds)
