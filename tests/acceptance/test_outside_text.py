"""Text from outside, end to end: real workers check proxies that echo a non-ASCII password or
answer with NUL bytes, and publish to platforms whose error replies carry the token across the
old 500-character cut. Afterwards no table, log or Flower page holds any secret in any encoding,
and every check was recorded."""
# The rigs' fixtures are imported by name and then requested as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue_now
from shared.workloads import proxies as proxy_service
from tests.acceptance.test_operations import flower_process  # noqa: F401
from tests.acceptance.test_workload_posts import platform_env
from tests.processes import wait_for
from tests.prometheus import http_get
from tests.rigs.platform_server import PlatformServer, platform_server  # noqa: F401
from tests.rigs.proxies import (  # noqa: F401
    HOST, NON_ASCII_PASSWORD, PROXY_USER, check_endpoint, echoing_proxy, nul_proxy,
)
from tests.secret_forms import leaks_in
from tests.workload_data import add_account, add_post, add_user, row, rows

pytestmark = pytest.mark.acceptance

OLD_CUT = 500  # where the Graph and webhook adapters used to cut a reply, before redacting it


def straddling(secret: str) -> str:
    """An HTML error page whose secret starts 10 characters before the old cut and ends after it."""
    head = "<html><body>gateway error: "
    return head + "." * (OLD_CUT - 10 - len(head)) + secret + " was refused</body></html>" + " " * 50


def stored_texts(db) -> list[str]:
    """Every text and jsonb value of every table of the run's database, one string per column."""
    with db.session() as session:
        columns = session.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'jsonb', 'json', 'character varying', 'ARRAY')"
        )).all()
        return [
            "\n".join(v for v in session.execute(text(f'SELECT "{c}"::text FROM "{t}"')).scalars() if v is not None)
            for t, c in columns
        ]


def flower_pages(port: int, credentials: str) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    status, listing = http_get(base + "/api/tasks", auth=credentials)
    assert status == 200, listing
    pages = [listing, http_get(base + "/tasks", auth=credentials)[1]]
    for task_id in json.loads(listing):
        status, page = http_get(f"{base}/task/{task_id}", auth=credentials)
        assert status == 200, page
        pages.append(page)
    return pages


def add_proxy(db, type: str, port: int, username: str | None = None, password: str | None = None) -> int:
    with db.session() as session:
        return proxy_service.add_proxy(session, type=type, host=HOST, port=port, username=username,
                                       password=password).id


def test_no_secret_reaches_a_table_a_log_or_flower_and_every_check_is_recorded(
    db, processes, platform_server, check_endpoint, echoing_proxy, nul_proxy, flower_process,
):
    server: PlatformServer = platform_server
    flower_port, flower_credentials = flower_process
    proxies = {
        "echo via CONNECT": add_proxy(db, "https", echoing_proxy, PROXY_USER, NON_ASCII_PASSWORD),
        "echo, plain": add_proxy(db, "http", echoing_proxy, PROXY_USER, NON_ASCII_PASSWORD),
        "NUL via CONNECT": add_proxy(db, "https", nul_proxy),
        "NUL, plain": add_proxy(db, "http", nul_proxy, PROXY_USER, NON_ASCII_PASSWORD),
    }
    assert {tuple(r) for r in rows(db, "SELECT status, health_score FROM proxies")} == {("unchecked", None)}
    user = add_user(db)
    graph = add_account(db, user, "instagram", server.graph_account_id, server.graph_token)
    hook = add_account(db, user, "webhook", "hook", server.webhook_secret, url=server.webhook_url)
    server.fail_next("graph.media", "raw", status=400, body=straddling(server.graph_token))
    # Twice a 503 (retried: the attempts' errors and tracebacks are stored), then delivered.
    server.fail_next("webhook", "raw", count=2, status=503, body=straddling(server.webhook_secret))

    env = platform_env(server, JOBS_LOG_LEVEL="INFO", JOBS_PROXY_CHECK_URL=check_endpoint,
                       JOBS_PROXY_CONNECT_TIMEOUT_SECONDS="2", JOBS_PROXY_TOTAL_TIMEOUT_SECONDS="4")
    worker = processes.worker(concurrency=4, env=env)
    scheduler = processes.scheduler(env=env)
    post = add_post(db, user, "hello from outside", [graph, hook])
    enqueue_now("proxies.check_all")

    def count(sql: str) -> int:
        return int(row(db, sql)[0])

    wait_for(lambda: count("SELECT count(*) FROM proxy_health_logs") == 4, 60, "four checks recorded",
             on_timeout=lambda: rows(db, "SELECT type, state, last_error FROM jobs ORDER BY id"))
    wait_for(lambda: row(db, "SELECT state FROM posts WHERE id = :p", p=post)[0] == "failed", 60, "the post settled",
             on_timeout=lambda: rows(db, "SELECT * FROM post_publications"))
    wait_for(lambda: count("SELECT count(*) FROM jobs WHERE type NOT LIKE 'posts.start_due' "
                           "AND state NOT IN ('succeeded', 'failed', 'cancelled')") == 0, 30, "every job finished")

    # Every check was recorded as a failure with a cleaned message; no proxy counts as active.
    checks = {name: row(db, "SELECT l.ok, l.error_class, l.error_message, p.status, p.health_score "
                            "FROM proxy_health_logs l JOIN proxies p ON p.id = l.proxy_id WHERE p.id = :p", p=proxy_id)
              for name, proxy_id in proxies.items()}
    for name, check in checks.items():
        assert (check.ok, check.status, check.health_score) == (False, "dead", 0), name
        assert "\x00" not in check.error_message and len(check.error_message) <= 1000, name
    assert checks["echo via CONNECT"].error_class == "proxy_rejected"
    assert "<redacted>" in checks["echo via CONNECT"].error_message
    assert checks["NUL, plain"].error_class == "proxy_protocol_error"
    assert count("SELECT count(*) FROM jobs WHERE type = 'proxies.check_batch' AND state <> 'succeeded'") == 0

    # The post: Graph refused (permanent), the webhook delivered on its third attempt.
    states = dict(rows(db, "SELECT social_account_id, state FROM post_publications WHERE post_id = :p", p=post))
    assert states == {graph: "failed", hook: "published"}
    retried = rows(db, "SELECT e.error_message, e.traceback FROM job_executions e JOIN jobs j ON j.id = e.job_id "
                       "WHERE j.payload->>'social_account_id' = :a AND e.state = 'failed'", a=str(hook))
    assert len(retried) == 2 and all(r.traceback and "TransientFailure" in r.traceback for r in retried)

    secrets = [NON_ASCII_PASSWORD, server.graph_token, server.webhook_secret]
    found = leaks_in(stored_texts(db), secrets, user=PROXY_USER)
    found += leaks_in([worker.log(), scheduler.log()], secrets, user=PROXY_USER)
    found += leaks_in(flower_pages(flower_port, flower_credentials), secrets, user=PROXY_USER)
    assert found == []
