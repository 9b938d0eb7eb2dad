"""Post publishing end to end: real worker and scheduler processes publish due posts to the
fake platforms (Telegram Bot API, a signed webhook, Graph-style Threads and Instagram)."""
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from shared.cli.workloads import posts as posts_cli
from tests.processes import wait_for
from tests.rigs.platform_server import PlatformServer, platform_server  # noqa: F401
from tests.rigs.send_timing import busiest_window
from tests.workload_data import add_account, add_post, add_user, leaks, row, rows

pytestmark = pytest.mark.acceptance


def platform_env(server: PlatformServer, **extra: str) -> dict[str, str]:
    return {
        "JOBS_WORKER_METRICS_PORT": "0", "JOBS_SCHEDULER_METRICS_PORT": "0",
        "JOBS_TELEGRAM_API_BASE_URL": server.telegram_base, "JOBS_INSTAGRAM_API_BASE_URL": server.graph_base,
        "JOBS_THREADS_API_BASE_URL": server.graph_base, "JOBS_PLATFORM_TIMEOUT_SECONDS": "1",
        "JOBS_WORKLOAD_SCHEDULES": "true", "JOBS_POSTS_DUE_CRON": "* * * * * *", **extra,
    }


def accounts(db, server: PlatformServer) -> tuple[int, dict[str, int]]:
    user = add_user(db)
    return user, {
        "telegram": add_account(db, user, "telegram", "@channel", server.telegram_token),
        "webhook": add_account(db, user, "webhook", "hook", server.webhook_secret, url=server.webhook_url),
        "threads": add_account(db, user, "threads", server.graph_account_id, server.graph_token),
        "instagram": add_account(db, user, "instagram", server.graph_account_id, server.graph_token),
    }


def post_state(db, post_id: int):
    return row(db, "SELECT state, error_message, scheduled_at, published_at FROM posts WHERE id = :p", p=post_id)


def publications(db, post_id: int) -> dict[int, tuple]:
    return {r.social_account_id: (r.state, r.platform_post_id, r.error_message) for r in rows(
        db, "SELECT social_account_id, state, platform_post_id, error_message FROM post_publications WHERE post_id = :p",
        p=post_id)}


def settled(db, post_id: int) -> bool:
    return post_state(db, post_id).state in ("published", "failed")


