"""Job types the tests declare and handle, loaded in every process through JOBS_IMPORTS.

Handlers record their effects in `test_effects` (a table the fixtures create), in their own
transaction, so a test can count exactly how many times each handler really ran.
"""

from __future__ import annotations

import os
import time

from pydantic import Field
from sqlalchemy import text

from shared.db import get_database
from shared.jobtypes.registry import Payload, declare
from shared.outcomes import Cancel, Discard, Retry, Snooze


class Key(Payload):
    key: str


class Flaky(Payload):
    key: str
    fail_times: int = Field(ge=0)


class Sleep(Payload):
    key: str
    seconds: float = Field(ge=0, le=600)


class OutcomePayload(Payload):
    key: str
    kind: str
    after: float = 0.0


class Keyed(Payload):
    key: str
    account: str
    seconds: float = 0.3


class Stoppable(Payload):
    key: str
    seconds: float
    cooperative: bool = True


class OwnState(Payload):
    key: str
    lines: int = Field(ge=1, le=100)
    mark: float = Field(ge=0, le=1)


class Chatty(Payload):
    key: str
    lines: int = Field(ge=1, le=100)


RECORD = declare("test.record", Key)
FLAKY = declare("test.flaky", Flaky, max_attempts=5, backoff_base_seconds=0.05, backoff_max_seconds=0.2)
FAIL = declare("test.fail", Key, max_attempts=3, backoff_base_seconds=0.05, backoff_max_seconds=0.1)
SLEEP = declare("test.sleep", Sleep)
OUTCOME = declare("test.outcome", OutcomePayload)
UNIQUE = declare("test.unique", Key, unique_by=("key",))
KEYED = declare("test.keyed", Keyed, limit_by=("account",), limit_scope="test.account", key_concurrency=2)
STOPPABLE = declare("test.stoppable", Stoppable, max_attempts=1)
CHATTY = declare("test.chatty", Chatty)
OWN_STATE = declare("test.own_state", OwnState)
# Timeouts: a handler that stops at the soft limit, and one that ignores it (killed at the hard).
SLOW = declare("test.slow", Sleep, timeout_seconds=1.0, max_attempts=2, backoff_base_seconds=0.05)
STUBBORN = declare("test.stubborn", Sleep, timeout_seconds=1.0, max_attempts=1)

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS test_effects (
    id bigserial PRIMARY KEY, key text NOT NULL, job_id bigint, attempt int, pid int,
    event text NOT NULL DEFAULT 'ran', at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


def record(key: str, ctx: object, event: str = "ran") -> None:
    with get_database().session() as session:
        session.execute(
            text("INSERT INTO test_effects (key, job_id, attempt, pid, event) VALUES (:k, :j, :a, :p, :e)"),
            {"k": key, "j": getattr(ctx, "job_id", None), "a": getattr(ctx, "attempt", None), "p": os.getpid(), "e": event},
        )


def _bind_handlers() -> None:
    # Only worker processes have `worker/`; the scheduler and the test process declare only.
    try:
        from worker.binding import handles
    except ImportError:
        return

    @handles(RECORD)
    def run_record(payload: Key, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)

    @handles(FLAKY)
    def run_flaky(payload: Flaky, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)
        if ctx.attempt <= payload.fail_times:
            raise RuntimeError(f"flaky failure {ctx.attempt} of {payload.fail_times}")

    @handles(FAIL)
    def run_fail(payload: Key, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)
        raise ValueError("boom")

    @handles(SLEEP)
    def run_sleep(payload: Sleep, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx, "started")
        time.sleep(payload.seconds)
        record(payload.key, ctx, "finished")

    @handles(OUTCOME)
    def run_outcome(payload: OutcomePayload, ctx):  # type: ignore[no-untyped-def]
        record(payload.key, ctx)
        if ctx.attempt > 1 and payload.kind in ("snooze", "retry"):
            return None
        return {
            "snooze": Snooze(payload.after), "retry": Retry(payload.after, "asked to retry"),
            "cancel": Cancel("asked to cancel"), "discard": Discard("asked to discard"),
        }.get(payload.kind)


    @handles(UNIQUE)
    def run_unique(payload: Key, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)

    @handles(KEYED)
    def run_keyed(payload: Keyed, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)
        time.sleep(payload.seconds)

    @handles(STOPPABLE)
    def run_stoppable(payload: Stoppable, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx, "started")
        deadline = time.monotonic() + payload.seconds
        while time.monotonic() < deadline:
            if payload.cooperative:
                ctx.checkpoint()
            time.sleep(0.05)
        record(payload.key, ctx, "finished")

    @handles(OWN_STATE)
    def run_own_state(payload: OwnState, ctx) -> None:  # type: ignore[no-untyped-def]
        # Many of these run at once on one threads worker: every line, the progress and the
        # context must be this attempt's own.
        for line in range(payload.lines):
            ctx.logger.info("line %d of %s (job %s)", line, payload.key, ctx.job_id)
            time.sleep(0.02)
        ctx.progress(payload.mark)  # a first report is written at once
        with get_database().session() as session:
            seen = session.execute(text("SELECT progress FROM jobs WHERE id = :j"), {"j": ctx.job_id}).scalar()
        record(payload.key, ctx, f"progress {seen}")

    @handles(CHATTY)
    def run_chatty(payload: Chatty, ctx) -> None:  # type: ignore[no-untyped-def]
        for line in range(payload.lines):
            ctx.logger.info("line %d of %s", line, payload.key)
            ctx.progress((line + 1) / payload.lines)
            time.sleep(0.3)


    @handles(SLOW)
    def run_slow(payload: Sleep, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx, "started")
        time.sleep(payload.seconds)

    @handles(STUBBORN)
    def run_stubborn(payload: Sleep, ctx) -> None:  # type: ignore[no-untyped-def]
        from celery.exceptions import SoftTimeLimitExceeded

        record(payload.key, ctx, "started")
        deadline = time.monotonic() + payload.seconds
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except SoftTimeLimitExceeded:
                record(payload.key, ctx, "ignored the soft limit")


_bind_handlers()


# Outage and poison tests (tests/acceptance/test_outages.py): a handler that ends its own
# process, and one whose query is still running in psycopg when its soft time limit lands.
class Query(Payload):
    key: str
    seconds: float = Field(ge=0, le=600)


EXIT = declare("test.exit", Key, max_attempts=100, backoff_base_seconds=0.05, backoff_max_seconds=0.2)
PG_SLEEP = declare("test.pg_sleep", Query, timeout_seconds=1.0, max_attempts=2, backoff_base_seconds=0.05)
# test.record with a pause after the effect: an outage then lands between the effect and the
# finish write, the window an outage must not turn into a second run.
RECORD_THEN_WAIT = declare("test.record_then_wait", Sleep)


def _bind_outage_handlers() -> None:
    try:
        from worker.binding import handles
    except ImportError:
        return

    @handles(EXIT)
    def run_exit(payload: Key, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx, "started")
        os._exit(1)  # like a segfault or an OOM kill: no cleanup, no final heartbeat

    @handles(RECORD_THEN_WAIT)
    def run_record_then_wait(payload: Sleep, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx)
        time.sleep(payload.seconds)

    @handles(PG_SLEEP)
    def run_pg_sleep(payload: Query, ctx) -> None:  # type: ignore[no-untyped-def]
        record(payload.key, ctx, "started")
        with get_database().session() as session:
            session.execute(text("SELECT pg_sleep(:s)"), {"s": payload.seconds})


_bind_outage_handlers()
