"""The dispatcher: moves runnable jobs to `dispatched` and publishes their ids.

Per queue it keeps at most a window of jobs in the broker, so the backlog stays in PostgreSQL
where order is exact, pause is instant and limits hold. It wakes on NOTIFY (coalesced: one
wake drains every pending notification), re-polls quickly while queues are busy, backs off
when nothing moves, and republishes jobs whose message was lost. Rows are committed before
their messages are sent; a crash in between leaves jobs `dispatched`, which the redispatch
timeout covers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime

import psycopg
from celery import Celery
from sqlalchemy.engine import make_url

from shared.broker import publish
from shared.clock import Clock, sql_now
from shared.db import Database
from shared.jobtypes.registry import Registry
from shared.settings import Settings
from shared.store import jobs as job_store
from shared.store import limits as limit_store
from shared.store.rows import Candidate, DispatchedJob, Executor, QueueRow
from scheduler.limits import QUEUE_SCOPE, RatePlan, live_starts, plan, scope_of
from scheduler.service import Service

log = logging.getLogger("scheduler.dispatcher")

CHANNEL = "jobs_ready"
PROMOTE_BATCH = 5000
# Scheduled jobs (delays, retry backoffs) become runnable with this granularity at worst.
PROMOTE_EVERY_SECONDS = 0.1
# A full window holds many jobs' worth of work: re-checking it this often keeps it topped up.
FULL_WINDOW_POLL_SECONDS = 0.025
REDISPATCH_EVERY_SECONDS = 1.0
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
        self._listener: psycopg.Connection | None = None
        self._idle_wait = settings.dispatch_busy_poll_seconds
        self._last_redispatch = 0.0
        self._last_promote = 0.0
        self.published_total = 0
        self.key_limits = registry.key_limits()
        self._wake_in = float("inf")  # set by a rate-limited round: when the next start is allowed
        self._windows_full = False  # a queue's window had no room this round

    def tick(self) -> int:
        self._wake_in = float("inf")
        self._windows_full = False
        now = sql_now(self.clock)
        if time.monotonic() - self._last_promote >= PROMOTE_EVERY_SECONDS:
            self._last_promote = time.monotonic()
            with self.database.session() as session:
                job_store.promote_scheduled(session, PROMOTE_BATCH, now)
        with self.database.session() as session:
            busy = job_store.queues_with_work(session, now)
        moved = sum(self._dispatch_queue(name) for name in busy)
        if time.monotonic() - self._last_redispatch >= REDISPATCH_EVERY_SECONDS:
            self._last_redispatch = time.monotonic()
            moved += self._redispatch()
        return moved

    def _dispatch_queue(self, name: str) -> int:
        now = sql_now(self.clock)
        with self.database.session() as session:
            queue = job_store.lock_queue(session, name)
            if queue is None:
                return 0
            room = min(self._room(queue, *job_store.queue_in_flight(session, name)), self.settings.dispatch_batch)
            if room <= 0:
                self._windows_full = True
                return 0
            if self.key_limits or queue.rate_limit is not None:
                jobs = self._dispatch_limited(session, queue, room, now)
            else:  # no limit can apply: one statement picks and moves the head of the backlog
                jobs = job_store.dispatch_queue(session, name, room, now)
            unknown = [j.id for j in jobs if j.type not in self.registry]
            job_store.fail_unknown_types(session, unknown, now)
        # Committed: now the messages may name these rows.
        self._publish([j for j in jobs if j.type in self.registry])
        return len(jobs)

    def _dispatch_limited(self, session: Executor, queue: QueueRow, room: int, now: datetime | None) -> list[DispatchedJob]:
        """Candidates first, then a choice in Python under the key and rate limits. Reads a
        page the size of the room, and further pages only while limited keys were skipped."""
        queue_key = QUEUE_SCOPE + queue.name if queue.rate_limit is not None and queue.rate_period_seconds else None
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
        room = (queue.dispatch_window or self.settings.dispatch_window) - dispatched
        if queue.concurrency_limit is not None:
            room = min(room, queue.concurrency_limit - dispatched - running)
        return room

    def _redispatch(self) -> int:
        with self.database.session() as session:
            lost = job_store.redispatch_lost(
                session, self.settings.redispatch_after_seconds, self.settings.dispatch_batch, sql_now(self.clock)
            )
        if lost:
            log.warning("republishing %d jobs whose messages were lost", len(lost))
            self._publish(lost)
        return len(lost)

    def _publish(self, jobs: list[DispatchedJob]) -> None:
        if jobs:
            self.published_total += publish(self.app, self.settings, jobs)

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
            self._wait_notify(wait)
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (%s); polling", exc)
            self._close_listener()
            stop.wait(self._idle_wait)

    def _wait_notify(self, timeout: float) -> None:
        listener = self._listen()
        woke = False
        for _ in listener.notifies(timeout=timeout, stop_after=1):
            woke = True
        if woke:  # coalesce a burst of notifications into one round
            for _ in listener.notifies(timeout=0.0):
                pass
            self._idle_wait = self.settings.dispatch_busy_poll_seconds

    def _listen(self) -> psycopg.Connection:
        if self._listener is None or self._listener.closed:
            url = make_url(self.database.engine.url).set(drivername="postgresql")
            self._listener = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True, application_name=f"jobplatform:{os.getpid()}"
            )
            self._listener.execute(f"LISTEN {CHANNEL}")
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None

    def close(self) -> None:
        self._close_listener()
