"""Outages and poison with real processes: a PostgreSQL restart mid-drain, a soft time limit
landing inside a query, a job that kills its process. Each ends with every job terminal, and
the worker and scheduler are the same processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis
from sqlalchemy import create_engine, pool, text

from shared import migrate
from shared.db import Database, get_database, reset_database
from shared.embedded import free_port
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.settings import get_settings
from shared.store import queues as queue_store
from tests.acceptance.test_lifecycle import all_done, executions, states
from tests.conftest import DEFAULT_QUEUES
from tests.jobs import EFFECTS_DDL
from tests.processes import ProcessFactory, wait_for

pytestmark = pytest.mark.acceptance

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def count(db: Database, sql: str) -> int:
    with db.session() as s:
        return int(s.execute(text(sql)).scalar() or 0)


def effects_by_pid(db: Database, key_like: str) -> set[int]:
    with db.session() as s:
        return set(s.execute(text("SELECT DISTINCT pid FROM test_effects WHERE key LIKE :k"), {"k": key_like}).scalars())


def test_a_soft_limit_inside_a_query_leaves_the_process_usable(db, processes):
    worker = processes.worker(concurrency=2)
    pool_pids = sorted(processes.pool_pids(worker))
    scheduler = processes.scheduler()
    poison = enqueue_now("test.pg_sleep", {"key": "query", "seconds": 60}).id  # soft limit 1 s, 2 attempts
    wait_for(lambda: all_done(db, 1, "failed"), 60, f"the poison fails, have {states(db)}")
    ids = enqueue_many_now("test.record", [{"key": f"ok{i}"} for i in range(40)])
    wait_for(lambda: all_done(db, 40), 60, f"40 ordinary jobs succeed, have {states(db)}")
    with db.session() as s:
        attempts = s.execute(text("SELECT max(attempt) FROM job_executions WHERE job_id = ANY(:ids)"), {"ids": ids}).scalar()
        last_error = s.execute(text("SELECT last_error FROM jobs WHERE id = :j"), {"j": poison}).scalar()
    assert attempts == 1, "no ordinary job failed on a wedged process"
    assert [(a, st) for a, st, _ in executions(db, poison)] == [(1, "timed_out"), (2, "timed_out")]
    assert last_error == "timed out after 1.0 s"
    # The processes whose query the soft limit interrupted went on to run ordinary jobs.
    assert effects_by_pid(db, "query") <= effects_by_pid(db, "ok%")
    assert worker.alive() and scheduler.alive() and sorted(processes.pool_pids(worker)) == pool_pids
    # No abandoned statement is left running in the server.
    assert count(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'") == 0


def test_a_job_that_kills_its_process_fails_as_poison(db, processes):
    crashes = get_settings().poison_after_crashes
    worker = processes.worker(concurrency=2)
    scheduler = processes.scheduler()
    poison = enqueue_now("test.exit", {"key": "exit"}).id  # max_attempts 100: only the poison rule stops it
    ids = enqueue_many_now("test.record", [{"key": f"ok{i}"} for i in range(40)])
    wait_for(lambda: all_done(db, 40), 90, f"40 ordinary jobs succeed, have {states(db)}")
    wait_for(lambda: all_done(db, 1, "failed"), 90, f"the poison fails, have {states(db)}")
    with db.session() as s:
        job = s.execute(text("SELECT attempt, crashes, last_error FROM jobs WHERE id = :j"), {"j": poison}).one()
        ordinary = s.execute(text("SELECT count(*) FROM job_executions WHERE job_id = ANY(:ids) AND state = 'succeeded'"),
                             {"ids": ids}).scalar()
    assert (job.attempt, job.crashes) == (crashes, crashes)
    assert job.last_error == f"poison: ended {crashes} worker processes"
    runs = executions(db, poison)
    assert [st for _, st, _ in runs] == ["lost"] * crashes
    assert runs[-1][2] == f"poison: ended {crashes} worker processes"
    assert count(db, "SELECT count(*) FROM test_effects WHERE key = 'exit'") == crashes
    assert ordinary == 40
    # Celery's prefork replaced the children the poison killed; the main processes are the same.
    assert worker.alive() and scheduler.alive()


# --- PostgreSQL restarted mid-drain --------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL server of this test's own (Debian's binaries), run as the postgres user."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-outage-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "postgres"
        shutil.chown(self.dir, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.pg_ctl("start", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")

    def _run(self, binary: str, *args: str) -> None:
        argv = [str(PG_BIN / binary), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd=self.dir)

    def pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.dir / "log"), *args)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres(test_env: dict[str, str]) -> Iterator[PrivatePostgres]:
    """The platform's database on a private server (so it can be restarted), and a broker key
    space of its own; the test process and every process started use them."""
    server = PrivatePostgres()
    admin = create_engine(server.url("postgres"), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE jobs"))
    admin.dispose()
    url = server.url("jobs")
    migrate.upgrade(url)
    prefix = f"jobs-outage-{uuid.uuid4().hex[:8]}:"
    saved = {k: os.environ[k] for k in ("JOBS_DATABASE_URL", "JOBS_BROKER_KEY_PREFIX")}
    os.environ.update(JOBS_DATABASE_URL=url, JOBS_BROKER_KEY_PREFIX=prefix)
    get_settings.cache_clear()
    reset_database()
    database = get_database()
    with database.session() as session:
        session.execute(text(EFFECTS_DDL))
        queue_store.seed_queues(session, DEFAULT_QUEUES)
    yield server
    os.environ.update(saved)
    get_settings.cache_clear()
    reset_database()
    server.stop()
    client = redis.Redis.from_url(test_env["JOBS_BROKER_URL"])
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_drain_ends_with_every_job_terminal_and_run_once(private_postgres, processes, mode):
    db = get_database()
    total = 1000
    # Each handler writes its effect (its own transaction), then pauses 20 ms before the finish.
    enqueue_many_now("test.record_then_wait", [{"key": f"k{i}", "seconds": 0.02} for i in range(total)])
    worker = processes.worker(concurrency=4)
    scheduler = processes.scheduler()
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") >= 200, 60, "the drain is under way")
    private_postgres.pg_ctl("restart", "-m", mode)
    reset_database()  # the test's own pool: its connections died with the server
    db = get_database()
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')") == total,
             90, "every job terminal", interval=0.5, on_timeout=lambda: states(db))
    with db.session() as s:
        by_state = dict(s.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all())
        effects = dict(s.execute(text("SELECT key, count(*) FROM test_effects GROUP BY key")).all())
        open_runs = s.execute(text("SELECT count(*) FROM job_executions WHERE state = 'running'")).scalar()
        interrupted = s.execute(text("SELECT count(*) FROM job_executions WHERE state <> 'succeeded'")).scalar()
    assert by_state == {"succeeded": total}, by_state
    assert open_runs == 0
    twice = {k: n for k, n in effects.items() if n != 1}
    assert len(effects) == total and not twice, f"each handler effect exactly once; more: {twice}"
    assert worker.alive() and scheduler.alive()
    log = worker.log()
    assert "writing its end failed" in log, "the restart landed between an effect and its finish write"
    print(f"restart -m {mode}: {total} jobs terminal, {interrupted} attempts interrupted and retried, effects once each; "
          f"finish writes retried {log.count('writing its end failed')} times, "
          f"{log.count('left to the rescuer')} given up")
