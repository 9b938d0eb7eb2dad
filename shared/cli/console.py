"""`jobctl console`: the operator web console; `jobctl console hash-password`: a user's hash.

The app lives in the top-level `console` package, which `shared` must not import (the console
sits on top of shared, not inside it), so it is handed to uvicorn by name.
"""

from __future__ import annotations

import click

from shared.passwords import hash_password
from shared.runtime import with_runtime_urls
from shared.settings import get_settings

APP = "console.app:create_app"


@click.group(invoke_without_command=True)
@click.option("--address", default=None, help="Address to listen on (default: JOBS_CONSOLE_ADDRESS, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: JOBS_CONSOLE_PORT, 5580).")
@click.pass_context
def console(ctx: click.Context, address: str | None, port: int | None) -> None:
    """Serve the operator console (log in with a user of JOBS_CONSOLE_USERS)."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    import uvicorn

    settings = with_runtime_urls(get_settings())
    if settings.database_url:
        # The app reads the settings itself: hand it the URL `jobctl up` wrote, if any.
        os.environ["JOBS_DATABASE_URL"] = settings.database_url
        get_settings.cache_clear()
    if not settings.console_users:
        click.echo("warning: JOBS_CONSOLE_USERS is empty: nobody can log in (see `jobctl console hash-password`)", err=True)
    uvicorn.run(APP, factory=True, host=address or settings.console_address, port=port or settings.console_port,
                log_level="warning", proxy_headers=False)


@console.command("hash-password")
def hash_password_command() -> None:
    """Read a password (prompt, or stdin when piped) and print its hash for JOBS_CONSOLE_USERS."""
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("the password is empty")
    click.echo(hash_password(password))
