"""The cron service: every fire of every enabled schedule becomes exactly one job, on time.

Each round holds the due schedule rows (FOR UPDATE SKIP LOCKED), inserts one job per fire
with `schedule_id` and `fire_time` (ON CONFLICT on the unique index does nothing), and moves
`next_fire_at` on, all in one transaction. So a fire is enqueued exactly once whatever runs
the round: two replicas, a repeated round, a leader that was presumed dead. The service runs
on the leader only (one poller, and misfires mean something: a fire nobody made in time), but
correctness never depends on that. It sleeps until the earliest next fire, not a fixed poll,
so fires are enqueued within milliseconds of their time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime, timedelta

from shared.clock import Clock
from shared.crontime import parse, plan_fires
from shared.db import Database
from shared.errors import ValidationError
from shared.jobtypes.registry import Registry
from shared.models.states import JobState, MisfirePolicy
from shared.schedules import declared_schedules, fire_job, sync_declared
from shared.settings import Settings
from shared.store import queues as queue_store
from shared.store import schedules as store
from shared.store.rows import Executor
from shared.store.schedules import ScheduleFields, ScheduleRow
from scheduler.service import Service

log = logging.getLogger("scheduler.cron")

# Candidates for settings (see the report): read through getattr so they can move there.
FOLLOWER_POLL_SECONDS = 0.2  # a follower checks this often whether it became the leader
MIN_SLEEP_SECONDS = 0.002
ROUND_LIMIT = 100  # schedules per round; more due ones are taken by an immediate next round


def jitter_offset(schedule_id: int, fire_time: datetime, jitter_seconds: float) -> timedelta:
    """A spread in [0, jitter) that depends only on the schedule and the fire, so every replica
    (and every retry of a round) computes the same run_at."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}:{fire_time.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=round(fraction * jitter_seconds, 3))


class CronService(Service):
    name = "cron"
    leader_only = True

    def __init__(
        self, database: Database, settings: Settings, registry: Registry, clock: Clock,
        declared: list[ScheduleFields] | None = None,
    ) -> None:
        super().__init__()
        self.database = database
        self.registry = registry
        self.clock = clock
        # Resolved with this process's settings now: a bad declaration stops the start, in one line.
        self.declared = declared_schedules(settings) if declared is None else declared
        self.grace_seconds = settings.cron_misfire_grace_seconds
        self.max_sleep_seconds = settings.cron_max_sleep_seconds
        self._synced = False
        self._ticked = False
        # When the next fire is due, on the injected clock: fire times are wall-clock times, and a
        # test that moves a FrozenClock sees the exact wait (no real time measured).
        self._wake_at: datetime | None = None
        self.fired_total = 0
        self.missed_total = 0
        self.idle_total = 0  # fires skipped because their sweep had nothing to do

    def sync(self) -> dict[str, str]:
        """Write this process's code-declared schedules (once, when it first leads)."""
        outcomes = sync_declared(self.declared, database=self.database, clock=self.clock)
        for name, outcome in outcomes.items():
            if outcome == "conflict":
                log.warning("schedule %s is declared in code but an API schedule holds the name; left alone", name)
            elif outcome.startswith("invalid"):
                log.error("schedule %s not synced: %s", name, outcome)
            elif outcome != "unchanged":
                log.info("schedule %s %s from code", name, outcome)
        self._synced = True
        return outcomes

    def tick(self) -> int:
        self._ticked = True
        if not self._synced:
            self.sync()
        with self.database.session() as session:
            now, due = store.lock_due_schedules(session, ROUND_LIMIT, self.clock.sql_now())
            fired = sum(self._fire(session, row, now) for row in due if now is not None)
            if fired:
                queue_store.notify_ready(session)  # the dispatcher picks the jobs up at once
            until = 0.0 if len(due) == ROUND_LIMIT else store.seconds_until_next_fire(session, self.clock.sql_now())
            # An absolute deadline: the commit below must not push the next wake-up later.
            self._wake_at = None if until is None else self.clock.now() + timedelta(seconds=until)
        self.fired_total += fired
        return fired

    def _fire(self, session: Executor, row: ScheduleRow, now: datetime) -> int:
        assert row.next_fire_at is not None  # the round selects only schedules with a due time
        try:
            spec = parse(row.cron, row.timezone)
        except ValidationError as exc:  # written around the API (plain SQL): park it, say why
            log.error("schedule %s has an invalid definition and is parked: %s", row.name, exc)
            store.advance_schedule(session, row.id, None, None)
            return 0
        plan = plan_fires(spec, row.next_fire_at, now, row.misfire_policy, row.catch_up_limit, self.grace_seconds)
        if plan.missed_from is not None:
            kept = sum(1 for _, missed in plan.fires if missed)
            self.missed_total += 1
            # Missed fires of a schedule whose policy is to skip them (the sweeps) are what the
            # operator asked for: worth a line in the log, not a warning at every restart.
            log.log(
                logging.INFO if row.misfire_policy == MisfirePolicy.SKIP else logging.WARNING,
                "schedule %s missed its fires from %s to %s (late by more than %.1f s); misfire policy %s enqueues %d",
                row.name, plan.missed_from.isoformat(), (now - timedelta(seconds=self.grace_seconds)).isoformat(),
                self.grace_seconds, row.misfire_policy, kept,
            )
        try:
            job = fire_job(row, self.registry)
        except ValidationError as exc:
            log.error("schedule %s skipped its fires up to %s: %s", row.name, now.isoformat(), exc)
            store.advance_schedule(session, row.id, plan.next_fire_at, None)
            return 0
        last = max((f for f, _ in plan.fires), default=None)
        if plan.fires and not self._has_work(session, job.type):
            store.advance_schedule(session, row.id, plan.next_fire_at, last)  # fired, found nothing to do
            self.idle_total += len(plan.fires)
            return 0
        rows = []
        for fire_time, missed in plan.fires:
            run_at = fire_time + jitter_offset(row.id, fire_time, row.jitter_seconds)
            state = JobState.SCHEDULED if run_at > now else JobState.QUEUED
            metadata = {"schedule": row.name, **({"misfired": True} if missed else {})}
            rows.append((fire_time, run_at, str(state), metadata))
        inserted = store.insert_schedule_jobs(session, job, rows, self.clock.sql_now())
        store.advance_schedule(session, row.id, plan.next_fire_at, last)
        return len(inserted)

    def _has_work(self, session: Executor, job_type: str) -> bool:
        """Ask a sweep's probe (in a savepoint: a failing probe must not spoil the round).
        When in doubt, fire: a job that finds nothing to do is cheaper than work left undone."""
        probe = self.registry.get(job_type).has_work
        if probe is None:
            return True
        try:
            with session.begin_nested():  # type: ignore[union-attr]
                return bool(probe(session))
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "fire"
            log.warning("the work probe of %s failed (%s); firing anyway", job_type, exc)
            return True

    def wait(self, stop: threading.Event, did: int) -> None:
        """Sleep until the earliest next fire (capped); a follower only polls its leadership."""
        if not self._ticked:
            delay = FOLLOWER_POLL_SECONDS
        elif self._wake_at is None:  # no enabled schedule, or the round failed
            delay = self.max_sleep_seconds
        else:
            # A floor of MIN_SLEEP: a due schedule held by another transaction must not spin us.
            left = (self._wake_at - self.clock.now()).total_seconds()
            delay = min(max(left, MIN_SLEEP_SECONDS), self.max_sleep_seconds)
        self._ticked, self._wake_at = False, None
        stop.wait(delay)
