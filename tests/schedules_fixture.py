"""Schedules declared in code for the cron acceptance tests, loaded into scheduler processes
through JOBS_IMPORTS ("tests.jobs,tests.schedules_fixture"): one per misfire policy, every
second, so a leader's death leaves a visible hole that each policy fills differently."""

from __future__ import annotations

from shared.schedules import schedule
from tests.jobs import RECORD

CATCH_UP_LIMIT = 3
EVERY_SECOND = "* * * * * *"
# The test creates this queue paused: fires are only counted, and jobs that never reach the
# broker leave no messages behind for the tests that run next.
QUEUE = "cron-test"

SKIP = schedule(RECORD, cron=EVERY_SECOND, name="cron-test.skip", payload={"key": "cron-skip"}, misfire="skip", queue=QUEUE)
RUN_ONCE = schedule(
    RECORD, cron=EVERY_SECOND, name="cron-test.run-once", payload={"key": "cron-run-once"}, misfire="run_once", queue=QUEUE
)
CATCH_UP = schedule(
    RECORD, cron=EVERY_SECOND, name="cron-test.catch-up", payload={"key": "cron-catch-up"}, misfire="catch_up",
    catch_up_limit=CATCH_UP_LIMIT, queue=QUEUE,
)
