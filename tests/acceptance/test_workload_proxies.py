"""Proxy health checks end to end: real worker and scheduler processes check real proxies
(pproxy subprocesses, a closed port, a stalling server) on loopback."""
# The rig's fixtures are imported by name and then requested as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from shared.enqueue import enqueue_now
from shared.workloads import proxies as proxy_service
from tests.processes import wait_for
from tests.rigs.proxies import (  # noqa: F401
    HOST, PROXY_PASSWORD, PROXY_USER, check_endpoint, closed_port, http_proxy, socks5_proxy_auth, stalling_proxy,
)
from tests.workload_data import leaks, row, rows

pytestmark = pytest.mark.acceptance

WRONG_PASSWORD = "Wr0ng-pw-0815"
BASE_ENV = {
    "JOBS_WORKER_METRICS_PORT": "0", "JOBS_SCHEDULER_METRICS_PORT": "0",
    "JOBS_PROXY_CONNECT_TIMEOUT_SECONDS": "1", "JOBS_PROXY_TOTAL_TIMEOUT_SECONDS": "1.5",
    "JOBS_PROXY_DISABLE_AFTER_FAILURES": "2",
}


def add(db, type: str, port: int, username: str | None = None, password: str | None = None, host: str = HOST) -> int:
    with db.session() as session:
        return proxy_service.add_proxy(session, type=type, host=host, port=port, username=username, password=password).id


def count(db, sql: str, **params) -> int:
    return int(row(db, sql, **params)[0])


def fan_out_and_wait(db, checks: int) -> None:
    enqueue_now("proxies.check_all")
    wait_for(lambda: count(db, "SELECT count(*) FROM proxy_health_logs") >= checks, 30, f"{checks} checks logged")
    wait_for(lambda: count(db, "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed')") == 0, 10,
             "every job finished")


def test_each_case_ends_in_the_right_log_row_score_and_status(
    db, processes, check_endpoint, http_proxy, socks5_proxy_auth, closed_port, stalling_proxy,
):
    proxies = {
        "http": add(db, "http", http_proxy.port),
        "socks5": add(db, "socks5", socks5_proxy_auth.port, PROXY_USER, PROXY_PASSWORD),
        # The same SOCKS5 server and user with a wrong password (named "localhost": a proxy's
        # type, host, port and user are unique).
        "wrong password": add(db, "socks5", socks5_proxy_auth.port, PROXY_USER, WRONG_PASSWORD, host="localhost"),
        "closed port": add(db, "http", closed_port),
        "stalling": add(db, "socks5", stalling_proxy),
    }
    env = dict(BASE_ENV, JOBS_PROXY_CHECK_URL=check_endpoint, JOBS_WORKLOAD_SCHEDULES="false", JOBS_LOG_LEVEL="INFO")
    worker = processes.worker(concurrency=4, env=env)
    scheduler, health = processes.watched_scheduler(env=env)

    fan_out_and_wait(db, 5)
    logs = {name: row(db, "SELECT ok, http_status, error_class, exit_ip, latency_ms FROM proxy_health_logs "
                          "WHERE proxy_id = :p", p=proxy_id) for name, proxy_id in proxies.items()}
    state = {name: tuple(row(db, "SELECT status, health_score, consecutive_failures FROM proxies WHERE id = :p",
                             p=proxy_id)) for name, proxy_id in proxies.items()}
    for good in ("http", "socks5"):
        assert logs[good][:4] == (True, 200, None, "127.0.0.1") and 0 < logs[good].latency_ms < 1500
        assert state[good] == ("active", 100, 0)
    assert logs["wrong password"][:4] == (False, None, "proxy_auth_failed", None)
    assert logs["closed port"][:4] == (False, None, "connect_refused", None)
    assert logs["stalling"][:4] == (False, None, "connect_timeout", None)  # the SOCKS greeting never came
    for bad in ("wrong password", "closed port", "stalling"):
        # No evidence of health scores 0, and under 20 is dead (shared/workloads/proxy_scoring.py).
        assert state[bad] == ("dead", 0, 1), bad

    fan_out_and_wait(db, 10)  # a second failure in a row disables (JOBS_PROXY_DISABLE_AFTER_FAILURES=2)
    statuses = dict(rows(db, "SELECT id, status FROM proxies"))
    assert [statuses[proxies[n]] for n in proxies] == ["active", "active", "disabled", "disabled", "disabled"]

    fan_out_and_wait(db, 12)  # disabled proxies are no longer checked
    # Every job has finished, so every check it made is logged; two more dispatcher rounds
    # show no further job was waiting to start.
    health.wait_dispatcher(2)
    assert count(db, "SELECT count(*) FROM proxy_health_logs") == 12
    assert count(db, "SELECT count(*) FROM jobs WHERE type = 'proxies.check_batch'") == 3  # a batch per sweep
    assert rows(db, "SELECT total, checked, finished_at IS NOT NULL FROM proxy_sweeps ORDER BY id") == [
        (5, 5, True), (5, 5, True), (2, 2, True)]

    assert leaks(db, [PROXY_PASSWORD, WRONG_PASSWORD], [worker.log(), scheduler.log()]) == []


def test_the_schedule_fans_out_and_slow_checks_never_pile_up(db, processes, check_endpoint, http_proxy, stalling_proxy):
    fast, slow = add(db, "http", http_proxy.port), add(db, "http", stalling_proxy)
    env = dict(BASE_ENV, JOBS_WORKLOAD_SCHEDULES="true", JOBS_PROXY_CHECK_URL=check_endpoint, JOBS_PROXY_TOTAL_TIMEOUT_SECONDS="1.5",
               JOBS_PROXY_CHECK_CRON="* * * * * *", JOBS_PROXY_DISABLE_AFTER_FAILURES="100")
    processes.worker(concurrency=4, env=env)
    processes.scheduler(env=env)
    wait_for(lambda: count(db, "SELECT count(*) FROM proxy_health_logs WHERE proxy_id = :p", p=slow) >= 2, 30,
             "two checks of the stalling proxy", on_timeout=lambda: rows(
                 db, "SELECT type, state, payload::text, attempt, last_error, unique_key, unique_released FROM jobs "
                     "WHERE type LIKE 'proxies.%' ORDER BY id"))
    fires = count(db, "SELECT count(*) FROM jobs WHERE type = 'proxies.check_all'")
    assert fires >= 4  # one a second
    checks = rows(db, "SELECT e.started_at, e.finished_at FROM jobs j JOIN job_executions e ON e.job_id = j.id "
                      "WHERE j.type = 'proxies.check_batch' ORDER BY e.started_at")
    # Every fire while a sweep's batch ran found it running and started none: never two at once.
    assert all(later.started_at >= earlier.finished_at for earlier, later in zip(checks, checks[1:]) if earlier.finished_at)
    assert count(db, "SELECT count(*) FROM jobs WHERE type = 'proxies.check_batch'") <= len(checks) + 1
    assert count(db, "SELECT count(*) FROM proxy_health_logs WHERE proxy_id = :p", p=fast) >= 2
    assert row(db, "SELECT error_class FROM proxy_health_logs WHERE proxy_id = :p LIMIT 1", p=slow)[0] == "read_timeout"
