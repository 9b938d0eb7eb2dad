"""The scheduler's services, in the order the supervisor starts them."""

from __future__ import annotations

from celery import Celery

from shared.clock import Clock
from shared.db import Database
from shared.jobtypes.registry import Registry
from shared.settings import Settings
from scheduler.cron import CronService
from scheduler.dependencies import DependencySweep
from scheduler.dispatcher import Dispatcher
from scheduler.pruner import Pruner
from scheduler.rescuer import Rescuer
from scheduler.rollup import Rollup
from scheduler.service import Service


def build_services(database: Database, app: Celery, settings: Settings, registry: Registry, clock: Clock) -> list[Service]:
    """The dispatcher (on every replica), then the leader-only ones: cron, rescuer, dependency
    sweep, pruner, roll-up.

    Code-declared schedules are those the declaration modules (JOBS_IMPORTS, imported into
    `registry`) declared with `shared.schedules.schedule`; cron syncs them when it first leads.
    """
    return [
        Dispatcher(database, app, settings, registry, clock),
        CronService(database, settings, registry, clock),
        Rescuer(database, settings, clock, app, registry),
        DependencySweep(database, clock),
        Pruner(database, settings, clock),
        Rollup(database, settings, clock),
    ]
