"""`jobctl doctor`: is the platform's environment sound? The exit code says."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
from kombu import Connection
from sqlalchemy import create_engine, pool, text

from shared import migrate
from shared.runtime import mask_url, with_runtime_urls
from shared.settings import Settings, load_settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_database(settings: Settings) -> list[Check]:
    if not settings.database_url:
        return [Check("database", False, "JOBS_DATABASE_URL is not set and no `jobctl up` is running")]
    engine = create_engine(settings.database_url, poolclass=pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        return [Check("database", False, f"{mask_url(settings.database_url)}: {str(exc).splitlines()[0]}")]
    finally:
        engine.dispose()
    checks = [Check("database", True, f"{mask_url(settings.database_url)} (PostgreSQL {version})")]
    current, head = migrate.current_revision(settings.database_url), migrate.head_revision(settings.database_url)
    checks.append(Check("migrations", current == head, f"at {current or 'nothing'}, head is {head}"))
    return checks


def check_broker(settings: Settings) -> Check:
    if not settings.broker_url:
        return Check("broker", False, "JOBS_BROKER_URL is not set and no `jobctl up` is running")
    try:
        with Connection(settings.broker_url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
            version = _broker_version(connection)
    except Exception as exc:  # noqa: BLE001
        return Check("broker", False, f"{mask_url(settings.broker_url)}: {exc}")
    return Check("broker", True, f"{mask_url(settings.broker_url)} ({version})")


def _broker_version(connection: Connection) -> str:
    if str(connection.transport_cls).startswith("redis"):
        client = connection.default_channel.client
        return f"Redis {client.info('server').get('redis_version', '?')}"
    properties = getattr(connection.connection, "server_properties", {}) or {}
    product = properties.get("product", "AMQP broker")
    return f"{product} {properties.get('version', '')}".strip()


@click.command()
def doctor() -> None:
    """Check settings, database, migrations and broker; print versions and masked URLs."""
    # A refused setting propagates: `jobctl` ends it as one line, exit 2 (with the traceback
    # under --debug).
    settings = with_runtime_urls(load_settings())
    import celery
    import kombu
    import sqlalchemy

    click.echo(f"ok   versions: celery {celery.__version__}, kombu {kombu.__version__}, sqlalchemy {sqlalchemy.__version__}")
    checks = [*check_database(settings), check_broker(settings)]
    for check in checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    sys.exit(0 if all(c.ok for c in checks) else 1)
