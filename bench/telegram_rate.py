"""`telegram_send_rate`: 1,000 proactive messages to 200 chats (one bot) against a local
Bot-API-compatible server (tests/rigs/platform_server.py), on the server's own clock.

Messages are created pending (five per chat, each chat's together), one `messages.send_due`
fans them out, and the IO worker class (one process of WORKER_SLOTS threads consuming
`io.high`, as `jobctl up` starts it) sends them. Figures, from the
server's receipt times: the sustained rate (sends per second between the 10th and the 90th
percentile receipt: without the workers' start and the last chats' tail; the first-to-last
rate is kept too), the sliding one-second windows [t, t + 1 s) holding more than 30 sends, and
the gaps between two sends to one chat under 1.0 s.
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from bench.connections import held
from bench.processes import wait_for

MESSAGES, CHATS = 1000, 200
WORKER_SLOTS = 24
LIMIT = 30


def measure(bench: Bench) -> Results:
    from shared.enqueue import enqueue_now
    from shared.jobtypes.registry import io_lane
    from shared.workloads import messages as message_service
    from tests.rigs.platform_server import PlatformServer
    from tests.rigs.send_timing import busiest_window, gaps_per_key, overall_rate, sustained_rate, windows_over

    database = bench.environment.database()
    bench.environment.reset_tables()
    server = PlatformServer().start()
    try:
        with database.session() as session:
            for chat in range(CHATS):
                user = message_service.add_user(session, external_id=f"bench-{chat}")
                message_service.connect_telegram(session, user_id=user.id, chat_id=900_000 + chat,
                                                 bot_token=server.telegram_token)
                for n in range(MESSAGES // CHATS):
                    message_service.create_message(session, user_id=user.id, text=f"bench message {n}")
        env = {"JOBS_TELEGRAM_API_BASE_URL": server.telegram_base, "JOBS_PLATFORM_TIMEOUT_SECONDS": "10"}
        worker = bench.processes.spawn("platform-telegram-worker", [
            sys.executable, "-m", "celery", "-A", "worker.app:app", "worker", "-P", "threads", "-c", str(WORKER_SLOTS),
            "-Q", io_lane("high"), "-n", f"bench-telegram-{time.time_ns()}@%h", "--loglevel=WARNING",
            "--without-mingle", "--without-gossip"], env)
        wait_for(lambda: worker.check_alive() or held(database, worker.pid), 60, "worker connected")
        scheduler = bench.processes.scheduler(env)
        try:
            enqueue_now("messages.send_due")
            wait_for(lambda: _sent(database) >= MESSAGES, 600, "every message sent", interval=0.2)
        finally:
            bench.stop(worker, scheduler)
        sends = server.requests("telegram.sendMessage")
    finally:
        server.stop()
    times = [r.received_at for r in sends]
    gaps = gaps_per_key([(r.body["chat_id"], r.received_at) for r in sends])
    rate, overall = sustained_rate(times), overall_rate(times)
    over, short = windows_over(times, LIMIT), sum(1 for gap in gaps if gap < 1.0)
    bench.say(f"telegram: {len(sends)} sends, sustained {rate:.1f}/s (first to last {overall:.1f}/s), busiest "
              f"second {busiest_window(times)}, windows over {LIMIT}: {over}, chat gaps under 1 s: {short} "
              f"(smallest {min(gaps):.3f} s)")
    method = f"{MESSAGES} messages to {CHATS} chats, one bot, threads worker x {WORKER_SLOTS}, server receipt times"
    figures = [
        Figure("telegram sustained rate", "msgs/s", [rate], target=(">=", 27.0),
               method="sends/s between the 10th and 90th percentile receipts; " + method),
        Figure("telegram first-to-last rate", "msgs/s", [overall], method=method),
        Figure("sliding seconds over 30", "windows", [float(over)], target=("<=", 0.0), method=method),
        Figure("chat gaps under 1.0 s", "gaps", [float(short)], target=("<=", 0.0), method=method),
    ]
    summary = {"telegram_send_rate": rate, "telegram_first_to_last_rate": overall,
               "telegram_windows_over_30": over, "telegram_chat_gaps_under_1s": short}
    raw = {"telegram_send_rate": {"sends": len(sends), "busiest_second": busiest_window(times),
                                  "smallest_chat_gap": min(gaps)}}
    return Results(figures, summary, raw)


def _sent(database) -> int:  # type: ignore[no-untyped-def]
    with database.session() as session:
        return int(session.execute(text("SELECT count(*) FROM proactive_messages WHERE state <> 'pending'")).scalar() or 0)
