"""The console's jobs page at 1,000,000 finished rows: the query and the render, through the
real ASGI app (Starlette's TestClient, in process: no network in the figure), logged in as an
admin. The rows are made by one INSERT ... SELECT generate_series (1% failed, four queues).

Pages timed: the newest page unfiltered, failed jobs only, one queue, and a page deep in the
history (keyset `before=` the middle id). The figure is the slowest of their medians.
"""

from __future__ import annotations

import re
import statistics
import time

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from tests.history import fill_finished_jobs, history_inserts

ROWS = 1_000_000
SAMPLES = 20


def measure(bench: Bench) -> Results:
    from starlette.testclient import TestClient

    from console.app import create_app
    from shared.passwords import hash_password
    from shared.settings import load_settings

    bench.environment.reset_tables()
    database = bench.environment.database()
    started = time.monotonic()
    with database.session() as session:
        # History, not an enqueue: the insert guard (migration 0004) is off for this transaction.
        with history_inserts(session):
            fill_finished_jobs(session, ROWS)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE jobs"))
        middle = int(connection.execute(text("SELECT min(id) + count(*) / 2 FROM jobs")).scalar() or 0)
    bench.say(f"console: {ROWS} finished jobs written in {time.monotonic() - started:.1f} s")
    settings = load_settings(None, console_users=f"bench:admin:{hash_password('bench', n=2**10)}",
                             console_secret="b" * 40)
    try:
        client = TestClient(create_app(settings, database), follow_redirects=False)
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text)
        assert token, "no CSRF token on the login page"
        client.post("/login", data={"username": "bench", "password": "bench", "csrf_token": token.group(1)})
        pages = {"newest": "/jobs", "failed": "/jobs?state=failed", "queue": "/jobs?queue=low",
                 "deep": f"/jobs?before={middle}"}
        medians: dict[str, float] = {}
        samples: list[float] = []
        for name, path in pages.items():
            times = []
            client.get(path)  # warm the connection pool and the template cache
            for _ in range(SAMPLES):
                begin = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - begin) * 1000)
                assert answer.status_code == 200 and answer.text.count('<tr class="state-') == 50, (path, answer.status_code)
            medians[name] = round(statistics.median(times), 2)
            samples += times
        worst = max(medians.values())
        bench.say(f"console jobs page at {ROWS} rows, median ms: {medians}")
    finally:
        bench.environment.reset_tables()
    figure = Figure("console jobs page at 1M rows", "ms", [worst], target=("<=", 300.0),
                    method=f"slowest median of {SAMPLES} GETs of 4 jobs pages (newest, failed, one queue, deep keyset page), query and render, in process")
    return Results([figure], {"console_jobs_page_ms_at_1m": worst}, {"console_jobs_page": {"medians_ms": medians, "rows": ROWS}})
