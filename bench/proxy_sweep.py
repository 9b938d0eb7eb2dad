"""`proxy_sweep_ratio_vs_asyncio`: a sweep of 2,000 real proxies on loopback (70% healthy, half
plain HTTP and half SOCKS5 with a password; 20% refusing; 10% stalling past the deadline)
through the platform, against a plain asyncio checker (bench/asyncio_checker.py) with the same
proxies, deadline and concurrency in one process.

Platform: the proxies are rows; a worker of the IO worker class (`-P threads`, SLOTS threads)
consumes `io.low`, the lane of the IO-bound proxy types; one
`proxies.check_all` starts the sweep, which becomes ceil(2000 / BATCH) `proxies.check_batch`
jobs, each checking PER_BATCH proxies at once: SLOTS x PER_BATCH = the asyncio checker's
concurrency. Its time is from enqueueing `proxies.check_all` to the sweep's row finished (every
proxy's check recorded, health logs and scores written). Asyncio: from the first connection to
the last result, results in memory only. The ratio is asyncio time / platform time (>= 0.7).
"""

from __future__ import annotations

import asyncio
import math
import time

from sqlalchemy import text

from bench import asyncio_checker
from bench.context import Bench, Figure, Results
from bench.connections import held, threads_worker
from bench.processes import wait_for

PROXIES = 2000
DEADLINE = 3.0
SLOTS, PER_BATCH = 4, 50
BATCH = math.ceil(PROXIES / SLOTS)  # one batch per worker process: every batch runs at once
CONCURRENCY = SLOTS * PER_BATCH
INTERVAL = 300.0  # the default sweep interval (JOBS_PROXY_CHECK_CRON "*/5 * * * *")


def measure(bench: Bench) -> Results:
    from shared.enqueue import enqueue_now
    from shared.jobtypes.registry import io_lane
    from shared.workloads import proxies as proxy_service
    from tests.rigs.proxy_fleet import ProxyFleet

    healthy, refusing = PROXIES * 70 // 100, PROXIES * 20 // 100
    stalling = PROXIES - healthy - refusing
    database = bench.environment.database()
    bench.environment.reset_tables()
    with ProxyFleet(http=healthy // 2, socks5=healthy - healthy // 2, refusing=refusing, stalling=stalling,
                    log_dir=bench.environment.log_dir) as fleet:
        proxies = fleet.proxies
        bench.say(f"fleet: {len(proxies)} proxies ({sum(p.kind == 'healthy' for p in proxies)} healthy, "
                  f"{refusing} refusing, {stalling} stalling)")
        targets = [asyncio_checker.Target(p.type, p.host, p.port, p.username, p.password) for p in proxies]
        started = time.perf_counter()
        results = asyncio.run(asyncio_checker.sweep(targets, fleet.check_url, DEADLINE, CONCURRENCY))
        asyncio_seconds = time.perf_counter() - started
        bench.say(f"asyncio checker: {asyncio_seconds:.1f} s, {sum(results)} healthy")

        with database.session() as session:
            for p in proxies:
                proxy_service.add_proxy(session, type=p.type, host=p.host, port=p.port, username=p.username,
                                        password=p.password)
        env = {"JOBS_PROXY_CHECK_URL": fleet.check_url, "JOBS_PROXY_CONNECT_TIMEOUT_SECONDS": str(DEADLINE),
               "JOBS_PROXY_TOTAL_TIMEOUT_SECONDS": str(DEADLINE), "JOBS_PROXY_CHECK_BATCH_SIZE": str(BATCH),
               "JOBS_PROXY_CHECK_CONCURRENCY": str(PER_BATCH)}
        worker = threads_worker(bench, "platform-proxy-worker", io_lane("low"), SLOTS, env)
        scheduler = bench.processes.scheduler(env)
        wait_for(lambda: held(database, scheduler.pid), 60, "scheduler connected")
        try:
            started = time.perf_counter()
            enqueue_now("proxies.check_all")
            wait_for(lambda: _finished(database), 600, "the platform's sweep finished", interval=0.05)
            platform_seconds = time.perf_counter() - started
            with database.session() as session:
                sweep = session.execute(text(
                    "SELECT total, checked, healthy, extract(epoch FROM finished_at - started_at) AS seconds "
                    "FROM proxy_sweeps")).one()
                batches = [tuple(round(float(v), 2) if v is not None else None for v in r) for r in session.execute(text(
                    "SELECT extract(epoch FROM e.started_at - s.started_at), extract(epoch FROM e.finished_at - e.started_at) "
                    "FROM job_executions e JOIN jobs j ON j.id = e.job_id CROSS JOIN proxy_sweeps s "
                    "WHERE j.type = 'proxies.check_batch' ORDER BY e.started_at"))]
        finally:
            bench.stop(worker, scheduler)
    bench.say(f"platform sweep: {platform_seconds:.1f} s (row: {sweep.seconds:.1f} s), {sweep.healthy} healthy; "
              f"batches (start after the sweep's, duration): {batches}")
    ratio = asyncio_seconds / platform_seconds
    method = (f"{PROXIES} loopback proxies (70% healthy http/socks5+password, 20% refusing, 10% stalling), "
              f"deadline {DEADLINE:g} s, concurrency {CONCURRENCY} ({SLOTS} worker threads x {PER_BATCH} check threads)")
    figures = [
        Figure("asyncio sweep", "s", [asyncio_seconds], method="plain asyncio checker, one process, " + method),
        Figure("platform sweep", "s", [platform_seconds], method="check_all enqueued to sweep finished, " + method),
        Figure("sweep ratio vs asyncio", "x", [ratio], target=(">=", 0.7), method="asyncio time / platform time"),
        Figure("platform checks/s", "checks/s", [PROXIES / platform_seconds], method="proxies / platform sweep time"),
        Figure("sweep / interval", "share", [platform_seconds / INTERVAL], target=("<=", 1.0),
               method=f"platform sweep time / {INTERVAL:g} s (the default interval)"),
    ]
    summary = {"proxy_sweep_ratio_vs_asyncio": ratio, "proxy_sweep_seconds": platform_seconds,
               "proxy_sweep_asyncio_seconds": asyncio_seconds, "proxy_sweep_checks_per_s": PROXIES / platform_seconds}
    raw = {"proxy_sweep": {"proxies": PROXIES, "deadline": DEADLINE, "concurrency": CONCURRENCY, "batch": BATCH,
                           "asyncio_healthy": sum(results), "platform_healthy": sweep.healthy,
                           "platform_row_seconds": float(sweep.seconds), "batches_start_and_seconds": batches}}
    return Results(figures, summary, raw)



def _finished(database) -> bool:  # type: ignore[no-untyped-def]
    with database.session() as session:
        return bool(session.execute(text("SELECT count(*) FROM proxy_sweeps WHERE finished_at IS NOT NULL")).scalar())
