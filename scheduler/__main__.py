"""`python -m scheduler`: the long-running services (dispatcher, rescuer, ...) in one process."""

from __future__ import annotations

import logging
import os
import socket
import uuid

from shared.broker import make_celery
from shared.clock import SystemClock
from shared.db import get_database
from shared.jobtypes.registry import load_declarations
from shared.logconfig import configure_logging
from shared.settings import get_settings
from scheduler.dependencies import DependencySweep
from scheduler.dispatcher import Dispatcher
from scheduler.leader import LeaderElection
from scheduler.rescuer import Rescuer
from scheduler.supervisor import Supervisor


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    registry = load_declarations(settings.imports)
    database = get_database(settings)
    clock = SystemClock()
    app = make_celery(settings)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    services = [
        Dispatcher(database, app, settings, registry, clock),
        Rescuer(database, settings, clock, app),
        DependencySweep(database, clock),
    ]
    Supervisor(services, LeaderElection(database, holder, clock)).run_forever()
    logging.shutdown()


if __name__ == "__main__":
    main()
