"""The job lifecycle with every platform connection but the dispatcher's listener going through
PgBouncer in transaction pooling mode (Debian's pgbouncer, installed when missing).

JOBS_DATABASE_URL points at PgBouncer (JOBS_DATABASE_POOLER=transaction), JOBS_LISTEN_DATABASE_URL
straight at PostgreSQL. The test process itself goes through PgBouncer too. That connections
really went through it is checked against PgBouncer's own SHOW SERVERS and pg_stat_activity.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.broker import make_celery, publish
from shared.control import cancel_job, get_job
from shared.db import get_database, make_database
from shared.embedded import free_port
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.settings import get_settings
from shared.store import jobs as job_store
from tests.acceptance.test_lifecycle import _running_pid, all_done, broker_depth, effect_counts, executions, states
from tests.environment import applied
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance

PGBOUNCER = "/usr/sbin/pgbouncer"
# Fewer server connections than the platform's clients (two worker pools, a scheduler with a pool
# of 8, the test): transaction pooling must share them.
SERVER_POOL_SIZE = 6


@dataclass
class Bouncer:
    url: str  # the run's database through PgBouncer (what the platform uses)
    direct_url: str  # the run's database itself (what the listener uses)
    admin_url: str  # PgBouncer's console

    def show(self, what: str) -> list[dict[str, object]]:
        # The console speaks the simple query protocol only: a client-side cursor.
        with psycopg.connect(self.admin_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [c.name for c in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def server_pids(self) -> set[int]:
        """The PostgreSQL backends PgBouncer holds."""
        return {int(row["remote_pid"]) for row in self.show("SERVERS") if row.get("remote_pid")}


def _ensure_pgbouncer() -> None:
    if not Path(PGBOUNCER).exists():
        result = subprocess.run(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer",
            shell=True, capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0 or not Path(PGBOUNCER).exists():
            pytest.fail(f"pgbouncer is not installed and apt-get could not install it:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def _server_location(url: str) -> tuple[str, int]:
    """host (or socket directory) and port of the run's PostgreSQL."""
    parsed = make_url(url)
    host = parsed.host or str(parsed.query.get("host", ""))
    port = parsed.port
    if port is None and host.startswith("/"):  # a socket directory: its socket names the port
        sockets = sorted(Path(host).glob(".s.PGSQL.*"))
        port = int(sockets[0].name.rsplit(".", 1)[1]) if sockets else 5432
    return host, port or 5432


def _reaches_postgres(info: "Bouncer", workdir: Path) -> None:
    try:
        with psycopg.connect(make_url(info.url).set(drivername="postgresql").render_as_string(hide_password=False),
                             connect_timeout=20) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise AssertionError(f"pgbouncer does not reach PostgreSQL ({exc}):\n{(workdir / 'pgbouncer.log').read_text()}") from exc


