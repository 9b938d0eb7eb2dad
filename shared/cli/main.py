"""The `jobctl` command group."""

from __future__ import annotations

import os
import sys

import click

from shared.errors import PlatformError
from shared.cli.doctor import doctor
from shared.cli.up import up
from shared.runtime import with_runtime_urls
from shared.settings import get_settings


@click.group()
def cli() -> None:
    """Operate the job platform."""


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    from shared import migrate as migrations

    settings = with_runtime_urls(get_settings())
    if not settings.database_url:
        raise click.ClickException("JOBS_DATABASE_URL is not set")
    migrations.upgrade(settings.database_url)
    click.echo(f"database at revision {migrations.current_revision(settings.database_url)}")


@cli.command()
def flower() -> None:
    """Run Flower on the platform's broker (basic auth from JOBS_FLOWER_BASIC_AUTH)."""
    settings = with_runtime_urls(get_settings())
    argv = [sys.executable, "-m", "celery", "-A", "worker.app:app", "flower", f"--port={settings.flower_port}",
            "--address=0.0.0.0"]
    if settings.flower_basic_auth:
        argv.append(f"--basic-auth={settings.flower_basic_auth}")
    env = dict(os.environ, JOBS_BROKER_URL=settings.broker_url or "", JOBS_DATABASE_URL=settings.database_url or "")
    os.execvpe(argv[0], argv, env)


@cli.command("settings")
def settings_reference() -> None:
    """Print the settings reference (Markdown), as in docs/settings.md."""
    from shared.settings_doc import settings_markdown

    click.echo(settings_markdown(), nl=False)


cli.add_command(up)
cli.add_command(doctor)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except PlatformError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
