"""The pruner and the metrics roll-up against the real database, time moved by a FrozenClock.
The roll-up's figures are checked against the same definitions computed here, in Python,
from the raw rows."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text

from scheduler.pruner import Pruner
from scheduler.rollup import Rollup
from shared.clock import FrozenClock
from shared.settings import get_settings
from tests.history import history_inserts

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def add_job(session, *, state: str, queue: str = "default", type_: str = "test.record", created: datetime,
            run_at: datetime | None = None, finished: datetime | None = None, attempt: int = 0,
            started: datetime | None = None) -> int:
    with history_inserts(session):  # finished and running jobs stand for history
        return session.execute(text(
            "INSERT INTO jobs (type, queue, state, payload, attempt, max_attempts, created_at, run_at, started_at, finished_at) "
            "VALUES (:t, :q, :s, '{\"key\": \"x\"}', :a, 3, :c, :r, :st, :f) RETURNING id"),
            {"t": type_, "q": queue, "s": state, "a": attempt, "c": created, "r": run_at or created, "st": started,
             "f": finished}).scalar_one()


def add_execution(session, job_id: int, attempt: int, state: str, started: datetime, finished: datetime | None) -> None:
    session.execute(text(
        "INSERT INTO job_executions (job_id, attempt, state, started_at, finished_at) VALUES (:j, :a, :s, :st, :f)"),
        {"j": job_id, "a": attempt, "s": state, "st": started, "f": finished})


def add_log(session, job_id: int) -> None:
    session.execute(text("INSERT INTO job_logs (job_id, attempt, level, message) VALUES (:j, 1, 'INFO', 'hi')"), {"j": job_id})


def surviving(db) -> set[int]:
    with db.session() as s:
        return set(s.execute(text("SELECT id FROM jobs")).scalars())


# -- pruner -----------------------------------------------------------------------------------

def test_pruner_deletes_old_finished_jobs_with_their_rows_and_nothing_else(db):
    with db.session() as s:
        s.execute(text("UPDATE queues SET retention_seconds = 3600 WHERE name = 'low'"))
        old = NOW - 8 * DAY
        doomed = [add_job(s, state=st, created=old, finished=old + timedelta(minutes=k)) for k, st in
                  enumerate(["succeeded", "failed", "cancelled", "succeeded", "failed"])]
        doomed.append(add_job(s, state="succeeded", queue="low", created=NOW - 3 * HOUR, finished=NOW - 2 * HOUR))
        for job_id in doomed:
            add_execution(s, job_id, 1, "succeeded", old, old)
            add_log(s, job_id)
        kept = {
            "recent": add_job(s, state="succeeded", created=NOW - 6 * DAY, finished=NOW - 6 * DAY),
            "queued": add_job(s, state="queued", created=NOW - 30 * DAY),
            "running": add_job(s, state="running", created=old, started=old, attempt=1),
            "scheduled": add_job(s, state="scheduled", created=old, run_at=NOW + DAY),
            "low-recent": add_job(s, state="succeeded", queue="low", created=NOW - HOUR, finished=NOW - HOUR / 2),
            "parent": add_job(s, state="succeeded", created=old, finished=old),
        }
        kept["holds-key"] = add_job(s, state="succeeded", created=old, finished=old)
        s.execute(text("UPDATE jobs SET unique_key = 'k', unique_period_seconds = 30 * 86400 WHERE id = :j"),
                  {"j": kept["holds-key"]})
        child = add_job(s, state="waiting", created=old)
        s.execute(text("INSERT INTO job_dependencies (job_id, depends_on_id) VALUES (:c, :p)"), {"c": child, "p": kept["parent"]})
        add_execution(s, kept["recent"], 1, "succeeded", NOW - 6 * DAY, NOW - 6 * DAY)
        add_log(s, kept["recent"])
    pruner = Pruner(db, get_settings(), FrozenClock(NOW))
    pruner.batch = 2  # several batches, each its own transaction
    assert pruner.tick() == 6
    assert surviving(db) == set(kept.values()) | {child}
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM job_executions")).scalar() == 1
        assert s.execute(text("SELECT count(*) FROM job_logs")).scalar() == 1
    assert pruner.tick() == 0


def test_pruner_works_a_backlog_off_over_rounds_in_small_batches(db):
    with db.session() as s, history_inserts(s):
        s.execute(text(
            "INSERT INTO jobs (type, state, payload, created_at, finished_at) "
            "SELECT 'test.record', 'succeeded', '{\"key\": \"x\"}', :t, :t FROM generate_series(1, 50)"), {"t": NOW - 9 * DAY})
    pruner = Pruner(db, get_settings(), FrozenClock(NOW))
    pruner.batch = 3
    import scheduler.pruner as pruner_module

    budget = pruner_module.PRUNE_MAX_BATCHES
    pruner_module.PRUNE_MAX_BATCHES = 5
    try:
        assert pruner.tick() == 15 and pruner._behind
        while pruner.tick():
            pass
    finally:
        pruner_module.PRUNE_MAX_BATCHES = budget
    assert surviving(db) == set() and not pruner._behind


def test_pruner_deletes_proxy_check_records_past_their_retention_in_batches(db):
    retention = get_settings().proxy_log_retention_seconds
    edge = NOW - timedelta(seconds=retention)
    with db.session() as s:
        proxy = s.execute(text("INSERT INTO proxies (type, host, port) VALUES ('http', '127.0.0.1', 1) "
                               "RETURNING id")).scalar_one()
        s.execute(text("INSERT INTO proxy_health_logs (proxy_id, checked_at, ok) "
                       "SELECT :p, :edge - g * interval '1 minute', true FROM generate_series(1, 7) g"),
                  {"p": proxy, "edge": edge})
        kept_logs = set(s.execute(text(
            "INSERT INTO proxy_health_logs (proxy_id, checked_at, ok) "
            "SELECT :p, :edge + g * interval '1 minute', false FROM generate_series(1, 3) g RETURNING id"),
            {"p": proxy, "edge": edge}).scalars())
        s.execute(text("INSERT INTO proxy_sweeps (started_at, total, batches, finished_at) VALUES "
                       "(:old, 1, 1, :old), (:old, 1, 1, NULL), (:new, 1, 1, :new)"),
                  {"old": edge - DAY, "new": edge + HOUR})
    pruner = Pruner(db, get_settings(), FrozenClock(NOW))
    pruner.batch = 3  # 7 old records: three batches, each its own transaction
    assert pruner.tick() == 7 and pruner.pruned_proxy_logs_total == 7
    with db.session() as s:
        assert set(s.execute(text("SELECT id FROM proxy_health_logs")).scalars()) == kept_logs
        # the finished old sweep goes; an unfinished one (still running, or abandoned) stays
        assert s.execute(text("SELECT count(*) FROM proxy_sweeps WHERE finished_at IS NULL")).scalar() == 1
        assert s.execute(text("SELECT count(*) FROM proxy_sweeps")).scalar() == 2
    assert pruner.tick() == 0


# -- roll-up ----------------------------------------------------------------------------------

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ACTIVE = ("waiting", "scheduled", "queued", "dispatched", "running")


def make_history(db, seed: int = 7) -> None:
    """Jobs over five minutes with every kind of ending: retries, lost workers, discards..."""
    rng = random.Random(seed)
    with db.session() as s:
        for _ in range(120):
            queue = rng.choice(["high", "default", "low"])
            type_ = rng.choice(["test.record", "test.flaky", "test.fail"])
            created = T0 + timedelta(seconds=rng.uniform(0, 290))
            ending = rng.choice(["queued", "running", "succeeded", "succeeded", "failed", "retrying", "cancelled", "waiting"])
            attempts = {"queued": 0, "waiting": 0, "cancelled": 0, "running": 1, "retrying": 1}.get(ending, rng.randint(1, 3))
            moment, run_at, executions = created, created, []
            for attempt in range(1, attempts + 1):
                run_at = moment + timedelta(seconds=rng.uniform(0, 3))
                started = run_at + timedelta(seconds=rng.uniform(0, 4))
                last = attempt == attempts
                if ending == "running" and last:
                    executions.append((attempt, "running", started, None))
                    break
                finished = started + timedelta(seconds=rng.uniform(0.01, 20))
                if ending == "succeeded" and last:
                    state = "succeeded"
                elif ending == "failed" and last:
                    state = rng.choice(["failed", "lost", "discarded", "timed_out"])
                else:
                    state = rng.choice(["failed", "lost", "timed_out"])
                executions.append((attempt, state, started, finished))
                moment = finished
            job_state = {"retrying": "scheduled"}.get(ending, ending)
            finished_at = moment if ending in ("succeeded", "failed") else (
                created + timedelta(seconds=5) if ending == "cancelled" else None)
            job_id = add_job(s, state=job_state, queue=queue, type_=type_, created=created, run_at=run_at,
                             finished=finished_at, attempt=len(executions),
                             started=executions[-1][2] if executions else None)
            for attempt, state, started, finished in executions:
                add_execution(s, job_id, attempt, state, started, finished)


def percentile(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bucket(moment: datetime | None) -> datetime | None:
    return moment.replace(second=0, microsecond=0) if moment else None


def expected_figures(db) -> tuple[dict[tuple[Any, str], dict[str, Any]], dict[tuple[Any, str], dict[str, Any]]]:
    """The roll-up's definitions (docs/scheduling.md), computed from the raw rows."""
    with db.session() as s:
        jobs = {r.id: r for r in s.execute(text("SELECT * FROM jobs")).all()}
        executions = s.execute(text("SELECT * FROM job_executions")).all()
    per_queue: dict[tuple[Any, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    per_type: dict[tuple[Any, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    samples: dict[tuple[str, Any, str], list[float]] = defaultdict(list)
    for job in jobs.values():
        per_queue[(bucket(job.created_at), job.queue)]["enqueued"] += 1
        if job.state == "failed":
            per_queue[(bucket(job.finished_at), job.queue)]["failed"] += 1
            per_type[(bucket(job.finished_at), job.type)]["failed"] += 1
    for e in executions:
        job = jobs[e.job_id]
        for key, figures in (((bucket(e.started_at), job.queue), per_queue), ((bucket(e.started_at), job.type), per_type)):
            figures[key]["started"] += 1
        if e.attempt == job.attempt:
            samples[("wait", bucket(e.started_at), job.queue)].append((e.started_at - job.run_at).total_seconds() * 1000)
        if e.finished_at is None:
            continue
        end = bucket(e.finished_at)
        retried = e.state in ("failed", "timed_out", "lost") and not (job.state == "failed" and job.attempt == e.attempt)
        for key, figures in (((end, job.queue), per_queue), ((end, job.type), per_type)):
            figures[key]["succeeded"] += e.state == "succeeded"
            figures[key]["retried"] += retried
        if e.state != "lost":
            run = (e.finished_at - e.started_at).total_seconds() * 1000
            samples[("run", end, job.queue)].append(run)
            samples[("type-run", end, job.type)].append(run)
    for (kind, when, name), values in samples.items():
        if kind == "wait":
            per_queue[(when, name)]["wait_p50_ms"] = percentile(values, 0.5)
            per_queue[(when, name)]["wait_p95_ms"] = percentile(values, 0.95)
        elif kind == "run":
            per_queue[(when, name)]["run_p50_ms"] = percentile(values, 0.5)
            per_queue[(when, name)]["run_p95_ms"] = percentile(values, 0.95)
        else:
            per_type[(when, name)].update(run_p50_ms=percentile(values, 0.5), run_p95_ms=percentile(values, 0.95),
                                          run_max_ms=max(values))
    for figures in per_type.values():
        done = figures["succeeded"] + figures["failed"]
        figures["failure_rate"] = figures["failed"] / done if done else None
    return per_queue, per_type


def table(db, name: str) -> list[dict[str, Any]]:
    with db.session() as s:
        return [dict(r) for r in s.execute(text(f"SELECT * FROM {name} ORDER BY 1, 2")).mappings()]


def roll_up_minute_by_minute(db, minutes: int) -> None:
    for minute in range(1, minutes + 1):
        Rollup(db, get_settings(), FrozenClock(T0 + timedelta(minutes=minute, seconds=2))).tick()


def test_rollup_figures_equal_counts_computed_from_the_raw_rows(db):
    make_history(db)
    roll_up_minute_by_minute(db, 12)
    per_queue, per_type = expected_figures(db)
    rows = table(db, "queue_metrics")
    # The first round (at 12:01:02) also rolled up the three minutes before 12:01.
    assert {r["bucket"] for r in rows} == {T0 - timedelta(minutes=2) + timedelta(minutes=m) for m in range(14)}
    assert len(rows) == 14 * 4  # every queue, every minute, zeros included
    for row in rows:
        want = per_queue.get((row["bucket"], row["queue"]), {})
        for field in ("enqueued", "started", "succeeded", "failed", "retried"):
            assert row[field] == want.get(field, 0), (row["bucket"], row["queue"], field)
        for field in ("wait_p50_ms", "wait_p95_ms", "run_p50_ms", "run_p95_ms"):
            assert row[field] == pytest.approx(want.get(field)), (row["bucket"], row["queue"], field)
    type_rows = table(db, "job_metrics")
    assert {(r["bucket"], r["job_type"]) for r in type_rows} == set(per_type)
    for row in type_rows:
        want = per_type[(row["bucket"], row["job_type"])]
        for field in ("started", "succeeded", "failed", "retried"):
            assert row[field] == want.get(field, 0), (row["bucket"], row["job_type"], field)
        for field in ("run_p50_ms", "run_p95_ms", "run_max_ms", "failure_rate"):
            assert row[field] == pytest.approx(want.get(field)), (row["bucket"], row["job_type"], field)


def test_depth_and_oldest_waiting_are_a_snapshot_of_the_minute_just_ended(db):
    make_history(db)
    with db.session() as s:
        depth = {(q, st): n for q, st, n in s.execute(text("SELECT queue, state, count(*) FROM jobs GROUP BY 1, 2"))}
        oldest = dict(s.execute(text("SELECT queue, min(run_at) FROM jobs WHERE state = 'queued' GROUP BY 1")).all())
    roll_up_minute_by_minute(db, 3)
    for row in table(db, "queue_metrics"):
        if row["bucket"] < T0:  # older minutes rolled up by the first round had no snapshot taken
            assert row["depth"] == {} and row["oldest_waiting_seconds"] is None
            continue
        assert row["depth"] == {state: depth.get((row["queue"], state), 0) for state in ACTIVE}
        taken = row["bucket"] + timedelta(minutes=1, seconds=2)
        want = (taken - oldest[row["queue"]]).total_seconds() if row["queue"] in oldest else None
        assert row["oldest_waiting_seconds"] == pytest.approx(want)


def test_rollup_is_idempotent_across_restarts_and_replicas(db):
    make_history(db)
    roll_up_minute_by_minute(db, 8)
    before = (table(db, "queue_metrics"), table(db, "job_metrics"))
    # A second replica, and a restarted one, redo the same minutes: the same figures.
    again = FrozenClock(T0 + timedelta(minutes=8, seconds=2))
    Rollup(db, get_settings(), again).tick()
    Rollup(db, get_settings(), again).tick()
    assert (table(db, "queue_metrics"), table(db, "job_metrics")) == before
    # Down for 20 minutes: the missed minutes are filled in, the old ones left as they were.
    Rollup(db, get_settings(), FrozenClock(T0 + timedelta(minutes=28, seconds=2))).tick()
    after = table(db, "queue_metrics")
    assert [r for r in after if r["bucket"] < T0 + timedelta(minutes=5)] == [
        r for r in before[0] if r["bucket"] < T0 + timedelta(minutes=5)]
    assert {r["bucket"] for r in after} == {T0 - timedelta(minutes=2) + timedelta(minutes=m) for m in range(30)}
