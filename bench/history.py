"""Scale with history: the hot path and the per-minute roll-up with 1,000,000 finished jobs
(and as many executions) in the tables, as a platform that keeps a week of history has.

- `history_drain_ratio`: the platform's drain (as in bench.drain) with the history present,
  against the same drain on empty tables, runs interleaved (empty, history, history, empty, ...
  the history is loaded once and removed for the empty runs). Target >= 0.95.
- `rollup_ms_at_1m`: one roll-up round (`shared.store.maintenance.rollup` over the last three
  minutes, queue and job metrics, as the scheduler's roll-up runs it every minute) with the
  history present and a minute of fresh activity; median of 7 rounds. Target <= 100 ms.

The history: `bench.history` jobs spread evenly over the past 7 days, `succeeded`, one
`succeeded` execution each, plus 1 % failed, inserted with the insert guard off in their own
transaction (tests/history.py does the same), then VACUUM ANALYZE as autovacuum would.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from bench.drain import drain_platform
from bench.load import wait_for_quiet

HISTORY_ROWS = 1_000_000
ROLLUP_ROUNDS = 7
GUARD = "jobs_insert_contract"


def load_history(bench: Bench, rows: int) -> float:
    """Insert the finished history; returns the seconds it took."""
    started = time.monotonic()
    database = bench.environment.database()
    with database.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE jobs DISABLE TRIGGER {GUARD}"))
        connection.execute(text("""
            INSERT INTO jobs (type, queue, state, payload, attempt, created_at, run_at, dispatched_at, started_at,
                              finished_at, last_error)
            SELECT 'bench.history', 'default', CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'succeeded' END,
                   '{"n": 1}', 1, t, t, t, t + interval '2 ms', t + interval '7 ms',
                   CASE WHEN g % 100 = 0 THEN 'boom' END
            FROM (SELECT g, now() - interval '7 days' + g * (interval '7 days' / :rows) - interval '10 minutes' AS t
                  FROM generate_series(1, :rows) AS g) AS s"""), {"rows": rows})
        connection.execute(text(f"ALTER TABLE jobs ENABLE TRIGGER {GUARD}"))
        connection.execute(text("""
            INSERT INTO job_executions (job_id, attempt, state, worker_id, task_id, started_at, finished_at)
            SELECT id, 1, CASE WHEN state = 'failed' THEN 'failed' ELSE 'succeeded' END, 'history@bench',
                   'job-' || id || '-1', started_at, finished_at
            FROM jobs WHERE type = 'bench.history'"""))
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE jobs, job_executions"))
    return time.monotonic() - started


def rollup_round_ms(bench: Bench) -> float:
    from shared.store import maintenance

    database = bench.environment.database()
    with database.session() as session:
        now = maintenance.database_now(session)
        stop = now.replace(second=0, microsecond=0)
        began = time.perf_counter()
        maintenance.rollup(session, stop - timedelta(minutes=3), stop, stop - timedelta(minutes=1), now)
        elapsed = time.perf_counter() - began
    return elapsed * 1000


def update_counts(bench: Bench) -> dict[str, tuple[int, int]]:
    """(updates, HOT updates) of jobs and job_executions so far (the statistics system's view)."""
    time.sleep(1.0)  # backends report their counts at most once a second (and when they exit)
    with bench.environment.database().engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = connection.execute(text(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname IN ('jobs', 'job_executions')")).all()
    return {r.relname: (int(r.n_tup_upd), int(r.n_tup_hot_upd)) for r in rows}


def hot_share(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], jobs: int) -> dict[str, object]:
    found: dict[str, object] = {}
    for table in ("jobs", "job_executions"):
        updates = after[table][0] - before[table][0]
        hot = after[table][1] - before[table][1]
        found[table] = {"updates_per_job": updates / jobs, "hot_updates_per_job": hot / jobs,
                        "hot_pct": 100.0 * hot / updates if updates else None}
    return found


def measure(bench: Bench) -> Results:
    n, reps = bench.options.jobs, bench.options.reps
    rows = getattr(bench.options, "history_rows", None) or HISTORY_ROWS
    empty, full = [], []
    bench.environment.reset_tables()
    wait_for_quiet(bench.options.quiet_wait)
    counts = update_counts(bench)
    empty.append(drain_platform(bench, n, reset=False))
    hot = hot_share(counts, update_counts(bench), n)
    bench.say(f"drain, empty tables: {empty[-1].jobs_per_s:.0f} jobs/s; updates per job (HOT %): " + ", ".join(
        f"{t} {v['updates_per_job']:.2f} ({v['hot_pct'] or 0:.0f} %)" for t, v in hot.items()))
    bench.environment.reset_tables()
    loaded = load_history(bench, rows)
    bench.say(f"history: {rows:,} finished jobs and executions loaded in {loaded:.0f} s")
    # The roll-up with the history and the last drain's minute of fresh activity.
    full.append(drain_platform(bench, n, reset=False))
    bench.say(f"drain, {rows:,} finished rows: {full[-1].jobs_per_s:.0f} jobs/s")
    rollups = [rollup_round_ms(bench) for _ in range(ROLLUP_ROUNDS)]
    bench.say(f"roll-up round at {rows:,} rows: median {statistics.median(rollups):.1f} ms "
              f"(min {min(rollups):.1f}, max {max(rollups):.1f})")
    for _ in range(reps - 1):
        wait_for_quiet(bench.options.quiet_wait)
        full.append(drain_platform(bench, n, reset=False))
        bench.say(f"drain, {rows:,} finished rows: {full[-1].jobs_per_s:.0f} jobs/s")
    bench.environment.reset_tables()
    for _ in range(reps - 1):
        wait_for_quiet(bench.options.quiet_wait)
        empty.append(drain_platform(bench, n, reset=False))
        bench.say(f"drain, empty tables: {empty[-1].jobs_per_s:.0f} jobs/s")
    empty_rate = statistics.median(r.jobs_per_s for r in empty)
    full_rate = statistics.median(r.jobs_per_s for r in full)
    figures = [
        Figure("drain, empty tables", "jobs/s", [r.jobs_per_s for r in empty], method="platform drain as bench.drain"),
        Figure(f"drain, {rows // 1000}k finished rows", "jobs/s", [r.jobs_per_s for r in full],
               baseline="drain, empty tables", target=(">=", 0.95), method="the same with the history present"),
        Figure(f"roll-up round at {rows // 1000}k rows", "ms", rollups, target=("<=", 100.0),
               method="maintenance.rollup over the last 3 minutes (queue and job metrics)"),
    ]
    summary = {"history_drain_ratio": full_rate / empty_rate, "rollup_ms_at_1m": statistics.median(rollups),
               "hot_update_pct": {t: v["hot_pct"] for t, v in hot.items()}}
    raw = {"history": {"rows": rows, "hot_updates_in_a_drain": hot, "load_seconds": loaded, "rollup_ms": rollups,
                       "empty": [r.jobs_per_s for r in empty], "full": [r.jobs_per_s for r in full],
                       "empty_cpu_ms_per_job": [r.cpu_ms_total for r in empty],
                       "full_cpu_ms_per_job": [r.cpu_ms_total for r in full]}}
    return Results(figures, summary, raw)
