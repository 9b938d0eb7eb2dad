"""Fixtures: real services, one database and one Redis key space per test run.

Services come from TEST_DATABASE_URL (an admin URL; the run creates its own database),
TEST_REDIS_URL and TEST_AMQP_URL; when a URL is unset an embedded server is started. The run's
database is migrated once; every test that touches it starts from truncated tables with the
default queues seeded. Everything created is dropped at the end.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from urllib.parse import urlsplit
from pathlib import Path
from typing import Iterator

import pytest
import redis
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from shared import migrate
from shared.db import Database, get_database, make_database, reset_database
from shared.embedded import EmbeddedServices, start_postgres, start_redis
from shared.settings import get_settings
from shared.store import queues as queue_store
from tests.environment import applied
from tests.jobs import EFFECTS_DDL
from tests.processes import ProcessFactory

RUN_ID = uuid.uuid4().hex[:8]
DEFAULT_QUEUES = ("high", "default", "low", "bulk")

# Fast timings so failure-over tests take seconds, not minutes.
TEST_SETTINGS = {
    "JOBS_IMPORTS": "tests.jobs",
    "JOBS_HEARTBEAT_SECONDS": "0.5",
    "JOBS_WORKER_STALE_AFTER_SECONDS": "2",
    "JOBS_RESCUE_INTERVAL_SECONDS": "0.5",
    "JOBS_REDISPATCH_AFTER_SECONDS": "3",
    "JOBS_DISPATCH_POLL_SECONDS": "0.2",
    "JOBS_BACKOFF_BASE_SECONDS": "0.05",
    "JOBS_BACKOFF_MAX_SECONDS": "0.5",
    "JOBS_LOG_LEVEL": "WARNING",
    # Tests that scrape metrics choose free ports; the rest keep the default ports free.
    "JOBS_WORKER_METRICS_PORT": "0",
    "JOBS_SCHEDULER_METRICS_PORT": "0",
    # The workloads' recurring fan-outs would add jobs to every test; their tests turn them on.
    "JOBS_WORKLOAD_SCHEDULES": "false",
}


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    services = EmbeddedServices()
    yield services
    services.stop()


@pytest.fixture(scope="session")
def admin_database_url(embedded: EmbeddedServices, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return str(make_url(url).set(drivername="postgresql+psycopg"))
    # pgserver runs PostgreSQL as an unprivileged user when started by root, so the data dir
    # must be reachable by it (pytest's own tmp dirs are private to root).
    data_dir = Path(tempfile.mkdtemp(prefix="jobs-test-pg-"))
    data_dir.chmod(0o755)
    local = start_postgres(data_dir, embedded)
    return str(make_url(local).set(database="postgres"))


@pytest.fixture(scope="session")
def redis_url(embedded: EmbeddedServices, tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("TEST_REDIS_URL") or start_redis(tmp_path_factory.mktemp("redis"), embedded)


def create_database(admin_url: str, name: str) -> str:
    engine = create_engine(admin_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    name = f"jobs_test_{RUN_ID}"
    url = create_database(admin_database_url, name)
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        connection.execute(text(EFFECTS_DDL))
    engine.dispose()
    yield url
    reset_database()
    drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def broker_key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"jobs-test-{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def test_env(database_url: str, redis_url: str, broker_key_prefix: str) -> Iterator[dict[str, str]]:
    """The environment of this run's platform processes; also applied to the test process."""
    env = dict(TEST_SETTINGS, JOBS_DATABASE_URL=database_url, JOBS_BROKER_URL=redis_url,
               JOBS_BROKER_KEY_PREFIX=broker_key_prefix)
    with applied(env):
        from shared.jobtypes.registry import load_declarations

        load_declarations(get_settings())  # JOBS_IMPORTS names tests.jobs
        yield env


@pytest.fixture
def db(test_env: dict[str, str]) -> Iterator[Database]:
    """The run's database, emptied before the test (default queues seeded)."""
    database = get_database()
    with database.engine.begin() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars().all()
        # Ids keep counting across tests: a message left in the broker by an earlier test can
        # never name a job of this one.
        connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    with database.session() as session:
        queue_store.seed_queues(session, DEFAULT_QUEUES)
    _clear_broker_keys(test_env["JOBS_BROKER_URL"], test_env["JOBS_BROKER_KEY_PREFIX"])
    yield database


def _clear_broker_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def fresh_database_url(admin_database_url: str) -> Iterator[str]:
    """An empty database of its own, for migration tests."""
    name = f"jobs_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    url = create_database(admin_database_url, name)
    yield url
    drop_database(admin_database_url, name)


@pytest.fixture
def processes(test_env: dict[str, str], tmp_path: Path) -> Iterator[ProcessFactory]:
    """Starts real worker and scheduler processes (with the environment as it is when each
    starts, so a `broker` parameter applies); stops every one at the end of the test."""
    factory = ProcessFactory(tmp_path)
    yield factory
    factory.stop_all()


def _rabbitmqctl(*args: str) -> None:
    try:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed ({exc}); the RabbitMQ tests need it to make a vhost")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this run's own (TEST_AMQP_URL, default the local server)."""
    base = urlsplit(os.environ.get("TEST_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//")
    vhost = f"jobs-test-{RUN_ID}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, base.username or "guest", ".*", ".*", ".*")
    yield base._replace(path=f"/{vhost}").geturl()
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, test_env: dict[str, str]) -> Iterator[str]:
    """Runs a test once per broker: Redis (the run's key space) and RabbitMQ (the run's vhost)."""
    if request.param == "redis":
        yield "redis"
        return
    url = request.getfixturevalue("amqp_url")
    saved = os.environ["JOBS_BROKER_URL"]
    os.environ["JOBS_BROKER_URL"] = url
    get_settings.cache_clear()
    yield "rabbitmq"
    os.environ["JOBS_BROKER_URL"] = saved
    get_settings.cache_clear()


@pytest.fixture
def own_database(database_url: str) -> Iterator[Database]:
    """A separate engine for tests that need their own connection (locks held across calls)."""
    database = make_database(database_url, pool_size=2)
    yield database
    database.dispose()