@pytest.fixture(scope="module")
def bouncer(test_env: dict[str, str], database_url: str) -> Iterator[Bouncer]:
    """A private PgBouncer (transaction pooling) in front of the run's database, and the
    environment pointed at it for the module's tests and the processes they start."""
    _ensure_pgbouncer()
    parsed = make_url(database_url)
    host, port = _server_location(database_url)
    user = parsed.username or "postgres"
    listen_port = free_port()
    # pgbouncer refuses to run as root: it runs as the user owning PostgreSQL's socket directory
    # (the only one who may use a private socket), or else as postgres, in a directory it owns.
    owner = Path(host).stat().st_uid if host.startswith("/") else 0
    runner = pwd.getpwuid(owner) if owner else pwd.getpwnam("postgres")
    workdir = Path(tempfile.mkdtemp(prefix="jobs-test-pgbouncer-"))
    server = f"host={host} port={port} dbname={parsed.database} user={user}"
    if parsed.password:
        server += f" password={parsed.password}"
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(f"""[databases]
{parsed.database} = {server} pool_size={SERVER_POOL_SIZE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {SERVER_POOL_SIZE}
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    for path in [workdir, *workdir.iterdir()]:
        os.chown(path, runner.pw_uid, runner.pw_gid)
    process = subprocess.Popen(
        ["runuser", "-u", runner.pw_name, "--", PGBOUNCER, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    through = parsed.set(host="127.0.0.1", port=listen_port, query={}, password=None)
    info = Bouncer(
        url=through.render_as_string(hide_password=False),
        direct_url=database_url,
        admin_url=through.set(drivername="postgresql", database="pgbouncer").render_as_string(hide_password=False),
    )

    def answers() -> bool:
        if process.poll() is not None:
            log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
            raise AssertionError(f"pgbouncer exited with {process.returncode}:\n{log}")
        try:
            return bool(info.show("VERSION"))
        except psycopg.OperationalError:
            return False

    def stop() -> None:
        process.send_signal(signal.SIGTERM)  # runuser passes it on
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        wait_for(answers, 30, "pgbouncer answers")
        _reaches_postgres(info, workdir)
    except BaseException:
        stop()
        raise
    env = {"JOBS_DATABASE_URL": info.url, "JOBS_LISTEN_DATABASE_URL": database_url, "JOBS_DATABASE_POOLER": "transaction",
           "JOBS_NOTIFY_PROBE_SECONDS": "0.5", "JOBS_NOTIFY_PROBE_TIMEOUT_SECONDS": "2"}
    with applied(env):
        yield info
    stop()


@pytest.fixture
def bdb(bouncer: Bouncer, db):
    """The run's database (emptied) as the platform sees it: through PgBouncer."""
    assert str(get_database().engine.url.port) == str(make_url(bouncer.url).port)
    return db


def _backends(direct_url: str) -> list[tuple[int, str, str]]:
    """(pid, application_name, query) of the other backends of the run's database."""
    with psycopg.connect(make_url(direct_url).set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT pid, application_name, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()]


def _scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _health(port: int) -> dict:
    status, body = _scrape(port, "/healthz")
    return json.loads(body) if status in (200, 503) else {}


def _notify_ok(port: int) -> float | None:
    _, body = _scrape(port, "/metrics")
    for line in body.splitlines():
        if line.startswith("jobs_dispatcher_notify_ok "):
            return float(line.split()[1])
    return None


def test_happy_path_every_connection_but_the_listener_through_pgbouncer(bouncer, bdb, processes):
    worker = processes.worker()
    port = free_port()
    scheduler = processes.scheduler(env={"JOBS_SCHEDULER_METRICS_PORT": str(port)})
    ids = enqueue_many_now("test.record", [{"key": f"k{i}"} for i in range(20)])
    wait_for(lambda: all_done(bdb, 20), 30, f"20 jobs succeed, have {states(bdb)}")
    assert effect_counts(bdb) == {f"k{i}": 1 for i in range(20)}
    assert executions(bdb, ids[0]) == [(1, "succeeded", None)]

    # Every client of the platform is a PgBouncer client ...
    names = {row["application_name"] for row in bouncer.show("CLIENTS")}
    pool_pids = processes.pool_pids(worker)
    assert {f"jobplatform:{pid}" for pid in pool_pids} <= names, names
    assert f"jobplatform:{scheduler.pid}" in names
    # ... and every backend of the database is one of PgBouncer's, but the listener's.
    backends = _backends(bouncer.direct_url)
    listeners = [pid for pid, name, query in backends if query.startswith("LISTEN")]
    assert len(listeners) == 1
    listener_name = next(name for pid, name, _ in backends if pid == listeners[0])
    assert listener_name == f"jobplatform:{scheduler.pid}"
    through = bouncer.server_pids()
    assert listeners[0] not in through
    assert {pid for pid, _, _ in backends} - {listeners[0]} <= through
    assert len(through) <= SERVER_POOL_SIZE
    # The probe's tokens went through PgBouncer and reached the direct listener.
    wait_for(lambda: _health(port).get("services", {}).get("dispatcher", {}).get("notifications") == "arriving",
             30, "the probe says notifications arrive", on_timeout=lambda: _health(port))
    assert _health(port)["warnings"] == []
    assert _notify_ok(port) == 1.0


def test_retry_then_success(bouncer, bdb, processes):
    processes.worker()
    processes.scheduler()
    job = enqueue_now("test.flaky", {"key": "f", "fail_times": 2})
    wait_for(lambda: all_done(bdb, 1), 30, f"flaky job succeeds, have {states(bdb)}")
    runs = executions(bdb, job.id)
    assert [(a, s) for a, s, _ in runs] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert runs[0][2] == "flaky failure 1 of 2"


def test_exhausted_retries_end_failed(bouncer, bdb, processes):
    processes.worker()
    processes.scheduler()
    job = enqueue_now("test.fail", {"key": "x"})
    wait_for(lambda: all_done(bdb, 1, "failed"), 30, f"job fails, have {states(bdb)}")
    assert [(a, s, e) for a, s, e in executions(bdb, job.id)] == [(n, "failed", "boom") for n in (1, 2, 3)]


@pytest.mark.parametrize("kind, job_state, execution_states", [
    ("cancel", "cancelled", ["cancelled"]),
    ("discard", "failed", ["discarded"]),
    ("snooze", "succeeded", ["snoozed", "succeeded"]),
    ("retry", "succeeded", ["failed", "succeeded"]),
])
def test_explicit_outcomes(bouncer, bdb, processes, kind, job_state, execution_states):
    processes.worker(concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.outcome", {"key": kind, "kind": kind, "after": 0.1}, max_attempts=2)
    wait_for(lambda: all_done(bdb, 1, job_state), 30, f"{kind} ends {job_state}, have {states(bdb)}")
    assert [s for _, s, _ in executions(bdb, job.id)] == execution_states


def test_cancel_a_running_job(bouncer, bdb, processes):
    processes.worker(concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.stoppable", {"key": "coop", "seconds": 60, "cooperative": True})
    wait_for(lambda: _running_pid(bdb, job.id), 30, "job starts")
    assert cancel_job(job.id, "no longer needed") == "cancelling"
    wait_for(lambda: get_job(job.id).state == "cancelled", 20, "cancelled within a heartbeat or two")
    assert [s for _, s, _ in executions(bdb, job.id)] == ["cancelled"]


def test_kill_9_of_the_process_running_a_job(bouncer, bdb, processes):
    worker = processes.worker(concurrency=1)
    processes.scheduler()
    job = enqueue_now("test.sleep", {"key": "s", "seconds": 2.0})
    pid = wait_for(lambda: _running_pid(bdb, job.id), 30, "job starts")
    assert pid in processes.pool_pids(worker)
    os.kill(pid, signal.SIGKILL)  # its PgBouncer client dies mid-session: the server connection must be reusable
    wait_for(lambda: all_done(bdb, 1), 60, f"job succeeds after the kill, have {states(bdb)}")
    assert [(a, s) for a, s, _ in executions(bdb, job.id)] == [(1, "lost"), (2, "succeeded")]


def test_duplicated_message_runs_the_handler_once(bouncer, bdb, processes):
    job = enqueue_now("test.record", {"key": "dup"})
    with bdb.session() as s:
        dispatched = job_store.dispatch_queue(s, "default", 10)
    assert [j.id for j in dispatched] == [job.id]
    app = make_celery(get_settings())
    publish(app, get_settings(), dispatched * 3)
    processes.worker()
    wait_for(lambda: all_done(bdb, 1), 60, f"job succeeds, have {states(bdb)}")
    wait_for(lambda: broker_depth(app, "default") == 0, 30, "broker drained")
    assert effect_counts(bdb) == {"dup": 1}
    assert len(executions(bdb, job.id)) == 1


def test_a_thousand_jobs_drain_exactly_once(bouncer, bdb, processes):
    processes.worker(concurrency=4)
    processes.worker(concurrency=4)
    processes.scheduler()
    started = time.monotonic()
    enqueue_many_now("test.record", [{"key": f"d{i}"} for i in range(1000)])
    wait_for(lambda: all_done(bdb, 1000), 240, f"1000 jobs succeed, have {states(bdb)}", interval=0.2)
    took = time.monotonic() - started
    effects = effect_counts(bdb)
    assert len(effects) == 1000 and set(effects.values()) == {1}
    with bdb.session() as s:
        assert s.execute(text("SELECT count(*) FROM job_executions")).scalar() == 1000
    # Many more transactions than server connections: they were shared.
    stats = {row["database"]: row for row in bouncer.show("STATS")}
    assert int(stats[make_url(bouncer.url).database]["total_xact_count"]) > 3000
    assert len(bouncer.server_pids()) <= SERVER_POOL_SIZE
    print(f"\n1000 jobs through PgBouncer (transaction mode, prepare_threshold=None): {took:.1f} s, {1000 / took:.0f} jobs/s")


def test_a_listener_behind_pgbouncer_hears_nothing_and_says_so_while_jobs_run(bouncer, bdb, processes):
    processes.worker()
    port = free_port()
    # The listener too through PgBouncer: LISTEN is accepted, no notification ever comes.
    scheduler = processes._spawn("scheduler", [sys.executable, "-m", "scheduler"], {
        "JOBS_SCHEDULER_METRICS_PORT": str(port), "JOBS_LISTEN_DATABASE_URL": bouncer.url,
    })
    wait_for(lambda: _health(port).get("services", {}).get("dispatcher", {}).get("notifications") == "not arriving",
             60, "the probe says notifications do not arrive",
             on_timeout=lambda: f"{_health(port)}\n{scheduler.log()}")
    report = _health(port)
    assert _scrape(port, "/healthz")[0] == 200  # polling keeps the work going: a warning, not a 503
    assert any("NOTIFY does not reach the listener" in w for w in report["warnings"])
    assert report["services"]["dispatcher"]["probes_heard"] == 0
    assert _notify_ok(port) == 0.0
    assert "NOTIFY does not reach the listener" in scheduler.log()
    ids = enqueue_many_now("test.record", [{"key": f"p{i}"} for i in range(10)])
    wait_for(lambda: all_done(bdb, 10), 30, f"jobs run by polling, have {states(bdb)}")
    assert effect_counts(bdb) == {f"p{i}": 1 for i in range(10)}
    assert len(ids) == 10
    # No backend of the database listens directly: the LISTEN went to one of PgBouncer's.
    assert not [pid for pid, _, query in _backends(bouncer.direct_url)
                if query.startswith("LISTEN") and pid not in bouncer.server_pids()]


def test_timestamps_are_utc_whatever_the_server_time_zone(bouncer, bdb):
    """No SET TIME ZONE at connect: the client turns every timestamptz into UTC, also from a
    server whose zone is not UTC (here a connection started with another TimeZone)."""
    kolkata = make_url(bouncer.direct_url).update_query_dict({"options": "-c timezone=Asia/Kolkata"})
    direct = make_database(kolkata.render_as_string(hide_password=False), pool_size=1)
    try:
        with direct.engine.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar() == "Asia/Kolkata"
            value = conn.execute(text("SELECT TIMESTAMPTZ '2026-01-01 12:00:00+00'")).scalar()
    finally:
        direct.dispose()
    assert value.utcoffset().total_seconds() == 0 and value.hour == 12
    with bdb.session() as s:  # through PgBouncer, from the run's server
        now = s.execute(text("SELECT now()")).scalar()
    assert now.utcoffset().total_seconds() == 0


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_server_side_prepared_statements_break_through_transaction_pooling(bouncer, bdb):
    """Why JOBS_DATABASE_POOLER=transaction turns them off: a statement prepared on one server
    connection is run by a client whose next transaction lands on another (or a second client
    prepares the same name on the same one)."""
    query = "SELECT count(*) FROM queues WHERE name = %s"

    def interleave(prepare_threshold: int | None) -> list[str]:
        errors = []
        with psycopg.connect(_plain(bouncer.url), autocommit=True, prepare_threshold=prepare_threshold) as a, \
                psycopg.connect(_plain(bouncer.url), autocommit=True, prepare_threshold=prepare_threshold) as b, \
                psycopg.connect(_plain(bouncer.url), prepare_threshold=None) as holder:
            for round_ in range(6):
                for conn in (a, b):
                    try:
                        conn.execute(query, ("default",)).fetchone()
                    except psycopg.Error as exc:
                        errors.append(type(exc).__name__)
                if round_ == 2:  # a transaction left open pins one server connection: others shift
                    holder.execute("SELECT 1")
            holder.rollback()
        return errors

    assert interleave(0), "prepared statements went through transaction pooling unharmed"
    assert interleave(None) == []
