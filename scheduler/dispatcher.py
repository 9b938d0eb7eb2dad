"""The dispatcher: moves runnable jobs to `dispatched` and publishes their ids.

Per queue it keeps at most a window of jobs in the broker, so the backlog stays in PostgreSQL
where order is exact, pause is instant and limits hold. It wakes on NOTIFY
(scheduler/wakeup.py), re-polls quickly while queues are busy, backs off when nothing moves,
and republishes jobs whose message was lost. Rows are committed before their messages are
sent; a crash in between leaves jobs `dispatched`, which the redispatch timeout covers.

Poison isolation: a round that fails for any reason but an outage (scheduler/dispatch_faults.py:
a row whose values cannot be loaded or updated, a message that cannot be encoded) is done
again for that queue one job at a time: ids first (an id always loads), then each job in a
savepoint. A job that cannot be dispatched, promoted or published is failed alone with the
reason in `last_error`; the other jobs and queues go on in the same round. When nothing fails,
the rounds are as fast as before: the slow path costs nothing until it is needed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from functools import partial
from typing import Callable, TypeVar

import psycopg
from celery import Celery
from sqlalchemy.orm import Session

from shared.broker import publish
from shared.clock import Clock
from shared.db import Database
from shared.jobtypes.registry import Registry
from shared.settings import Settings
from shared.store import jobs as job_store
from shared.store import limits as limit_store
from shared.store.rows import Candidate, DispatchedJob, Executor, QueueRow
from scheduler.dispatch_faults import describe, is_outage, unpublishable
from scheduler.limits import QUEUE_SCOPE, RatePlan, live_starts, plan, scope_of
from scheduler.notify_probe import NotifyProbe
from scheduler.service import Service
from scheduler.vanished import VANISHED_GRACE_SECONDS, VanishedMessages
from scheduler.wakeup import Wakeup

log = logging.getLogger("scheduler.dispatcher")
T = TypeVar("T")

PROMOTE_BATCH = 5000
# Scheduled jobs (delays, retry backoffs) become runnable with this granularity at worst.
PROMOTE_EVERY_SECONDS = 0.1
# A full window holds many jobs' worth of work: re-checking it this often keeps it topped up.
FULL_WINDOW_POLL_SECONDS = 0.025
# A queue's window is topped up once this fraction of it (1/4) is free (see _room).
WINDOW_REFILL_FRACTION = 4
# Both ways of finding lost messages (the timeout, and the broker compared with the rows) run
# this often.
REDISPATCH_EVERY_SECONDS = 0.5
# Fast recovery from a broker loss (Redis only): scheduler/vanished.py.
# Under key limits, a round reads pages of candidates (at least this many) past jobs whose key
# is at its limit, up to this many pages: a busy key never blocks the rest of its queue.
LIMITED_PAGE_MIN = 20
LIMITED_PAGES = 5
class Dispatcher(Service):
    name = "dispatcher"
    leader_only = False  # several replicas are safe: each queue round holds the queue's row lock

    def __init__(self, database: Database, app: Celery, settings: Settings, registry: Registry, clock: Clock) -> None:
        super().__init__()
        self.database = database
        self.app = app
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.wakeup = Wakeup(database, settings)
        self._idle_wait = settings.dispatch_busy_poll_seconds
        self._last_redispatch = 0.0
        self.vanished = VanishedMessages(app, settings)
        self.fast_republished_total = 0
        # Comparisons of the broker with the rows done: in memory, shown in /healthz, so a test
        # can wait for "several more checks" instead of sleeping (no write of its own).
        self.broker_checks = 0
        self._last_promote = 0.0
        self.published_total = 0
        self.failed_alone_total = 0  # jobs failed because the dispatcher could not handle them
        self.key_limits = registry.key_limits()
        self._wake_in = float("inf")  # set by a rate-limited round: when the next start is allowed
        self._windows_full = False  # a queue's window had no room this round

    def tick(self) -> int:
        self._wake_in = float("inf")
        self._windows_full = False
        now = self.clock.sql_now()
        if time.monotonic() - self._last_promote >= PROMOTE_EVERY_SECONDS:
            self._last_promote = time.monotonic()
            self._promote(now)
        with self.database.session() as session:
            busy = job_store.queues_with_work(session, now)
        moved = sum(self._dispatch_queue(name) for name in busy)
        if time.monotonic() - self._last_redispatch >= REDISPATCH_EVERY_SECONDS:
            self._last_redispatch = time.monotonic()
            moved += self._redispatch()
            if self.settings.is_redis_broker:
                moved += self._recover_vanished()
                self.broker_checks += 1
        return moved

    def _promote(self, now: datetime | None) -> None:
        try:
            with self.database.session() as session:
                job_store.promote_scheduled(session, PROMOTE_BATCH, now)
            return
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("dispatcher: promotion failed (%s); promoting jobs one at a time", describe(exc))
        with self.database.session() as session:
            for job_id in job_store.due_scheduled_ids(session, PROMOTE_BATCH, now):
                self._alone(session, job_id, "promotion", partial(job_store.promote_job, session, job_id), now)

    def _dispatch_queue(self, name: str) -> int:
        """One queue's round; when it fails (not for a lost connection), the same round one job
        at a time, so a row that cannot be handled is failed alone and the rest go on."""
        try:
            return self._dispatch_round(name)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("dispatcher: the round of queue %s failed (%s); dispatching its jobs one at a time",
                        name, describe(exc))
        try:
            return self._dispatch_singly(name)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.exception("dispatcher: queue %s is skipped this round", name)
            return 0

    def _dispatch_round(self, name: str) -> int:
        now = self.clock.sql_now()
        with self.database.session() as session:
            queue, room = self._locked_room(session, name)
            if queue is None:
                return 0
            if room <= 0:
                self._windows_full = True
                return 0
            if self.key_limits or queue.rate_limit is not None:
                jobs = self._dispatch_limited(session, queue, room, now)
            else:  # no limit can apply: one statement picks and moves the head of the backlog
                jobs = job_store.dispatch_queue(session, name, room, now)
            publishable = self._screen(session, jobs, now)
        # Committed: now the messages may name these rows.
        self._publish(publishable)
        return len(jobs)

    def _locked_room(self, session: Executor, name: str) -> tuple[QueueRow | None, int]:
        """Hold one queue for this round (None when paused or held by another dispatcher) and
        say how many jobs it may take now: its window and concurrency limit, capped by a batch."""
        queue = job_store.lock_queue(session, name)
        if queue is None:
            return None, 0
        return queue, min(self._room(queue, *job_store.queue_in_flight(session, name)), self.settings.dispatch_batch)

    def _dispatch_singly(self, name: str) -> int:
        """The round again, one job at a time: ids in dispatch order, then each job loaded and
        moved in a savepoint of its own (under limits, the choice is made among the jobs that
        loaded). Page-reading past limited keys is left to the next, fast, round."""
        now = self.clock.sql_now()
        with self.database.session() as session:
            queue, room = self._locked_room(session, name)
            if queue is None or room <= 0:
                return 0
            ids = job_store.runnable_job_ids(session, name, room, now)
            if self.key_limits or queue.rate_limit is not None:
                candidates = [
                    c for i in ids
                    if (c := self._alone(session, i, "dispatch", partial(limit_store.job_candidate, session, i), now))
                ]
                ids = self._choose(session, queue, self._queue_key(queue), candidates, room, now) if candidates else []
            jobs = [
                job for i in ids
                for job in self._alone(session, i, "dispatch", partial(limit_store.mark_dispatched, session, [i], now), now) or []
            ]
            publishable = self._screen(session, jobs, now)
        self._publish(publishable)
        return len(jobs)

    def _alone(self, session: Session, job_id: int, action: str, step: Callable[[], T], now: datetime | None) -> T | None:
        """One job's step in a savepoint of its own; a job whose step fails is failed alone."""
        try:
            with session.begin_nested():
                return step()
        except Exception as exc:
            if is_outage(exc):
                raise
            self._fail_alone(session, job_id, f"{action} failed: {describe(exc)}", now)
            return None

    def _fail_alone(self, session: Session, job_id: int, reason: str, now: datetime | None) -> None:
        log.error("dispatcher: job %d failed alone: %s", job_id, reason)
        try:
            with session.begin_nested():
                if job_store.fail_undispatchable(session, job_id, reason, now):
                    self.failed_alone_total += 1
        except Exception as exc:
            if is_outage(exc):
                raise
            log.exception("dispatcher: job %d could not be failed either; it is skipped", job_id)

    def _screen(self, session: Session, jobs: list[DispatchedJob], now: datetime | None) -> list[DispatchedJob]:
        """The jobs that may be published. The others fail now, in the round's transaction: a
        type no process declares, a job no worker could run as sent. Checks in Python only: no
        statement unless a job fails."""
        unknown = [j.id for j in jobs if j.type not in self.registry]
        job_store.fail_unknown_types(session, unknown, now)
        publishable = []
        for job in jobs:
            if job.type not in self.registry:
                continue
            problem = unpublishable(job)
            if problem is not None:
                self._fail_alone(session, job.id, f"dispatch failed: {problem}", now)
                continue
            publishable.append(job)
        return publishable

    @staticmethod
    def _queue_key(queue: QueueRow) -> str | None:
        return QUEUE_SCOPE + queue.name if queue.rate_limit is not None and queue.rate_period_seconds else None

    def _dispatch_limited(self, session: Executor, queue: QueueRow, room: int, now: datetime | None) -> list[DispatchedJob]:
        """Candidates first, then a choice in Python under the key and rate limits. Reads a
        page the size of the room, and further pages only while limited keys were skipped."""
        queue_key = self._queue_key(queue)
        chosen: list[int] = []
        after: Candidate | None = None
        for _ in range(LIMITED_PAGES):
            want = room - len(chosen)
            candidates = limit_store.runnable_candidates(session, queue.name, max(want, LIMITED_PAGE_MIN), now, after)
            if not candidates:
                break
            picked = self._choose(session, queue, queue_key, candidates, want, now)
            chosen.extend(picked)
            if len(chosen) >= room or len(candidates) < max(want, LIMITED_PAGE_MIN) or self._wake_in < float("inf"):
                break
            after = candidates[-1]
        return limit_store.mark_dispatched(session, chosen, now)

    def _choose(
        self, session: Executor, queue: QueueRow, queue_key: str | None, candidates: list[Candidate], want: int,
        now: datetime | None,
    ) -> list[int]:
        keys = sorted({c.limit_key for c in candidates if c.limit_key and scope_of(c.limit_key) in self.key_limits})
        in_flight = limit_store.keys_in_flight(session, [k for k in keys if self.key_limits[scope_of(k)].concurrency])
        rated: dict[str, tuple[int, float]] = {
            k: rate for k in keys if (rate := self.key_limits[scope_of(k)].rate) is not None
        }
        if queue_key is not None:
            rated[queue_key] = (queue.rate_limit or 0, queue.rate_period_seconds or 0.0)
        windows, round_time = limit_store.lock_rate_windows(session, sorted(rated), now)
        rates = {
            key: RatePlan(n, period, live_starts(windows.get(key, []), round_time, period))
            for key, (n, period) in rated.items() if round_time is not None
        }
        result = plan(candidates, want, self.key_limits, in_flight, rates, queue_key, round_time)
        for key, recent in result.windows.items():
            limit_store.save_rate_window(session, key, recent)
        if result.wake_at is not None and round_time is not None:
            self._wake_in = min(self._wake_in, max(0.001, (result.wake_at - round_time).total_seconds()))
        return result.chosen

    def _room(self, queue: QueueRow, dispatched: int, running: int) -> int:
        window = queue.dispatch_window or self.settings.dispatch_window
        # Refill from a low-water mark: while the broker still holds more than three quarters of
        # the window, the workers have plenty to take, and a round for the last few free slots
        # would cost its statements, its publish and its events for a handful of jobs. Rounds
        # then move a quarter of the window at least; an idle queue (latency) is not affected.
        if dispatched > window - max(1, window // WINDOW_REFILL_FRACTION):
            return 0
        room = window - dispatched
        if queue.concurrency_limit is not None:
            room = min(room, queue.concurrency_limit - dispatched - running)
        return room

    def _redispatch(self) -> int:
        now = self.clock.sql_now()
        after, limit = self.settings.redispatch_after_seconds, self.settings.dispatch_batch
        try:
            with self.database.session() as session:
                lost = self._screen(session, job_store.redispatch_lost(session, after, limit, now), now)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("dispatcher: redispatch failed (%s); redispatching jobs one at a time", describe(exc))
            with self.database.session() as session:
                lost = [
                    job for i in job_store.lost_job_ids(session, after, limit, now)
                    if (job := self._alone(session, i, "redispatch", partial(job_store.redispatch_job, session, i, now), now))
                ]
                lost = self._screen(session, lost, now)
        if lost:
            log.warning("republishing %d jobs whose messages were lost", len(lost))
            self._publish(lost)
        return len(lost)

    def _recover_vanished(self) -> int:
        """Republish the dispatched jobs whose messages the broker no longer holds, within
        seconds instead of the redispatch timeout. The update refreshes only rows still
        `dispatched`, so a job that runs is never sent."""
        now = self.clock.sql_now()
        with self.database.session() as session:
            candidates = job_store.dispatched_before(session, VANISHED_GRACE_SECONDS, self.settings.dispatch_batch, now)
        confirmed = self.vanished.confirmed(candidates)
        if not confirmed:
            return 0
        try:
            with self.database.session() as session:
                lost = self._screen(
                    session, job_store.redispatch_vanished(session, confirmed, VANISHED_GRACE_SECONDS, now), now
                )
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("dispatcher: fast redispatch failed (%s); the redispatch timeout covers these jobs",
                        describe(exc))
            return 0
        self.vanished.resent([job.id for job in lost])
        if lost:
            log.warning("republishing %d jobs whose messages the broker no longer holds", len(lost))
            self._publish(lost)
            self.fast_republished_total += len(lost)
        return len(lost)

    def _publish(self, jobs: list[DispatchedJob]) -> None:
        """All messages on one connection; when that fails for a reason other than the broker
        being away, one message at a time, and a job whose message cannot be sent fails alone
        (a message sent twice is harmless: the claim drops the duplicate)."""
        if not jobs:
            return
        try:
            self.published_total += publish(self.app, self.settings, jobs)
            return
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("dispatcher: publishing %d jobs failed (%s); publishing them one at a time",
                        len(jobs), describe(exc))
        for job in jobs:
            try:
                self.published_total += publish(self.app, self.settings, [job])
            except Exception as exc:
                if is_outage(exc):
                    raise
                with self.database.session() as session:
                    self._fail_alone(session, job.id, f"publish failed: {describe(exc)}", self.clock.sql_now())

    def wait(self, stop: threading.Event, did: int) -> None:
        """Moved jobs: look again almost at once. A window full: look again soon (workers are
        draining it; polling faster only burns the CPU they need). Idle: wait for NOTIFY,
        doubling the fallback poll."""
        if did:
            self._idle_wait = self.settings.dispatch_busy_poll_seconds
        else:
            self._idle_wait = min(self._idle_wait * 2, self.settings.dispatch_poll_seconds)
        wait = min(self._idle_wait, self._wake_in)
        if self._windows_full:
            wait = max(wait, FULL_WINDOW_POLL_SECONDS)
        if stop.is_set():
            return
        try:
            if self.wakeup.wait(wait):
                self._idle_wait = self.settings.dispatch_busy_poll_seconds
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (%s); polling", exc)
            self.wakeup.close()
            stop.wait(self._idle_wait)

    @property
    def probe(self) -> NotifyProbe:
        """Whether NOTIFY reaches the listener (read by /healthz and the metrics)."""
        return self.wakeup.probe

    def details(self) -> dict[str, object]:
        report = self.probe.report()
        if self.settings.is_redis_broker:
            report["broker_checks"] = self.broker_checks
        return report

    def close(self) -> None:
        self.wakeup.close()
