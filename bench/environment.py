"""One benchmark run's private space on the shared services: a database of its own (created,
migrated, seeded; dropped at the end) and a Redis key prefix (every key deleted at the end)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
import redis
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from shared import migrate
from shared.db import Database, get_database, reset_database
from shared.settings import get_settings
from shared.store import queues as queue_store

QUEUE = "default"  # platform.noop's queue; every contender's worker consumes only this one

# Settings of every process of the run. Platform defaults otherwise (dispatch window, polls):
# the benchmark measures the platform as shipped.
PLATFORM_SETTINGS = {
    "JOBS_LOG_LEVEL": "WARNING",
    "JOBS_WORKER_METRICS_PORT": "0",
    "JOBS_SCHEDULER_METRICS_PORT": "0",
}
# Settings that only some versions of the platform have (unknown JOBS_* keys are refused).
# The workloads' own recurring fan-outs (due posts, due messages, proxy checks) would add
# jobs of their own to a run; every query also counts only the benchmark's job types.
OPTIONAL_SETTINGS = {"workload_schedules": "false"}


def platform_settings() -> dict[str, str]:
    from shared.settings import Settings

    optional = {f"JOBS_{k.upper()}": v for k, v in OPTIONAL_SETTINGS.items() if k in Settings.model_fields}
    return dict(PLATFORM_SETTINGS, **optional)


@dataclass
class Environment:
    admin_url: str
    redis_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    database_url: str = ""
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jobs-bench-")))
    _created: bool = False

    @property
    def database_name(self) -> str:
        return f"jobs_bench_{self.run_id}"

    @property
    def key_prefix(self) -> str:
        return f"jobs-bench-{self.run_id}:"

    @property
    def env(self) -> dict[str, str]:
        """JOBS_* settings of the run, for subprocesses and this process alike."""
        return dict(platform_settings(), JOBS_DATABASE_URL=self.database_url, JOBS_BROKER_URL=self.redis_url,
                    JOBS_BROKER_KEY_PREFIX=self.key_prefix)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def database(self) -> Database:
        return get_database()

    def setup(self) -> None:
        admin = _admin_engine(self.admin_url)
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.database_name}"'))
        admin.dispose()
        self._created = True
        self.database_url = make_url(self.admin_url).set(
            drivername="postgresql+psycopg", database=self.database_name
        ).render_as_string(hide_password=False)
        migrate.upgrade(self.database_url)
        os.environ.update(self.env)
        get_settings.cache_clear()
        reset_database()
        self.reset_tables()

    def reset_tables(self) -> None:
        """Empty every platform table (and Celery's result tables) and seed the queues again.
        Ids keep growing: a message left from an earlier run can never name a new job."""
        with get_database().engine.begin() as connection:
            tables = connection.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )).scalars().all()
            connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        with get_database().session() as session:
            queue_store.seed_queues(session, get_settings().default_queues)
        with get_database().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))

    def broker_keys(self) -> dict[str, int]:
        """Lengths of the run's broker lists and hashes (queues, unacked): for diagnostics."""
        client = self.redis()
        try:
            found = {}
            for key in client.scan_iter(match=f"{self.key_prefix}*", count=1000):
                kind = client.type(key).decode()
                if kind in ("list", "hash", "zset"):
                    size = {"list": client.llen, "hash": client.hlen, "zset": client.zcard}[kind](key)
                    found[key.decode()[len(self.key_prefix):]] = size
            return found
        finally:
            client.close()

    def purge_queue(self) -> None:
        """Drop messages left in the run's queue (by a failed run); bindings stay, so a client
        that has already declared the queue can go on publishing."""
        client = self.redis()
        try:
            keys = [k for k in client.scan_iter(match=f"{self.key_prefix}{QUEUE}*", count=1000)]
            keys += [k for k in client.scan_iter(match=f"{self.key_prefix}unacked*", count=1000)]
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def clear_keys(self) -> int:
        client = self.redis()
        try:
            keys = list(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
            return len(keys)
        finally:
            client.close()

    def teardown(self) -> None:
        reset_database()
        try:
            self.clear_keys()
        finally:
            if self._created:
                admin = _admin_engine(self.admin_url)
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
                admin.dispose()
                self._created = False
            for key in self.env:
                os.environ.pop(key, None)
            get_settings.cache_clear()

    def remove_logs(self) -> None:
        shutil.rmtree(self.log_dir, ignore_errors=True)


def _admin_engine(url: str):  # type: ignore[no-untyped-def]
    admin = make_url(url).set(drivername="postgresql+psycopg")
    return create_engine(admin, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
