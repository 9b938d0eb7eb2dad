"""`python -m scheduler`: the long-running services (dispatcher, cron, rescuer, dependency sweep,
pruner, roll-up) in one process, under one supervisor, with leader election and metrics."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from shared.broker import make_celery
from shared.cli.exits import one_line_errors
from shared.clock import SystemClock
from shared.db import make_database
from shared.errors import ConfigurationError
from shared.jobtypes.registry import load_declarations
from shared.logconfig import configure_logging
from shared.settings import get_settings
from scheduler.leader import LeaderElection
from scheduler.metrics import start_exporter
from scheduler.services import build_services
from scheduler.supervisor import Supervisor


def main() -> None:
    with one_line_errors():  # a bad setting or a database that is not there: one line, exit 2 or 1
        supervisor, exporter = _start()
    supervisor.run_forever()
    if exporter is not None:
        exporter.stop()
    logging.shutdown()


def _start() -> tuple[Supervisor, Any]:
    settings = get_settings()
    configure_logging(settings)
    registry = load_declarations(settings)
    # Every service retries a failed round, so the pool needs no ping per checkout.
    if not settings.database_url:
        raise ConfigurationError("JOBS_DATABASE_URL is not set (run through `jobctl up` for an embedded one)")
    database = make_database(settings.database_url, pool_size=8, pre_ping=False)
    clock = SystemClock()
    app = make_celery(settings)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    services = build_services(database, app, settings, registry, clock)
    supervisor = Supervisor(services, LeaderElection(database, holder, clock))
    exporter = start_exporter(supervisor, database, settings, clock)  # None when the port is 0
    return supervisor, exporter


if __name__ == "__main__":
    main()
