"""`jobctl flower`: Flower on the platform's broker, behind basic auth.

Outside development Flower never starts without credentials (the settings refuse
`JOBS_ENV=production` without `JOBS_FLOWER_BASIC_AUTH`, and this command checks again). It
listens on `JOBS_FLOWER_ADDRESS`, loopback by default; any other address needs credentials.
Its `/metrics` is behind the same auth as its pages (`shared/cli/flower_process.py`). The credentials reach Flower as its
`FLOWER_BASIC_AUTH` environment variable, Flower's own equivalent of `--basic-auth`, because a
command line is readable by every user of the host (`ps`) and an environment is not. Events are
enabled explicitly: Flower's task list is built from the workers' task events.
"""

from __future__ import annotations

import ipaddress
import os
import sys

import click

from shared.cli.exits import as_click
from shared.errors import ConfigurationError
from shared.runtime import with_runtime_urls
from shared.settings import ENV_PREFIX, Settings, load_settings


def flower_command(
    settings: Settings, port: int | None = None, address: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run Flower for these settings; refuses an unsafe set-up."""
    if not settings.flower_basic_auth and settings.env != "development":
        raise ConfigurationError(
            f"{ENV_PREFIX}FLOWER_BASIC_AUTH (user:password) is required when {ENV_PREFIX}ENV is {settings.env}"
        )
    if not settings.broker_url:
        raise ConfigurationError(f"{ENV_PREFIX}BROKER_URL is not set and no `jobctl up` is running")
    bind = address or settings.flower_address
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        raise ConfigurationError(f"--address must be an IP address to listen on; got {bind!r}") from None
    if not settings.flower_basic_auth and not loopback:
        raise ConfigurationError(
            f"Flower listens on {bind} only with {ENV_PREFIX}FLOWER_BASIC_AUTH (user:password) set; without it, on loopback"
        )
    argv = [
        sys.executable, "-m", "shared.cli.flower_process", "-A", "worker.app:app", "flower",
        f"--port={port or settings.flower_port}", f"--address={bind}", "--enable_events=True",
    ]
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    env[f"{ENV_PREFIX}BROKER_URL"] = settings.broker_url
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.database_url or ""
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    return argv, env


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: JOBS_FLOWER_PORT).")
@click.option("--address", default=None,
              help="Address to listen on (default: JOBS_FLOWER_ADDRESS, 127.0.0.1; another one needs credentials).")
def flower(port: int | None, address: str | None) -> None:
    """Run Flower on the platform's broker, with basic auth from JOBS_FLOWER_BASIC_AUTH."""
    try:
        argv, env = flower_command(with_runtime_urls(load_settings()), port, address)
    except ConfigurationError as exc:
        raise as_click(exc) from None
    if "FLOWER_BASIC_AUTH" not in env:
        bind = next(a.split("=", 1)[1] for a in argv if a.startswith("--address="))
        click.echo(f"warning: Flower runs without authentication (development), listening on {bind}", err=True)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    from shared.cli.main import main

    main(["flower", *sys.argv[1:]])  # through jobctl's entry point: its errors read as one line
