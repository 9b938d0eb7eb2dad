"""Recovery from a broker loss: how long after a FLUSHALL are all the jobs whose messages it
destroyed running (or done) again?

A private Redis of the run's own (FLUSHALL would hurt everyone on the shared one); a platform
worker and scheduler on it, with a dispatch window of 1,000 and the shipped redispatch timeout
(60 s), so only the dispatcher's comparison of the broker's contents with the `dispatched` rows
can bring the jobs back in time. 1,000 `platform.noop` jobs are enqueued; as soon as all are
dispatched (none `queued`), Redis is flushed: every message still in it is gone. The figure is
the time from the FLUSHALL until no job is `dispatched` any more (all running or done), by the
poll (every 20 ms). Target <= 10 s.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import redis
from sqlalchemy import text

from bench.context import PLATFORM_APP, Bench, Figure, Results
from bench.environment import QUEUE
from bench.processes import wait_for

JOBS = 1000
POLL_SECONDS = 0.02


def measure(bench: Bench) -> Results:
    from shared.embedded import EmbeddedServices, start_redis
    from shared.enqueue import enqueue_many_now
    from shared.jobtypes.builtin import NOOP

    services, data_dir = EmbeddedServices(), Path(tempfile.mkdtemp(prefix="jobs-bench-flush-"))
    samples: list[float] = []
    raw: list[dict[str, float]] = []
    try:
        url = start_redis(data_dir, services)
        client = redis.Redis.from_url(url)
        env = {"JOBS_BROKER_URL": url, "JOBS_BROKER_KEY_PREFIX": "", "JOBS_DISPATCH_WINDOW": str(JOBS),
               "JOBS_DISPATCH_BATCH": str(JOBS)}
        for _ in range(bench.options.reps):
            bench.environment.reset_tables()
            worker = bench.processes.celery_worker(PLATFORM_APP, QUEUE, env)
            scheduler = bench.processes.scheduler(env)
            try:
                enqueue_many_now(NOOP, [{}] * JOBS)
                wait_for(lambda: _count(bench, "queued") == 0, 60, "all dispatched", interval=0.002)
                in_broker = _count(bench, "dispatched")
                client.flushall()
                flushed = time.monotonic()
                wait_for(lambda: _count(bench, "dispatched") == 0, 120, "every job running or done again",
                         interval=POLL_SECONDS)
                seconds = time.monotonic() - flushed
                wait_for(lambda: _count(bench, "succeeded") == JOBS, 120, "all done")
                scheduler.check_alive()
            finally:
                bench.stop(scheduler, worker)
            samples.append(seconds)
            raw.append({"seconds": seconds, "dispatched_at_flush": in_broker})
            bench.say(f"broker loss: {in_broker} messages flushed, all running or done again after {seconds:.2f} s")
        client.close()
    finally:
        services.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        bench.environment.reset_tables()
    figure = Figure("broker loss recovery", "s", samples, target=("<=", 10.0),
                    method=f"FLUSHALL of a private Redis with {JOBS} jobs dispatched, until none is dispatched")
    return Results([figure], {"broker_loss_recovery_s": max(samples)}, {"broker_loss": raw})


def _count(bench: Bench, state: str) -> int:
    with bench.environment.database().engine.connect() as connection:
        return int(connection.execute(
            text("SELECT count(*) FROM jobs WHERE type = 'platform.noop' AND state = :state"), {"state": state}
        ).scalar() or 0)
