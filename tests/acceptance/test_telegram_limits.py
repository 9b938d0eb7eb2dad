"""Telegram's limits at full speed, on the Bot API server's own clock: never more than 30
sends in any sliding second per bot, never two to one chat within a second, and close to 30 a
second when enough chats have messages waiting."""
# ruff: noqa: F811

from __future__ import annotations

import pytest

from tests.acceptance.test_workload_messages import settled, telegram_env
from tests.processes import wait_for
from tests.rigs.platform_server import PlatformServer, platform_server  # noqa: F401
from tests.rigs.send_timing import busiest_window, gaps_per_key, overall_rate, sustained_rate
from tests.workload_data import add_message, add_user, connect

pytestmark = pytest.mark.acceptance

CHATS, PER_CHAT = 40, 6  # 30/s needs at least 30 chats: each takes one a second at most


def test_sends_keep_the_sliding_second_and_the_chat_interval_at_close_to_thirty_a_second(db, processes, platform_server):
    server: PlatformServer = platform_server
    users = [add_user(db, f"fan{i}") for i in range(CHATS)]
    for i, user in enumerate(users):
        connect(db, user, 7000 + i, server.telegram_token)
    for user in users:  # grouped by chat, the order that starves a naive pacer
        for n in range(PER_CHAT):
            add_message(db, user, f"note {n}")
    env = telegram_env(server, JOBS_PLATFORM_TIMEOUT_SECONDS="10")
    processes.worker(queues="high,io.high", concurrency=24, env=env)  # sends travel in the IO lane
    processes.scheduler(env=env)

    total = CHATS * PER_CHAT
    wait_for(lambda: settled(db, total), 120, "every message sent",
             on_timeout=lambda: f"{len(server.requests('telegram.sendMessage'))} requests")

    sends = server.requests("telegram.sendMessage")
    assert len(sends) == total and sum(len(m) for m in server.messages.values()) == total  # each once
    times = [request.received_at for request in sends]
    gaps = gaps_per_key([(request.body["chat_id"], request.received_at) for request in sends])
    rate = sustained_rate(times)
    print(f"\n{total} sends to {CHATS} chats: {rate:.1f}/s sustained ({overall_rate(times):.1f}/s first to last), "
          f"busiest second {busiest_window(times)}, "
          f"smallest chat gap {min(gaps):.3f} s")
    assert busiest_window(times) <= 30
    assert min(gaps) >= 1.0
    assert rate >= 24.0
