"""What `/healthz` says: each service's state, judged from the health its loop keeps.

A service is `ok` when its last successful round is recent, `standby` when it is leader-only and
this replica follows, `starting` while it has had no chance to run yet, and `failing` otherwise
(its rounds keep raising, or its thread stopped going round). Any failing service makes the
scheduler unhealthy (HTTP 503), so a probe restarts a replica that stopped doing its work.
"""

from __future__ import annotations

from typing import Sequence

from scheduler.service import Service

# A round may legitimately take a while (a large prune, a slow database): a service is only
# judged stale well past its own interval, and never under a minute.
MIN_STALE_SECONDS = 60.0
STALE_INTERVALS = 3.0


def stale_after(service: Service) -> float:
    return max(MIN_STALE_SECONDS, STALE_INTERVALS * float(service.interval_seconds))


def service_state(service: Service, leader: bool, now: float, uptime: float, leader_for: float | None) -> str:
    if service.leader_only and not leader:
        return "standby"
    limit = stale_after(service)
    last = service.health.last_round_at
    if last is not None and now - last <= limit:
        return "ok"
    # Given no chance yet: the process (or, for leader-only services, its leadership) is new.
    running_for = uptime if not service.leader_only else min(uptime, leader_for if leader_for is not None else uptime)
    if running_for <= limit:
        return "starting"
    return "failing"


def health_report(
    services: Sequence[Service], leader: bool, now: float, uptime: float, leader_for: float | None
) -> tuple[bool, dict[str, object]]:
    """(healthy, the JSON body of /healthz)."""
    report: dict[str, object] = {}
    for service in services:
        health = service.health
        report[service.name] = {
            "state": service_state(service, leader, now, uptime, leader_for),
            "leader_only": service.leader_only,
            "rounds": health.rounds,
            "errors": health.errors,
            "last_round_age_seconds": None if health.last_round_at is None else round(now - health.last_round_at, 3),
            "last_error": health.last_error,
            **service.details(),
        }
    healthy = all(entry["state"] != "failing" for entry in report.values())  # type: ignore[index]
    # Notifications that never arrive slow the dispatcher to its polling interval but stop no
    # work, and a restart would not mend a misrouted listener: a warning, not a 503.
    warnings = [
        f"{name}: NOTIFY does not reach the listener; dispatching by polling (check JOBS_LISTEN_DATABASE_URL)"
        for name, entry in report.items() if entry.get("notifications") == "not arriving"  # type: ignore[union-attr]
    ]
    return healthy, {"status": "ok" if healthy else "failing", "leader": leader, "services": report, "warnings": warnings}
