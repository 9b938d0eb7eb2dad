"""Recurring schedules: declared in code next to their job type, or managed at run time.

    NIGHTLY = declare("reports.nightly", ReportPayload)
    schedule(NIGHTLY, cron="30 2 * * *", timezone="Europe/Berlin", payload={"kind": "daily"})

A declaration whose cron (or presence) follows the settings is made with
`shared.jobtypes.recurring.recurring()` (the platform's workload sweeps): it is resolved with
the process's settings and validated here, by `declared_schedules(settings)`.
Code declarations are synced into `schedules` (source 'code') when the scheduler starts;
schedules made through this API or `jobctl schedules` (source 'api') are never touched by a
sync. Every definition is validated strictly before anything is written (through the gate,
`shared.inputs`, for types, text and the payload); a refusal raises `ScheduleInvalid` naming
the field. Look-ups by name refuse what cannot be a name (a non-str, NUL, a lone surrogate)
with `InputInvalid` before any SQL. Cron fires themselves are made by `scheduler/cron.py`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime
from typing import Any, Mapping

from pydantic import BaseModel

from shared import inputs
from shared.clock import Clock, SystemClock
from shared.crontime import CronSpec, next_fire, parse
from shared.db import Database, get_database
# The same payload and limit-key rules as enqueue.
from shared.enqueue import validate_payload, limit_key
from shared.errors import NotFound, ScheduleInvalid, UnknownJobType, ValidationError
from shared.jobtypes.recurring import Recurring, recurring_declarations
from shared.jobtypes.registry import JobType, Registry, registry as default_registry
from shared.models.platform import PRIORITY_MAX, PRIORITY_MIN, QUEUE_NAME_PATTERN
from shared.models.states import MisfirePolicy
from shared.settings import Settings, get_settings
from shared.store import maintenance
from shared.store import queues as queue_store
from shared.store import schedules as store
from shared.store.rows import Executor
from shared.store.schedules import FireJob, Lateness, ScheduleFields, ScheduleRow

log = logging.getLogger("shared.schedules")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
MAX_CATCH_UP = 1000
MAX_JITTER_SECONDS = 86400.0
MAX_CRON_CHARS = 200
MAX_TIMEZONE_CHARS = 64
MAX_NAME_CHARS = 200

_declared: dict[str, ScheduleFields] = {}
_declared_lock = threading.Lock()

__all__ = [
    "ScheduleRow", "add_schedule", "cron_lateness", "declared_schedules", "define", "delete_schedule",
    "disable_schedule", "enable_schedule", "fire_job", "get_schedule", "list_schedules", "run_schedule_now",
    "schedule", "set_cron", "sync_declared",
]


def define(
    job_type: str | JobType[Any],
    *,
    cron: str,
    timezone: str = "UTC",
    payload: Mapping[str, Any] | BaseModel | None = None,
    name: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    misfire: str = MisfirePolicy.RUN_ONCE,
    catch_up_limit: int = 1,
    jitter: float = 0.0,
    enabled: bool = True,
    registry: Registry = default_registry,
) -> ScheduleFields:
    """A validated definition (all but the queue's existence, which needs the database)."""
    try:
        declared = inputs.job_type(job_type, registry)
    except UnknownJobType as exc:
        raise ScheduleInvalid(str(exc), field="job_type") from None
    name = declared.name if name is None else name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ScheduleInvalid(f"schedule name {inputs.show(name)} must be 1-200 letters, digits, '_', '.', ':' or '-'", field="name")
    spec = _spec(cron, timezone)
    try:
        encoded, _ = validate_payload(declared, {} if payload is None else payload, get_settings().max_payload_bytes)
    except ValidationError as exc:
        raise ScheduleInvalid(f"payload: {exc}", field="payload") from None
    queue = declared.queue if queue is None else queue
    if not isinstance(queue, str) or not re.fullmatch(QUEUE_NAME_PATTERN, queue):
        raise ScheduleInvalid(f"queue {inputs.show(queue)} is not a valid queue name", field="queue")
    priority = declared.priority if priority is None else priority
    if not isinstance(priority, int) or isinstance(priority, bool) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ScheduleInvalid(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}; got {inputs.show(priority)}", field="priority")
    if not isinstance(misfire, str) or misfire not in set(MisfirePolicy):
        raise ScheduleInvalid(f"misfire must be one of {', '.join(MisfirePolicy)}; got {inputs.show(misfire)}", field="misfire")
    if not isinstance(catch_up_limit, int) or isinstance(catch_up_limit, bool) or not 1 <= catch_up_limit <= MAX_CATCH_UP:
        raise ScheduleInvalid(f"catch_up_limit must be an integer from 1 to {MAX_CATCH_UP}; got {inputs.show(catch_up_limit)}", field="catch_up_limit")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= MAX_JITTER_SECONDS:
        raise ScheduleInvalid(f"jitter must be from 0 to {MAX_JITTER_SECONDS:.0f} seconds; got {inputs.show(jitter)}", field="jitter")
    inputs.boolean(enabled, "enabled", error=ScheduleInvalid)
    return ScheduleFields(
        name=name, cron=spec.expression, timezone=spec.timezone, job_type=declared.name, payload=json.loads(encoded),
        queue=queue, priority=priority, misfire_policy=str(MisfirePolicy(misfire)), catch_up_limit=catch_up_limit,
        jitter_seconds=float(jitter), enabled=enabled,
    )


def _spec(cron: Any, timezone: Any) -> CronSpec:
    """Parse through the gate: text first (types, NUL, surrogates, length), then the zone alone,
    then the expression, so an error from the file system or croniter names its field too."""
    timezone = inputs.text(timezone, "timezone", MAX_TIMEZONE_CHARS, error=ScheduleInvalid)
    cron = inputs.text(cron, "cron", MAX_CRON_CHARS, error=ScheduleInvalid)
    for field, expression in (("timezone", "* * * * *"), ("cron", cron)):
        try:
            spec = parse(expression, timezone)
        except ScheduleInvalid:
            raise
        except Exception as exc:  # zoneinfo reads files (a directory, a long name); croniter is third-party
            shown = inputs.show(timezone if field == "timezone" else cron)
            raise ScheduleInvalid(f"{field} {shown} is invalid: {type(exc).__name__}", field=field) from None
    return spec


def _lookup(name: Any) -> str:
    """A name to look up: anything that cannot be stored text is refused before the query."""
    return inputs.text(name, "name", MAX_NAME_CHARS)


def schedule(job_type: str | JobType[Any], *, cron: str, **options: Any) -> ScheduleFields:
    """Declare a schedule in code, next to its job type; synced when the scheduler starts."""
    fields = define(job_type, cron=cron, **options)
    with _declared_lock:
        existing = _declared.get(fields.name)
        if existing is not None and existing != fields:
            raise ScheduleInvalid(f"schedule {fields.name!r} is declared twice, differently", field="name")
        _declared[fields.name] = fields
    return fields


def declared_schedules(settings: Settings | None = None) -> list[ScheduleFields]:
    """The schedules declared in code: `schedule()`'s, and the `recurring()` declarations
    that `settings` (the process's when None) asks for, resolved with them and validated."""
    settings = settings or get_settings()
    with _declared_lock:
        fields = dict(_declared)
    for declared in recurring_declarations():
        if declared.when is not None and not declared.when(settings):
            continue
        resolved = _resolve(declared, settings)
        if fields.setdefault(resolved.name, resolved) != resolved:
            raise ScheduleInvalid(f"schedule {resolved.name!r} is declared twice, differently", field="name")
    return [fields[name] for name in sorted(fields)]


def _resolve(declared: Recurring, settings: Settings) -> ScheduleFields:
    cron = declared.cron(settings) if callable(declared.cron) else declared.cron
    return define(declared.job_type, cron=cron, **dict(declared.options))


def _now(db: Executor, clock: Clock) -> datetime:
    """The time a schedule's next fire is counted from: the database's (or a frozen clock's),
    the one the cron service compares fire times with, never this host's."""
    return maintenance.database_now(db, clock.sql_now())


def _check_queue(db: Executor, queue: str) -> None:
    known = {q.name for q in queue_store.list_queues(db)}
    if queue not in known:
        raise ScheduleInvalid(f"unknown queue {queue!r} (known: {', '.join(sorted(known)) or 'none'})", field="queue")


def sync_declared(
    definitions: list[ScheduleFields] | None = None, *, database: Database | None = None, clock: Clock | None = None
) -> dict[str, str]:
    """Write code-declared schedules (source 'code'); returns each name's outcome: created,
    updated, unchanged, conflict (an API schedule holds the name) or an error message."""
    clock = clock or SystemClock()
    outcomes: dict[str, str] = {}
    for fields in declared_schedules() if definitions is None else definitions:
        spec = parse(fields.cron, fields.timezone)
        try:
            with (database or get_database()).session() as session:
                _check_queue(session, fields.queue)
                first = next_fire(spec, _now(session, clock))
                outcomes[fields.name] = store.sync_code_schedule(session, fields, first, clock.sql_now())
        except ScheduleInvalid as exc:
            outcomes[fields.name] = f"invalid: {exc}"
    return outcomes


def add_schedule(
    name: str, job_type: str | JobType[Any], cron: str, *, database: Database | None = None,
    clock: Clock | None = None, **options: Any,
) -> ScheduleRow:
    """Create a schedule at run time (source 'api'). Options as for `schedule()`."""
    clock = clock or SystemClock()
    fields = define(job_type, cron=cron, name=name, **options)
    spec = _spec(fields.cron, fields.timezone)
    with (database or get_database()).session() as session:
        _check_queue(session, fields.queue)
        first = next_fire(spec, _now(session, clock))
        row = store.insert_schedule(session, fields, "api", first, clock.sql_now())
    if row is None:
        raise ScheduleInvalid(f"a schedule named {name!r} exists", field="name")
    return row


def _existing(db: Executor, name: str) -> ScheduleRow:
    row = store.get_schedule(db, name)
    if row is None:
        raise NotFound(f"no schedule named {name!r}", schedule=name)
    return row


def get_schedule(name: str, *, database: Database | None = None) -> ScheduleRow:
    name = _lookup(name)
    with (database or get_database()).session() as session:
        return _existing(session, name)


def list_schedules(*, database: Database | None = None) -> list[ScheduleRow]:
    with (database or get_database()).session() as session:
        return store.list_schedules(session)


def set_cron(
    name: str, cron: str, timezone: str | None = None, *, database: Database | None = None, clock: Clock | None = None
) -> ScheduleRow:
    """Change the cron (and optionally the zone); the next fire is recomputed from now."""
    clock = clock or SystemClock()
    name = _lookup(name)
    if timezone is not None:
        _spec(cron, timezone)
    else:
        inputs.text(cron, "cron", MAX_CRON_CHARS, error=ScheduleInvalid)
    with (database or get_database()).session() as session:
        zone = timezone if timezone is not None else _existing(session, name).timezone
        spec = _spec(cron, zone)
        row = store.set_schedule_cron(
            session, name, spec.expression, zone, next_fire(spec, _now(session, clock)), clock.sql_now()
        )
        if row is None:
            raise NotFound(f"no schedule named {name!r}", schedule=name)
        return row


def enable_schedule(name: str, *, database: Database | None = None, clock: Clock | None = None) -> ScheduleRow:
    """Enable from the next future fire: fires while it was disabled are not misfires."""
    name = _lookup(name)
    clock = clock or SystemClock()
    with (database or get_database()).session() as session:
        current = _existing(session, name)
        upcoming = next_fire(parse(current.cron, current.timezone), _now(session, clock))
        row = store.set_schedule_enabled(session, name, True, upcoming, clock.sql_now())
        return row or _existing(session, name)


def disable_schedule(name: str, *, database: Database | None = None, clock: Clock | None = None) -> ScheduleRow:
    name = _lookup(name)
    clock = clock or SystemClock()
    with (database or get_database()).session() as session:
        row = store.set_schedule_enabled(session, name, False, None, clock.sql_now())
        return row or _existing(session, name)


def delete_schedule(name: str, *, database: Database | None = None) -> None:
    """Delete the schedule; jobs it made stay (their schedule_id becomes NULL). A code-declared
    schedule comes back at the next scheduler start unless its declaration is removed."""
    name = _lookup(name)
    with (database or get_database()).session() as session:
        if not store.delete_schedule(session, name):
            raise NotFound(f"no schedule named {name!r}", schedule=name)


def fire_job(row: ScheduleRow, registry: Registry = default_registry) -> FireJob:
    """The job a schedule makes, with its type's defaults; ValidationError when the type is not
    declared in this process or the stored payload no longer fits its model."""
    declared = registry.get(row.job_type)
    encoded, model = validate_payload(declared, row.payload, get_settings().max_payload_bytes)
    return FireJob(
        schedule_id=row.id, type=declared.name, queue=row.queue, priority=row.priority, payload_json=encoded,
        max_attempts=declared.max_attempts or get_settings().default_max_attempts,
        timeout_seconds=declared.timeout_seconds, limit_key=limit_key(declared, model),
    )


def run_schedule_now(name: str, *, database: Database | None = None, clock: Clock | None = None) -> int:
    """Enqueue one job of the schedule now, outside its cron (no fire time); returns its id."""
    name = _lookup(name)
    clock = clock or SystemClock()
    with (database or get_database()).session() as session:
        row = _existing(session, name)
        try:
            job = fire_job(row)
        except ValidationError as exc:
            raise ScheduleInvalid(f"schedule {name!r} cannot run: {exc}", field=exc.field or "job_type") from None
        job_id = store.insert_manual_run(session, job, {"schedule": name, "trigger": "manual"}, clock.sql_now())
        queue_store.notify_ready(session)
        return job_id


def cron_lateness(
    schedule: str | None = None, since: datetime | None = None, until: datetime | None = None,
    *, database: Database | None = None,
) -> Lateness:
    """Enqueue lateness of cron fires (job created_at minus fire_time): count, p50, p99 and max
    in ms, over fire times in [since, until), for one schedule or all. None figures: no fires."""
    if schedule is not None:
        schedule = _lookup(schedule)
    since = None if since is None else inputs.moment(since, "since")
    until = None if until is None else inputs.moment(until, "until")
    with (database or get_database()).session() as session:
        return store.cron_lateness(session, schedule, since, until)

