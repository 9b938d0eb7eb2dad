"""Quiet when idle: the workloads' sweeps fire on their crons, find nothing to do and leave no
job row an operator has to scroll past; a restart does not warn about the fires they skipped."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from shared.cli.jobs import jobs as jobs_cli
from tests.processes import wait_for
from tests.workload_data import add_message, add_user

pytestmark = pytest.mark.acceptance

SWEEPS = ("messages.send_due", "posts.start_due", "proxies.check_all")
# Every sweep every second: an hour of idling at the default crons is about 1,800 fires; this
# makes the same point in seconds.
FAST_SWEEPS = {
    "JOBS_WORKLOAD_SCHEDULES": "true", "JOBS_MESSAGES_DUE_CRON": "* * * * * *",
    "JOBS_POSTS_DUE_CRON": "* * * * * *", "JOBS_PROXY_CHECK_CRON": "* * * * * *",
}


def _fires(db) -> dict[str, object]:
    with db.session() as session:
        return dict(session.execute(
            text("SELECT name, last_fire_at FROM schedules WHERE name = ANY(:names)"), {"names": list(SWEEPS)}
        ).all())


def _job_count(db) -> int:
    with db.session() as session:
        return int(session.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def _seen_fires(db, seen: dict[str, set[object]], at_least: int) -> bool:
    for name, fired in _fires(db).items():
        if fired is not None:
            seen.setdefault(name, set()).add(fired)
    return len(seen) == len(SWEEPS) and all(len(times) >= at_least for times in seen.values())


def test_idle_sweeps_leave_no_rows_and_restarts_do_not_warn(db, processes):
    first = processes.scheduler(env=FAST_SWEEPS)
    seen: dict[str, set[object]] = {}
    wait_for(lambda: _seen_fires(db, seen, 5), 60, f"every sweep fired five times: {seen}")
    assert _job_count(db) == 0
    listed = CliRunner().invoke(jobs_cli, ["list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == [], listed.output

    first.stop()
    with db.session() as session:  # the scheduler is down while fires go by
        stopped_at = session.execute(text("SELECT now()")).scalar_one()
    wait_for(lambda: _db_seconds_since(db, stopped_at) > 4, 30, "fires missed while the scheduler was down")
    second = processes.scheduler(env=FAST_SWEEPS)
    seen.clear()
    wait_for(lambda: _seen_fires(db, seen, 2), 60, f"the sweeps fire again after the restart: {seen}")
    assert "missed" not in second.log(), second.log()
    assert _job_count(db) == 0

    # Work appears: the next fire of its sweep is enqueued (the probe is not always "no").
    add_message(db, add_user(db, "idle-test"), "hello")
    wait_for(lambda: _job_count(db) >= 1, 30, "a due message makes its sweep fire a job")
    with db.session() as session:
        types = set(session.execute(text("SELECT type FROM jobs")).scalars())
    assert types == {"messages.send_due"}


def _db_seconds_since(db, then) -> float:
    with db.session() as session:
        return float(session.execute(text("SELECT extract(epoch FROM now() - :then)"), {"then": then}).scalar_one())
