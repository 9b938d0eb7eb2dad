"""`jobctl queues`: list queues with their backlog; pause and resume them.

A pause takes effect at once: the dispatcher skips a paused queue, so nothing more of it reaches
the broker (jobs already there or running finish).
"""

from __future__ import annotations

from typing import Any

import click

from shared import control
from shared.models.states import ACTIVE_JOB_STATES
from shared.store import operations as ops
from shared.cli.operator import database, emit_json, json_option, refusals_as_errors, table

COLUMNS = ("name", "paused", *ACTIVE_JOB_STATES, "oldest_waiting_seconds", "dispatch_window", "concurrency_limit", "rate")


@click.group()
def queues() -> None:
    """List, pause and resume queues."""


def queue_rows() -> list[dict[str, Any]]:
    with database().session() as session:
        overview = ops.queue_overview(session)
    return [_row(q) for q in overview]


def _row(queue: ops.QueueOverview) -> dict[str, Any]:
    rate = None if queue.rate_limit is None else f"{queue.rate_limit}/{queue.rate_period_seconds:g}s"
    return {
        "name": queue.name,
        "paused": queue.paused,
        **queue.counts(),
        "oldest_waiting_seconds": round(queue.oldest_waiting_seconds(), 3),
        "dispatch_window": queue.dispatch_window,
        "concurrency_limit": queue.concurrency_limit,
        "rate_limit": queue.rate_limit,
        "rate_period_seconds": queue.rate_period_seconds,
        "rate": rate,
        "retention_seconds": queue.retention_seconds,
    }


@queues.command("list")
@json_option
@refusals_as_errors
def list_queues(as_json: bool) -> None:
    """Every queue: paused or not, its active jobs by state, its oldest waiting job (seconds since
    due), and its limits (- means the default window, no limit)."""
    rows = queue_rows()
    if as_json:
        emit_json([{k: v for k, v in row.items() if k != "rate"} for row in rows])
    else:
        click.echo(table(rows, COLUMNS) if rows else "no queues")


@queues.command("pause")
@click.argument("name")
@refusals_as_errors
def pause(name: str) -> None:
    """Stop dispatching the queue's jobs until it is resumed."""
    control.pause_queue(name, database=database())
    click.echo(f"queue {name} paused")


@queues.command("resume")
@click.argument("name")
@refusals_as_errors
def resume(name: str) -> None:
    """Dispatch the queue's jobs again."""
    control.resume_queue(name, database=database())
    click.echo(f"queue {name} resumed")
