"""`jobctl stats`: the platform at a glance, straight from PostgreSQL.

Per queue: active jobs by state, the oldest waiting job, and the jobs that ended in the last N
minutes by outcome (throughput); then the job types that failed for good in that window, with
their latest error; then the live worker processes. The same figures Prometheus gets, without
Prometheus.
"""

from __future__ import annotations

from typing import Any

import click

from shared.models.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES
from shared.settings import get_settings
from shared.store import operations as ops
from shared.cli.operator import database, emit_json, json_option, refusals_as_errors, table

QUEUE_COLUMNS = ("queue", *ACTIVE_JOB_STATES, "oldest_waiting_seconds", *TERMINAL_JOB_STATES, "per_minute")
FAILURE_COLUMNS = ("queue", "type", "failed", "last_failed_at", "last_error")


def gather(minutes: int, failure_limit: int = 20) -> dict[str, Any]:
    """Every figure of the report, as plain data (what --json prints)."""
    with database().session() as session:
        overview = ops.queue_overview(session)
        names = [q.name for q in overview]
        finished = ops.finished_since(session, names, minutes)
        failures = ops.failures_since(session, names, minutes, failure_limit)
        alive = ops.count_live_workers(session, get_settings().worker_stale_after_seconds)
    queues: list[dict[str, Any]] = []
    for queue in overview:
        ended = {state: finished.get((queue.name, state), 0) for state in TERMINAL_JOB_STATES}
        queues.append({
            "name": queue.name,
            "paused": queue.paused,
            "depth": queue.counts(),
            "oldest_waiting_seconds": round(queue.oldest_waiting_seconds(), 3),
            "finished": ended,
            "throughput_per_minute": round(sum(ended.values()) / minutes, 3),
        })
    totals: dict[str, Any] = {
        "depth": {str(s): sum(q["depth"][s] for q in queues) for s in ACTIVE_JOB_STATES},
        "finished": {s: sum(q["finished"][s] for q in queues) for s in TERMINAL_JOB_STATES},
    }
    totals["throughput_per_minute"] = round(sum(totals["finished"].values()) / minutes, 3)
    return {
        "at": overview[0].now if overview else None,
        "window_minutes": minutes,
        "queues": queues,
        "totals": totals,
        "failures": failures,
        "workers_alive": alive,
    }


@click.command()
@click.option("--minutes", "-m", type=click.IntRange(1, 7 * 24 * 60), default=15, show_default=True,
              help="Window for throughput and failures.")
@click.option("--failures", "failure_limit", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Most failing (queue, type) pairs listed.")
@json_option
@refusals_as_errors
def stats(minutes: int, failure_limit: int, as_json: bool) -> None:
    """Depth by state, throughput, failures and oldest waiting job, per queue."""
    report = gather(minutes, failure_limit)
    if as_json:
        emit_json(report)
        return
    rows = [
        {"queue": q["name"] + (" (paused)" if q["paused"] else ""), **q["depth"],
         "oldest_waiting_seconds": q["oldest_waiting_seconds"], **q["finished"], "per_minute": q["throughput_per_minute"]}
        for q in report["queues"]
    ]
    rows.append({"queue": "all", **report["totals"]["depth"], **report["totals"]["finished"],
                 "per_minute": report["totals"]["throughput_per_minute"]})
    click.echo(f"jobs by queue (finished: last {minutes} min)")
    click.echo(table(rows, QUEUE_COLUMNS))
    click.echo(f"\nfailed for good in the last {minutes} min")
    click.echo(table(report["failures"], FAILURE_COLUMNS, widths={"last_error": 60}) if report["failures"] else "none")
    click.echo(f"\nworker processes alive: {report['workers_alive']}")
