"""`jobctl schedules`: list, add, change, enable, disable, run now and delete recurring schedules."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Callable, TypeVar

import click

from shared.cli.exits import as_click
from shared import schedules as api
from shared.db import Database, get_database
from shared.errors import PlatformError
from shared.jobtypes.registry import load_declarations
from shared.models.states import MisfirePolicy
from shared.runtime import with_runtime_urls
from shared.settings import get_settings
from shared.store.schedules import ScheduleRow

F = TypeVar("F", bound=Callable[..., Any])


def _database() -> Database:
    # Job types (and their payload models) come from JOBS_IMPORTS, as in every other process.
    settings = with_runtime_urls(get_settings())
    load_declarations(settings)
    return get_database(settings)


def _platform_errors(command: F) -> F:
    """Refusals print as one clear line (exit 2 for a refused argument, else 1), whoever invokes the command."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PlatformError as exc:
            raise as_click(exc) from None

    return wrapper  # type: ignore[return-value]


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _describe(row: ScheduleRow) -> str:
    state = "enabled" if row.enabled else "disabled"
    return (
        f"{row.name}: {row.cron} ({row.timezone}) -> {row.job_type} on {row.queue}, {state}, "
        f"misfire {row.misfire_policy}, next {_when(row.next_fire_at)}"
    )


@click.group("schedules")
def schedules() -> None:
    """Recurring schedules (cron, time zone, misfire policy)."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@_platform_errors
def list_command(as_json: bool) -> None:
    """Every schedule with its next fire time."""
    rows = api.list_schedules(database=_database())
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], default=str, indent=2))
        return
    if not rows:
        click.echo("no schedules")
    for row in rows:
        click.echo(f"{_describe(row)}, last {_when(row.last_fire_at)} [{row.source}]")


@schedules.command("add")
@click.argument("name")
@click.option("--type", "job_type", required=True, help="Declared job type, e.g. proxies.check_all.")
@click.option("--cron", required=True, help="5 fields, or 6 with seconds first ('*/10 * * * * *').")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone, e.g. Europe/Berlin.")
@click.option("--payload", default="{}", show_default=True, help="JSON object, validated against the type.")
@click.option("--queue", default=None, help="Default: the job type's queue.")
@click.option("--priority", type=int, default=None, help="0 (first) to 9; default: the job type's.")
@click.option("--misfire", type=click.Choice([p.value for p in MisfirePolicy]), default=MisfirePolicy.RUN_ONCE.value,
              show_default=True, help="What to do with fires missed while no scheduler ran.")
@click.option("--catch-up-limit", type=int, default=1, show_default=True, help="catch_up: most missed fires to run.")
@click.option("--jitter", type=float, default=0.0, show_default=True, help="Spread each run over [0, jitter) s.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@_platform_errors
def add_command(
    name: str, job_type: str, cron: str, timezone: str, payload: str, queue: str | None, priority: int | None,
    misfire: str, catch_up_limit: int, jitter: float, disabled: bool,
) -> None:
    """Create a schedule NAME."""
    try:
        values = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    row = api.add_schedule(
        name, job_type, cron, timezone=timezone, payload=values, queue=queue, priority=priority, misfire=misfire,
        catch_up_limit=catch_up_limit, jitter=jitter, enabled=not disabled, database=_database(),
    )
    click.echo(f"added {_describe(row)}")


@schedules.command("set-cron")
@click.argument("name")
@click.argument("cron")
@click.option("--timezone", default=None, help="Change the zone too.")
@_platform_errors
def set_cron_command(name: str, cron: str, timezone: str | None) -> None:
    """Change the cron expression of NAME; the next fire is recomputed from now."""
    click.echo(f"changed {_describe(api.set_cron(name, cron, timezone, database=_database()))}")


@schedules.command("enable")
@click.argument("name")
@_platform_errors
def enable_command(name: str) -> None:
    """Enable NAME from its next future fire."""
    click.echo(f"enabled {_describe(api.enable_schedule(name, database=_database()))}")


@schedules.command("disable")
@click.argument("name")
@_platform_errors
def disable_command(name: str) -> None:
    """Disable NAME (it keeps its definition)."""
    click.echo(f"disabled {_describe(api.disable_schedule(name, database=_database()))}")


@schedules.command("run-now")
@click.argument("name")
@_platform_errors
def run_now_command(name: str) -> None:
    """Enqueue one job of NAME now, outside its cron."""
    click.echo(f"enqueued job {api.run_schedule_now(name, database=_database())}")


@schedules.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_platform_errors
def delete_command(name: str, yes: bool) -> None:
    """Delete NAME (the jobs it made stay)."""
    if not yes:
        click.confirm(f"delete schedule {name}?", abort=True)
    api.delete_schedule(name, database=_database())
    click.echo(f"deleted {name}")
