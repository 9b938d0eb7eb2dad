"""Poison isolation, dispatcher side (issue 10, item 3), with real scheduler and worker
processes: rows the dispatcher cannot handle (made as a database from before migration 0004
could hold them: -infinity timestamps, an infinite timeout) are failed alone with the reason,
and 40 ordinary jobs enqueued after them all succeed, with no process crashed or restarted."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue_many_now
from tests.history import history_inserts, old_rows_allowed
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance

POISON = {  # name: (queue, columns, values)
    "queued, run_at -infinity": ("default", "run_at", "'-infinity'"),
    "queued, timeout Infinity": ("default", "timeout_seconds", "'Infinity'"),
    "scheduled, run_at -infinity": ("high", "state, run_at", "'scheduled', '-infinity'"),
}


def insert_poison(db) -> dict[str, int]:
    ids = {}
    with old_rows_allowed(db, "ck_jobs_run_at_finite", "ck_jobs_timeout_finite"):
        with db.engine.begin() as connection, history_inserts(connection):
            for name, (queue, columns, values) in POISON.items():
                ids[name] = connection.execute(text(
                    f"INSERT INTO jobs (type, queue, payload, {columns}) "
                    f"VALUES ('test.record', :queue, '{{\"key\": \"poison\"}}', {values}) RETURNING id"),
                    {"queue": queue}).scalar_one()
    return ids


def rows(db, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    with db.session() as s:
        return {r.id: (r.state, r.last_error) for r in s.execute(
            text("SELECT id, state, last_error FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}).all()}


def test_rows_the_dispatcher_cannot_handle_fail_alone_and_the_rest_run(db, processes):
    worker = processes.worker()
    scheduler = processes.scheduler()
    pool = sorted(processes.pool_pids(worker))
    poison = insert_poison(db)
    good = enqueue_many_now("test.record", [{"key": f"after-{i}"} for i in range(40)])

    wait_for(lambda: all(s == "succeeded" for s, _ in rows(db, good).values()), 90,
             "the 40 ordinary jobs succeed", on_timeout=lambda: (rows(db, list(poison.values())), scheduler.log()[-3000:]))
    wait_for(lambda: all(s == "failed" for s, _ in rows(db, list(poison.values())).values()), 30,
             "the poison rows end failed", on_timeout=lambda: rows(db, list(poison.values())))

    ended = rows(db, list(poison.values()))
    assert ended[poison["queued, run_at -infinity"]][1].startswith("dispatch failed: ")
    assert "ck_jobs_timeout_finite" in ended[poison["queued, timeout Infinity"]][1]
    assert ended[poison["scheduled, run_at -infinity"]][1].startswith("promotion failed: ")
    with db.session() as s:
        ran = dict(s.execute(text("SELECT key, count(*) FROM test_effects GROUP BY key")).all())
    assert ran == {f"after-{i}": 1 for i in range(40)}  # no poison ever reached a worker
    # The same processes throughout: nothing crashed, nothing was restarted.
    assert worker.alive() and scheduler.alive() and sorted(processes.pool_pids(worker)) == pool
    for job_id in poison.values():
        assert f"job {job_id} failed alone" in scheduler.log()
