"""Enqueue-to-start latency at a steady offered rate (open loop: sends are scheduled at fixed
intervals and never wait for work to finish), worker and scheduler already running and warm.

- platform: `enqueue_now(platform.noop)` (its own transaction, committed); latency =
  jobs.started_at - jobs.created_at, both stamped by the database clock (created_at when the
  enqueue transaction began, started_at when the worker's claim began).
- celery: `send_task` of a task given `time.time()` just before the send; the task pushes
  `time.time() - sent_at` to Redis as its first act (one clock: one machine).

Each repetition gives a p50 and a p99; the table shows their medians over repetitions.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from bench.cpu import CpuAccount, postgres_backends
from bench.environment import QUEUE
from bench.load import CpuMeter, wait_for_quiet
from bench.processes import wait_for

WARM_UP_JOBS = 20


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def offer(send: Callable[[], object], rate: float, seconds: float) -> dict[str, Any]:
    """Call `send` `rate` times a second for `seconds`, on a fixed schedule."""
    count = max(1, int(rate * seconds))
    started = time.perf_counter()
    worst_lag = 0.0
    for i in range(count):
        due = started + i / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        else:
            worst_lag = max(worst_lag, now - due)
        send()
    elapsed = time.perf_counter() - started
    return {"sent": count, "achieved_rate": count / elapsed if elapsed else 0.0, "worst_send_lag_ms": worst_lag * 1000}


def measure(bench: Bench) -> Results:
    rate, seconds, reps = bench.options.rate, bench.options.latency_seconds, bench.options.latency_reps
    runs: dict[str, list[dict[str, Any]]] = {"platform": [], "celery": []}
    for rep in range(reps):
        for name, run in (("celery", celery_latency), ("platform", platform_latency)):
            before = wait_for_quiet(bench.options.quiet_wait)
            meter = CpuMeter()
            latencies, offered = run(bench, rate, seconds)
            offered.update(machine_busy_pct=meter.busy_pct(), busy_before_pct=before)
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            runs[name].append({"p50_ms": p50, "p99_ms": p99, "max_ms": max(latencies), "samples": len(latencies), **offered})
            cpu = sum(offered["cpu_ms_per_job"].values())
            bench.say(f"latency {name} rep {rep + 1}/{reps}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms, "
                      f"CPU {cpu:.2f} ms/job "
                      f"({len(latencies)} jobs at {offered['achieved_rate']:.0f}/s, "
                      f"machine {offered['machine_busy_pct']:.0f}% busy, {before:.0f}% before)")
    method = {"platform": "jobs.started_at - jobs.created_at (database clock)",
              "celery": "task start - time.time() before send_task"}
    figures = [
        Figure("celery latency p50", "ms", [r["p50_ms"] for r in runs["celery"]], method=method["celery"]),
        Figure("platform latency p50", "ms", [r["p50_ms"] for r in runs["platform"]], baseline="celery latency p50",
               target=("<=", 10.0), method=method["platform"]),
        Figure("celery latency p99", "ms", [r["p99_ms"] for r in runs["celery"]], method=method["celery"]),
        Figure("platform latency p99", "ms", [r["p99_ms"] for r in runs["platform"]], baseline="celery latency p99",
               target=("<=", 50.0), method=method["platform"]),
    ]
    by_name = {f.name: f.median for f in figures}
    summary = {
        "latency_p50_ms": by_name["platform latency p50"],
        "latency_p99_ms": by_name["platform latency p99"],
        "celery_latency_p50_ms": by_name["celery latency p50"],
        "celery_latency_p99_ms": by_name["celery latency p99"],
        "latency_cpu_ms_per_job": {
            name: statistics.median(sum(r["cpu_ms_per_job"].values()) for r in rs) for name, rs in runs.items()
        },
    }
    return Results(figures, summary, {"latency": {"rate_per_s": rate, "seconds": seconds, "runs": runs}})


def platform_latency(bench: Bench, rate: float, seconds: float) -> tuple[list[float], dict[str, Any]]:
    from shared.enqueue import enqueue_now
    from shared.jobtypes.builtin import NOOP

    bench.environment.reset_tables()
    database = bench.environment.database()

    def succeeded(after: int) -> int:
        with database.engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND type = 'platform.noop' AND id > :after"), {"after": after}
            ).scalar()

    worker = bench.platform_worker()
    scheduler = bench.scheduler()
    try:
        warm_up = [enqueue_now(NOOP).id for _ in range(WARM_UP_JOBS) if time.sleep(1 / 20) is None]
        wait_for(lambda: succeeded(0) >= WARM_UP_JOBS or worker.check_alive() or scheduler.check_alive(), 60, "warm-up jobs")
        after = max(warm_up)
        account = CpuAccount()
        account.track_tree("worker", worker.pid)
        account.track("scheduler", [scheduler.pid])
        account.track("postgres", postgres_backends(database))
        offered = offer(lambda: enqueue_now(NOOP), rate, seconds)
        spent = account.spent(late={"postgres": postgres_backends(database)})
        wait_for(lambda: succeeded(after) >= offered["sent"] or worker.check_alive(), 120, "latency jobs")
    finally:
        bench.stop(scheduler, worker)
    offered["cpu_ms_per_job"] = {k: 1000 * v / offered["sent"] for k, v in sorted(spent.items())}
    with database.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT 1000 * extract(epoch FROM started_at - created_at) AS total, "
            "1000 * extract(epoch FROM dispatched_at - created_at) AS to_dispatch, "
            "1000 * extract(epoch FROM started_at - dispatched_at) AS to_start "
            "FROM jobs WHERE type = 'platform.noop' AND id > :after"
        ), {"after": after}).all()
    # Where the wait is: enqueue -> dispatched (dispatcher), dispatched -> claimed (broker, worker).
    offered["stages_ms"] = {
        stage: {"p50": percentile(values, 50), "p99": percentile(values, 99)}
        for stage, values in (("to_dispatch", [float(r.to_dispatch) for r in rows]), ("to_start", [float(r.to_start) for r in rows]))
    }
    return [float(r.total) for r in rows], offered


def celery_latency(bench: Bench, rate: float, seconds: float) -> tuple[list[float], dict[str, Any]]:
    from bench import celery_app

    app, client = celery_app.app, bench.environment.redis()
    client.delete(celery_app.LATENCIES)

    def send() -> None:
        app.send_task(celery_app.STAMP_TASK, args=[time.time()], queue=QUEUE, routing_key=QUEUE)

    worker = bench.celery_worker()
    try:
        offer(send, 20, WARM_UP_JOBS / 20)
        wait_for(lambda: client.llen(celery_app.LATENCIES) >= WARM_UP_JOBS or worker.check_alive(), 60, "warm-up tasks")
        client.delete(celery_app.LATENCIES)
        account = CpuAccount()
        account.track_tree("worker", worker.pid)
        offered = offer(send, rate, seconds)
        spent = account.spent()
        wait_for(lambda: client.llen(celery_app.LATENCIES) >= offered["sent"] or worker.check_alive(), 120, "latency tasks")
    finally:
        bench.stop(worker)
    offered["cpu_ms_per_job"] = {k: 1000 * v / offered["sent"] for k, v in spent.items()}
    latencies = [float(v) * 1000 for v in client.lrange(celery_app.LATENCIES, 0, -1)]
    client.close()
    return latencies, offered
