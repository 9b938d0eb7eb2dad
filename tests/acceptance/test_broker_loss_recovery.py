"""Fast recovery from a broker loss: after a FLUSHALL, the dispatcher finds the dispatched jobs
whose messages are gone (it compares the broker's queues and unacked hash with the rows) and
publishes them again within seconds, although the redispatch timeout here is ten minutes; each
runs exactly once, and no job that runs is ever sent again."""

from __future__ import annotations

import time

import pytest
import redis

from shared.enqueue import enqueue_many_now
from tests.acceptance.test_lifecycle import all_done, effect_counts, states
from tests.acceptance.test_reliability import count, private_redis  # noqa: F401 - a fixture
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance

JOBS = 300
# Generous for a machine shared with other suites; the benchmark measures it (<= 10 s quiet).
RECOVERY_BOUND_SECONDS = 30


def held_messages(client: redis.Redis) -> int:
    return sum(int(client.llen(key)) for key in client.scan_iter(match="default*"))


def test_flushed_messages_are_sent_again_within_seconds_not_after_the_timeout(db, processes, private_redis):  # noqa: F811
    env = {"JOBS_BROKER_URL": private_redis, "JOBS_BROKER_KEY_PREFIX": "", "JOBS_REDISPATCH_AFTER_SECONDS": "600",
           "JOBS_DISPATCH_WINDOW": str(JOBS)}
    client = redis.Redis.from_url(private_redis)
    enqueue_many_now("test.record", [{"key": f"k{i}"} for i in range(JOBS)])
    _, health = processes.watched_scheduler(env=env)
    dispatched = "SELECT count(*) FROM jobs WHERE state = 'dispatched' AND type = 'test.record'"
    wait_for(lambda: count(db, dispatched) == JOBS and held_messages(client) == JOBS, 60, "all dispatched")
    client.flushall()
    flushed = time.monotonic()
    assert held_messages(client) == 0
    # No worker yet: every job is still dispatched, and the broker holds each again, once.
    wait_for(lambda: held_messages(client) >= JOBS, RECOVERY_BOUND_SECONDS, "the lost messages are published again",
             on_timeout=lambda: f"{held_messages(client)} held; {states(db)}")
    assert time.monotonic() - flushed < RECOVERY_BOUND_SECONDS
    # Several more comparisons of the broker with the rows (a job must be missing at two in a
    # row to be sent again): nothing held is published a second time.
    health.wait_dispatcher(4, "broker_checks")
    assert held_messages(client) == JOBS
    processes.worker(env=env)
    wait_for(lambda: all_done(db, JOBS), 120, f"all {JOBS} succeed, have {states(db)}")
    effects = effect_counts(db)
    assert len(effects) == JOBS and set(effects.values()) == {1}
    assert count(db, "SELECT count(*) FROM job_executions") == JOBS
    client.close()
