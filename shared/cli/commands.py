"""The `jobctl` command group (the entry point, with its error handling, is `shared.cli.main`)."""

from __future__ import annotations

import click

from shared.errors import ConfigurationError
from shared.cli.console import console
from shared.cli.doctor import doctor
from shared.cli.flower import flower
from shared.cli.jobs import jobs
from shared.cli.queues import queues
from shared.cli.schedules import schedules
from shared.cli.stats import stats
from shared.cli.up import up
from shared.cli.workloads import accounts, messages, posts, proxies, users
from shared.runtime import with_runtime_urls
from shared.settings import get_settings


@click.group(epilog="Errors print as one line; --debug (anywhere on the line) adds the traceback.")
def cli() -> None:
    """Operate the job platform."""


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    from shared import migrate as migrations

    settings = with_runtime_urls(get_settings())
    if not settings.database_url:
        raise ConfigurationError("JOBS_DATABASE_URL is not set and no `jobctl up` is running")
    migrations.upgrade(settings.database_url)
    click.echo(f"database at revision {migrations.current_revision(settings.database_url)}")


@cli.command("settings")
def settings_reference() -> None:
    """Print the settings reference (Markdown), as in docs/settings.md."""
    from shared.settings_doc import settings_markdown

    click.echo(settings_markdown(), nl=False)


cli.add_command(up)
cli.add_command(console)
cli.add_command(doctor)
cli.add_command(flower)
cli.add_command(jobs)
cli.add_command(queues)
cli.add_command(stats)
cli.add_command(schedules)
cli.add_command(users)
cli.add_command(proxies)
cli.add_command(accounts)
cli.add_command(posts)
cli.add_command(messages)

