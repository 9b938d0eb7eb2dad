"""Proactive Telegram messages end to end: real worker and scheduler processes send due
messages to the fake Bot API, at Telegram's pace, never twice."""
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from shared.cli.workloads import messages as messages_cli
from tests.processes import wait_for
from tests.rigs.platform_server import PlatformServer, platform_server  # noqa: F401
from tests.workload_data import add_message, add_user, connect, leaks, row, rows

pytestmark = pytest.mark.acceptance


def telegram_env(server: PlatformServer, **extra: str) -> dict[str, str]:
    return {
        "JOBS_WORKER_METRICS_PORT": "0", "JOBS_SCHEDULER_METRICS_PORT": "0",
        "JOBS_TELEGRAM_API_BASE_URL": server.telegram_base, "JOBS_PLATFORM_TIMEOUT_SECONDS": "1",
        "JOBS_WORKLOAD_SCHEDULES": "true", "JOBS_MESSAGES_DUE_CRON": "* * * * * *", **extra,
    }


def person(db, server: PlatformServer, name: str, chat_id: int | None) -> int:
    user = add_user(db, name)
    if chat_id is not None:
        connect(db, user, chat_id, server.telegram_token)
    return user


def states(db) -> dict[int, str]:
    return dict(rows(db, "SELECT id, state FROM proactive_messages"))


def settled(db, count: int) -> bool:
    return sum(1 for s in states(db).values() if s != "pending") == count


def test_due_messages_are_sent_once_cancelled_or_failed_at_telegrams_pace(db, processes, platform_server):
    server = platform_server
    alice, bob = person(db, server, "alice", 101), person(db, server, "bob", None)
    carol, dave = person(db, server, "carol", 103), person(db, server, "dave", 104)
    crowd = [add_message(db, person(db, server, f"user{i}", 200 + i), "to many chats") for i in range(10)]
    server.blocked_chats.add(103)
    env = telegram_env(server, JOBS_LOG_LEVEL="INFO", JOBS_TELEGRAM_GLOBAL_RATE="5")
    worker = processes.worker(concurrency=4, env=env)
    scheduler = processes.scheduler(env=env)
    server.fail_next("telegram.sendMessage", "rate_limit", retry_after=1)

    later = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    first, second = add_message(db, alice, "good morning"), add_message(db, alice, "see you", send_at=later)
    no_connection, blocked, rated = add_message(db, bob, "hi bob"), add_message(db, carol, "hi carol"), add_message(db, dave, "hi dave")
    with db.session() as session:  # another service writes a message with plain SQL: the fan-out finds it too
        plain = session.execute(text("INSERT INTO proactive_messages (user_id, text) VALUES (:u, 'via SQL') RETURNING id"),
                                {"u": dave}).scalar()
    wait_for(lambda: settled(db, 16), 30, f"every message settled, have {states(db)}")

    assert states(db) == {first: "sent", second: "sent", no_connection: "cancelled", blocked: "failed",
                          rated: "sent", plain: "sent", **dict.fromkeys(crowd, "sent")}
    assert sorted(m["text"] for m in server.messages[101]) == ["good morning", "see you"]
    assert sorted(m["text"] for m in server.messages[104]) == ["hi dave", "via SQL"]
    sent = {r.id: r for r in rows(db, "SELECT id, send_at, sent_at, send_started_at, telegram_message_id, failure_reason "
                                      "FROM proactive_messages")}
    assert sent[second].send_started_at >= later  # not before its time
    # One a second per chat (whichever went first: the 429 may have hit either).
    assert abs(sent[second].send_started_at - sent[first].send_started_at) >= timedelta(seconds=0.95)
    assert sent[no_connection].failure_reason == "no active Telegram connection"
    assert sent[blocked].failure_reason == "Forbidden: bot was blocked by the user"
    assert row(db, "SELECT is_active FROM telegram_connections WHERE user_id = :u", u=carol).is_active is False
    # The 429 was honoured: snoozed (no attempt spent), then sent, and only once.
    snoozed = rows(db, "SELECT e.job_id FROM job_executions e JOIN jobs j ON j.id = e.job_id "
                       "WHERE j.type = 'messages.send' AND e.state = 'snoozed'")
    assert len(snoozed) >= 1
    assert sum(len(v) for v in server.messages.values()) == 14  # the sent ones, once each
    # 5 sends a second per bot: 16 starts at least (two more for the 429 and the cancelled one)
    # cannot fit in under 2 s; without the limit they take about 0.2 s.
    starts = sorted(r.started_at for r in rows(db, "SELECT e.started_at FROM job_executions e JOIN jobs j "
                                                   "ON j.id = e.job_id WHERE j.type = 'messages.send'"))
    assert len(starts) >= 16 and starts[-1] - starts[0] >= timedelta(seconds=2)

    assert leaks(db, [server.telegram_token, server.telegram_token.split(":")[1]], [worker.log(), scheduler.log()]) == []


def test_a_send_with_an_unknown_outcome_after_a_crash_is_flagged_not_repeated(db, processes, platform_server):
    server = platform_server
    user = person(db, server, "erin", 500)
    env = telegram_env(server, JOBS_PLATFORM_TIMEOUT_SECONDS="30")
    worker = processes.worker(concurrency=1, env=env)
    processes.scheduler(env=env)
    server.fail_next("telegram.sendMessage", "hang", seconds=15)  # Telegram delivers; its answer never comes
    message = add_message(db, user, "only once")
    wait_for(lambda: server.requests("telegram.sendMessage"), 30, "the send is in flight")
    for pid in processes.pool_pids(worker):
        os.kill(pid, signal.SIGKILL)

    wait_for(lambda: row(db, "SELECT state FROM proactive_messages WHERE id = :m", m=message).state == "needs_review",
             60, "the message is flagged after the rescue")
    flagged = row(db, "SELECT state, failure_reason FROM proactive_messages WHERE id = :m", m=message)
    assert flagged.state == "needs_review" and "outcome is unknown" in flagged.failure_reason
    assert len(server.requests("telegram.sendMessage")) == 1 and len(server.messages[500]) == 1

    result = CliRunner().invoke(messages_cli, ["resolve", str(message), "sent"])
    assert result.exit_code == 0, result.output
    assert row(db, "SELECT state FROM proactive_messages WHERE id = :m", m=message).state == "sent"
