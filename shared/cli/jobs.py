"""`jobctl jobs`: list, show, retry and cancel jobs.

Reads go through the store's operator statements, actions through the control API, so the CLI
changes jobs exactly as a service calling `shared.control` would.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

import click

from shared import control
from shared.errors import PlatformError, UnknownQueue
from shared.models.states import JobState
from shared.store import operations as ops
from shared.store import queues as queue_store
from shared.store.rows import Executor
from shared.cli.operator import TIME, cell, database, emit_json, json_option, pairs, refusals_as_errors, table

LIST_COLUMNS = ("id", "type", "queue", "state", "priority", "attempt", "created_at", "finished_at", "last_error")
EXECUTION_COLUMNS = ("attempt", "state", "worker_id", "started_at", "finished_at", "error_class", "error_message")


@click.group()
def jobs() -> None:
    """List, inspect, retry and cancel jobs."""


def check_queues(session: Executor, names: tuple[str, ...]) -> None:
    """A filter naming a queue that does not exist is a typo, not an empty result."""
    known = {q.name for q in queue_store.list_queues(session)}
    for name in names:
        if name not in known:
            raise UnknownQueue(f"unknown queue {name!r} (known: {', '.join(sorted(known)) or 'none'})", field="queue")


@jobs.command("list")
@click.option("--queue", "-q", "queues", multiple=True, help="Only jobs of this queue (repeatable).")
@click.option("--type", "-t", "types", multiple=True, help="Only jobs of this type, e.g. proxies.check (repeatable).")
@click.option("--state", "-s", "states", multiple=True, type=click.Choice([s.value for s in JobState]),
              help="Only jobs in this state (repeatable).")
@click.option("--since", type=TIME,
              help="Created at or after: ISO 8601 (UTC unless an offset is given) or an age: 90s, 15m, 2h, 3d.")
@click.option("--until", type=TIME, help="Created before (same forms as --since).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Most jobs listed, newest first.")
@json_option
@refusals_as_errors
def list_jobs(
    queues: tuple[str, ...], types: tuple[str, ...], states: tuple[str, ...], since: datetime | None,
    until: datetime | None, limit: int, as_json: bool,
) -> None:
    """List jobs, newest first, filtered by queue, type, state and creation time."""
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    where = ops.JobFilter(queues=queues, types=types, states=states, since=since, until=until, limit=limit)
    with database().session() as session:
        check_queues(session, queues)
        rows = ops.find_jobs(session, where)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["attempt"] = f"{row['attempt']}/{row['max_attempts']}"
    click.echo(table(rows, LIST_COLUMNS, widths={"last_error": 60}) if rows else "no jobs match")


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--logs", "log_limit", type=click.IntRange(0, 100_000), default=200, show_default=True,
              help="Most log lines shown (0: none).")
@click.option("--tracebacks", is_flag=True, help="Also print the traceback of each failed attempt.")
@json_option
@refusals_as_errors
def show(job_id: int, log_limit: int, tracebacks: bool, as_json: bool) -> None:
    """Show one job: its fields, every execution (attempt) and its log lines."""
    db = database()
    view = control.get_job(job_id, database=db)
    logs = control.job_logs(job_id, limit=log_limit, database=db) if log_limit else []
    if as_json:
        emit_json({"job": view.job, "executions": view.executions, "logs": logs})
        return
    click.echo(pairs(_job_lines(view.job)))
    click.echo(f"\nexecutions ({len(view.executions)})")
    if view.executions:
        click.echo(table(view.executions, EXECUTION_COLUMNS, widths={"error_message": 60}))
    if tracebacks:
        for execution in view.executions:
            if execution.get("traceback"):
                click.echo(f"\ntraceback of attempt {execution['attempt']}:\n{execution['traceback'].rstrip()}")
    click.echo(f"\nlogs ({len(logs)})")
    for line in logs:
        click.echo(f"{cell(line['at'])}  #{line['attempt']}  {line['level']:<8} {line['message']}")


def _job_lines(job: dict[str, Any]) -> list[tuple[str, Any]]:
    shown = ("id", "type", "queue", "state", "priority", "attempt", "max_attempts", "created_at", "run_at",
             "dispatched_at", "started_at", "finished_at", "worker_id", "progress", "last_error", "cancel_reason",
             "unique_key", "limit_key", "schedule_id", "fire_time")
    lines = [(name, job.get(name)) for name in shown if name in job]
    lines.append(("payload", json.dumps(job.get("payload"), sort_keys=True)))
    if job.get("metadata"):
        lines.append(("metadata", json.dumps(job["metadata"], sort_keys=True)))
    return lines


def _act_on_each(job_ids: tuple[int, ...], act: Callable[[int], object], done: str) -> None:
    """Apply `act` to every id; report each; exit 1 if any was refused (the others still happen)."""
    db = database()
    refused = 0
    for job_id in job_ids:
        try:
            act(job_id)
            state = control.get_job(job_id, database=db).state
        except PlatformError as exc:
            refused += 1
            click.echo(f"Error: {exc}", err=True)
        else:
            click.echo(f"job {job_id} {done}: now {state}")
    if refused:
        raise click.exceptions.Exit(1)


@jobs.command("retry")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@refusals_as_errors
def retry(job_ids: tuple[int, ...]) -> None:
    """Queue failed or cancelled jobs again, each allowed one more attempt."""
    db = database()
    _act_on_each(job_ids, lambda job_id: control.retry_job(job_id, database=db), "retried")


@jobs.command("cancel")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@click.option("--reason", default="cancelled by operator", show_default=True, help="Recorded on the job.")
@refusals_as_errors
def cancel(job_ids: tuple[int, ...], reason: str) -> None:
    """Cancel jobs that have not started yet."""
    db = database()
    _act_on_each(job_ids, lambda job_id: control.cancel_job(job_id, reason, database=db), "cancelled")
