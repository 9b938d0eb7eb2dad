"""`worker_connections_at_200`: the database connections one IO worker process holds while it
runs 200 jobs at once (issue 12: a bounded number, whatever the concurrency).

A threads worker with concurrency 200 consumes the benchmark queue; JOBS (default 600)
`platform.sleep` jobs of SLEEP seconds wait first, the dispatch window lets all 200 threads be
busy. A sampler counts, every 20 ms, the worker's connections in `pg_stat_activity` (by its
application_name, `jobplatform:<pid>`) and the jobs `running` at once. The figure is the most
connections seen; the bound is JOBS_WORKER_DB_CONNECTIONS (default 10).
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from bench.environment import QUEUE
from bench.processes import Proc, wait_for
from tests.rigs.connections import ConnectionSampler

CONCURRENCY = 200
JOBS = 600
SLEEP = 1.0


def held(database, pid: int) -> int:  # type: ignore[no-untyped-def]
    """The connections process `pid` holds to the run's PostgreSQL now."""
    with database.session() as session:
        return int(session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                                   {"n": f"jobplatform:{pid}"}).scalar() or 0)


def threads_worker(bench: Bench, name: str, queue: str, threads: int, env: dict[str, str] | None = None) -> Proc:
    """A worker of the IO worker class (`-P threads`, `threads` threads) consuming `queue`,
    returned once its process is connected (heartbeating)."""
    database = bench.environment.database()
    worker = bench.processes.spawn(name, [
        sys.executable, "-m", "celery", "-A", "worker.app:app", "worker", "-P", "threads", "-c", str(threads),
        "-Q", queue, "-n", f"bench-{name}-{time.time_ns()}@%h", "--loglevel=WARNING",
        "--without-mingle", "--without-gossip"], env)
    wait_for(lambda: worker.check_alive() or held(database, worker.pid), 60, f"{name} connected")
    return worker


def measure(bench: Bench) -> Results:
    from shared.enqueue import enqueue_many_now

    database = bench.environment.database()
    bench.environment.reset_tables()
    budget = int(bench.processes.env.get("JOBS_WORKER_DB_CONNECTIONS", "10"))
    worker = threads_worker(bench, "platform-io-worker-200", QUEUE, CONCURRENCY)
    scheduler = bench.processes.scheduler({"JOBS_DISPATCH_WINDOW": str(2 * CONCURRENCY)})
    try:
        with ConnectionSampler(database, worker.pid) as sampler:
            enqueue_many_now("platform.sleep", [{"seconds": SLEEP}] * JOBS, queue=QUEUE)
            wait_for(lambda: _succeeded(database) >= JOBS, 300, f"{JOBS} sleeps succeeded", interval=0.2)
    finally:
        bench.stop(worker, scheduler)
    bench.say(f"worker connections: at most {sampler.connections} with up to {sampler.running} jobs running at once "
              f"({sampler.samples} samples)")
    method = (f"threads worker -c {CONCURRENCY}, {JOBS} platform.sleep({SLEEP:g} s) jobs, pg_stat_activity every 20 ms; "
              f"bound JOBS_WORKER_DB_CONNECTIONS={budget}")
    figures = [
        Figure("worker connections at c=200", "conns", [float(sampler.connections)], target=("<=", float(budget)),
               method=method),
        Figure("jobs running at once", "jobs", [float(sampler.running)], method=method),
    ]
    summary = {"worker_connections_at_200": sampler.connections, "worker_connections_running_at_once": sampler.running}
    raw = {"worker_connections": {"concurrency": CONCURRENCY, "jobs": JOBS, "sleep": SLEEP, "budget": budget,
                                  "samples": sampler.samples}}
    return Results(figures, summary, raw)


def _succeeded(database) -> int:  # type: ignore[no-untyped-def]
    with database.session() as session:
        return int(session.execute(text("SELECT count(*) FROM jobs WHERE state = 'succeeded'")).scalar() or 0)