def test_due_posts_are_published_everywhere_or_fail_with_the_platform_message(db, processes, platform_server):
    server = platform_server
    user, acct = accounts(db, server)
    busy = add_account(db, user, "webhook", "busy", server.webhook_secret, url=server.webhook_url)
    queued = [add_post(db, user, f"busy {i}", [busy]) for i in range(5)]
    # Per account: one publication at a time, and at most 3 starts in any 2 s.
    env = platform_env(server, JOBS_LOG_LEVEL="INFO", JOBS_POST_ACCOUNT_RATE="3", JOBS_POST_ACCOUNT_RATE_PERIOD_SECONDS="2")
    worker = processes.worker(concurrency=4, env=env)
    scheduler = processes.scheduler(env=env)

    everywhere = add_post(db, user, "to every platform", acct.values())
    wait_for(lambda: settled(db, everywhere), 30, f"post published, have {publications(db, everywhere)}")
    assert post_state(db, everywhere)[:2] == ("published", None)
    ids = {platform: publications(db, everywhere)[account][1] for platform, account in acct.items()}
    delivered = {key: d["id"] for key, d in server.deliveries.items()}  # by idempotency key
    assert ids["telegram"] == "@channel:1" and ids["webhook"] in delivered.values()
    assert sorted([ids["threads"], ids["instagram"]]) == sorted(m["id"] for m in server.media)

    wait_for(lambda: all(settled(db, p) for p in queued), 30, "the busy account's posts published")
    assert all(post_state(db, p).state == "published" for p in queued)
    runs = rows(db, "SELECT j.dispatched_at, e.started_at, e.finished_at FROM job_executions e JOIN jobs j ON j.id = e.job_id "
                    "WHERE j.type = 'posts.publish' AND j.payload->>'social_account_id' = :a AND e.state <> 'snoozed' "
                    "ORDER BY e.started_at", a=str(busy))
    assert len(runs) == 5
    # The rate holds at send time, as the platform receives them (its own clock): at most 3 in
    # any 2 s. The account runs one at a time.
    received = [r.received_at for r in server.requests("webhook") if str(r.body.get("content")).startswith("busy")]
    assert len(received) == 5 and busiest_window(received, 2.0) <= 3, received
    assert all(later.started_at >= earlier.finished_at for earlier, later in zip(runs, runs[1:]))

    # A 429 snoozes, a 5xx retries with backoff, a 400 fails with the platform's message.
    server.fail_next("webhook", "rate_limit", retry_after=1)
    server.fail_next("webhook", "server_error")
    server.fail_next("graph.media", "bad_request", description="(#100) The text is too long")
    later = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    mixed = add_post(db, user, "later", [acct["webhook"], acct["instagram"]], scheduled_at=later)
    wait_for(lambda: settled(db, mixed), 30, f"post settled, have {publications(db, mixed)}")
    state, message, scheduled_at, _ = post_state(db, mixed)
    assert state == "failed" and "(#100) The text is too long" in message and "instagram" in message
    state, webhook_id, _ = publications(db, mixed)[acct["webhook"]]
    assert state == "published" and webhook_id in {d["id"] for d in server.deliveries.values()}
    assert publications(db, mixed)[acct["instagram"]] == ("failed", None, "(#100) The text is too long")
    webhook_calls = [r for r in server.requests("webhook") if r.body and r.body.get("content") == "later"]
    assert len(webhook_calls) == 3  # 429, 500, then the one that published
    assert len({r.headers["x-idempotency-key"] for r in webhook_calls}) == 1
    first_try = rows(db, "SELECT min(e.started_at) AS at FROM job_executions e JOIN post_publications p "
                         "ON p.job_id = e.job_id WHERE p.post_id = :p", p=mixed)[0].at
    assert first_try >= scheduled_at  # not before its time

    # An expired token marks the account expired and fails its publications.
    server.fail_next("telegram.sendMessage", "unauthorized")
    expired = add_post(db, user, "to a revoked bot", [acct["telegram"]])
    wait_for(lambda: settled(db, expired), 30, "post failed")
    assert row(db, "SELECT status FROM social_accounts WHERE id = :a", a=acct["telegram"]).status == "expired"
    assert publications(db, expired)[acct["telegram"]][0] == "failed"

    secrets = [server.telegram_token, server.telegram_token.split(":")[1], server.graph_token, server.webhook_secret]
    assert leaks(db, secrets, [worker.log(), scheduler.log()]) == []


def test_a_worker_crash_mid_publish_never_publishes_twice(db, processes, platform_server):
    server = platform_server
    user, acct = accounts(db, server)
    env = platform_env(server, JOBS_PLATFORM_TIMEOUT_SECONDS="30")
    worker = processes.worker(concurrency=2, env=env)
    processes.scheduler(env=env)
    # Both platforms act, then their answers never come: the worker is killed while it waits.
    server.fail_next("graph.media_publish", "hang", seconds=15, publish=True)
    server.fail_next("telegram.sendMessage", "hang", seconds=15)
    post = add_post(db, user, "crash test", [acct["threads"], acct["telegram"]])
    wait_for(lambda: server.requests("graph.media_publish") and server.requests("telegram.sendMessage"), 30,
             "both requests in flight")
    for pid in processes.pool_pids(worker):
        os.kill(pid, signal.SIGKILL)

    wait_for(lambda: publications(db, post)[acct["threads"]][0] == "published"
             and publications(db, post)[acct["telegram"]][0] == "needs_review", 60,
             f"after the rescue, have {publications(db, post)}")
    # The Graph post was found by its marker, not posted again; Telegram cannot be asked: flagged.
    assert len(server.media) == 1 and len(server.requests("graph.media_publish")) == 1
    assert publications(db, post)[acct["threads"]][1] == server.media[0]["id"]
    assert len(server.requests("telegram.sendMessage")) == 1
    assert post_state(db, post)[:2] == ("publishing", f"needs review: publication "
                                        f"{row(db, 'SELECT id FROM post_publications WHERE social_account_id = :a', a=acct['telegram']).id}"
                                        f" (telegram account {acct['telegram']})")
    lost = rows(db, "SELECT e.state FROM job_executions e JOIN jobs j ON j.id = e.job_id WHERE j.type = 'posts.publish' "
                    "ORDER BY e.job_id, e.attempt")
    assert [r.state for r in lost].count("lost") == 2

    # An operator looks at the channel and settles it.
    flagged = row(db, "SELECT id FROM post_publications WHERE state = 'needs_review'").id
    result = CliRunner().invoke(posts_cli, ["resolve", str(flagged), "--published", "@channel:1"])
    assert result.exit_code == 0, result.output
    assert post_state(db, post).state == "published"
