"""The one settings object.

Every setting is an environment variable with the `JOBS_` prefix (or a line in `.env`), and
every one is documented here, in its field's description; `docs/settings.md` is generated from
these fields (`jobctl settings-doc`). Unknown `JOBS_*` keys are refused with the nearest valid
name, because a typo in a setting should fail loudly at start, not silently fall back to a
default. Fields are checked against each other in `_check_together`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError as PydanticValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigurationError
from shared.passwords import is_password_hash

ENV_PREFIX = "JOBS_"

_DB_SCHEMES = ("postgresql", "postgresql+psycopg")
_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "redis+socket")
# The database refuses a payload whose text is larger (the SQL contract); a higher limit here
# would let enqueue accept what the INSERT then refuses, breaking the caller's transaction.
PAYLOAD_CEILING_BYTES = 1_048_576
# Longest duration a setting may give (as the gate's delays): a larger one overflows datetimes.
_TEN_YEARS = 315_360_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="forbid", validate_default=True,
        # NaN passes no range check and Infinity passes every lower bound: refuse both.
        allow_inf_nan=False,
    )

    env: Literal["development", "production"] = Field(
        "development", description="development: text logs, Flower may run without auth; production: JSON logs, Flower auth required."
    )
    database_url: str | None = Field(
        None, description="PostgreSQL URL (postgresql+psycopg://user:pass@host:5432/db). Unset: `jobctl up` starts an embedded PostgreSQL."
    )
    database_pooler: Literal["none", "transaction"] = Field(
        "none", description="What JOBS_DATABASE_URL points at: none (PostgreSQL itself, or a session pooler) or transaction (PgBouncer in transaction pooling mode: no server-side prepared statements)."
    )
    listen_database_url: str | None = Field(
        None, description="Where the dispatcher LISTENs for NOTIFY: PostgreSQL directly, never a transaction pooler. Unset: JOBS_DATABASE_URL."
    )
    broker_url: str | None = Field(
        None, description="Broker URL: redis://host:6379/0 or amqp://user:pass@host:5672//. Unset: `jobctl up` starts an embedded Redis."
    )
    broker_key_prefix: str = Field(
        "", description="Prefix of every Redis key the broker writes, to share one Redis between deployments (kombu global_keyprefix)."
    )
    data_dir: Path = Field(Path(".data"), description="Where embedded PostgreSQL and Redis keep their data (git-ignored).")
    log_format: Literal["auto", "json", "text"] = Field("auto", description="auto: json in production, text in development.")
    log_level: str = Field("INFO", description="Root log level.")

    # NoDecode: these are comma-separated in the environment, not JSON.
    imports: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Extra modules every process imports (job-type declarations and their handlers), comma-separated."
    )
    default_queues: Annotated[tuple[str, ...], NoDecode] = Field(
        ("high", "default", "low", "bulk"), description="Queues seeded at start (idempotently), comma-separated."
    )
    max_payload_bytes: int = Field(256 * 1024, ge=64, le=PAYLOAD_CEILING_BYTES, description="Largest payload (encoded JSON) accepted at enqueue.")
    default_max_attempts: int = Field(20, ge=1, le=1000, description="Attempts for a job whose type sets none.")
    backoff_base_seconds: float = Field(1.0, gt=0, le=_TEN_YEARS, description="First retry delay; doubles each attempt.")
    backoff_max_seconds: float = Field(3600.0, gt=0, le=_TEN_YEARS, description="Largest retry delay.")
    backoff_jitter: float = Field(0.1, ge=0, le=1, description="Relative random spread of retry delays (0.1 = +/-10%).")

    dispatch_window: int = Field(
        200, ge=1, description="Per queue, most jobs held in the broker (dispatched, not yet running). The backlog beyond stays in PostgreSQL."
    )
    dispatch_batch: int = Field(500, ge=1, description="Most jobs one dispatcher round moves and publishes per queue.")
    dispatch_poll_seconds: float = Field(1.0, gt=0, description="Dispatcher polling fallback when no NOTIFY arrives.")
    notify_probe_seconds: float = Field(
        30.0, gt=0, le=_TEN_YEARS, description="How often the dispatcher checks that NOTIFY reaches its listener (it sends itself a token through JOBS_DATABASE_URL)."
    )
    notify_probe_timeout_seconds: float = Field(
        10.0, gt=0, le=_TEN_YEARS, description="A probe token not seen by the listener within this time: notifications are not arriving (/healthz, jobs_dispatcher_notify_ok 0, a warning); polling goes on."
    )
    dispatch_busy_poll_seconds: float = Field(
        0.01, gt=0, description="Dispatcher re-poll delay while a queue still has a backlog and its window has room."
    )
    redispatch_after_seconds: float = Field(
        60.0, gt=0, description="A job left `dispatched` this long (its message was lost) is published again."
    )

    heartbeat_seconds: float = Field(5.0, gt=0, description="How often each worker process writes its heartbeat.")
    worker_stale_after_seconds: float = Field(
        30.0, gt=0, description="A worker process whose heartbeat is older than this is dead; its running jobs are rescued."
    )
    rescue_interval_seconds: float = Field(5.0, gt=0, description="How often the rescuer looks for jobs on dead workers.")
    rescue_batch_size: int = Field(500, ge=1, le=100000, description="Most running jobs the rescuer fails over, and most overdue cancellations it forces, per round (short locks; the next round takes the rest).")
    finish_retry_seconds: float = Field(
        300.0, ge=0, le=86400, description="How long a worker process keeps retrying, with backoff, to write an attempt's end (log lines, outcome) while the database is unreachable; past it the attempt is given up and the rescuer settles it."
    )
    poison_after_crashes: int = Field(
        3, ge=1, le=1000, description="A job whose runs ended this many worker processes (killed, crashed, hard time limit) is failed as poison instead of being handed out again."
    )
    default_timeout_seconds: float = Field(1800.0, ge=1, le=2_592_000, description="Hard time limit of a job whose type sets none.")
    cancel_grace_seconds: float = Field(
        30.0, ge=0, description="A running job asked to cancel gets this long to stop by itself before it is ended by force."
    )
    shutdown_grace_seconds: float = Field(60.0, ge=0, description="Warm shutdown: how long running jobs may take to finish.")

    worker_concurrency: int = Field(2, ge=1, description="Processes per worker started by `jobctl up`.")
    io_concurrency: int = Field(
        50, ge=1, le=1000, description="Threads of the IO worker (`-P threads`) that `jobctl up` starts for the IO-bound job types' queues (docs/architecture.md, Pools)."
    )
    worker_db_connections: int = Field(
        10, ge=3, le=1000, description="Most PostgreSQL connections one worker process holds, whatever its concurrency: one for the heartbeat, the rest a pool shared by its threads (about half kept for claims and finishes, the rest for sessions); a thread waits for a free one."
    )
    io_worker_metrics_port: int = Field(
        9103, ge=0, le=65535, description="Prometheus endpoint of the IO worker started by `jobctl up` (0: off)."
    )
    flower_port: int = Field(5555, ge=1, le=65535, description="Flower's HTTP port.")
    flower_basic_auth: str | None = Field(None, description="user:password for Flower; required in production.")
    flower_address: str = Field(
        "127.0.0.1", description="Address Flower listens on; 0.0.0.0 (containers) only with JOBS_FLOWER_BASIC_AUTH."
    )
    console_address: str = Field("127.0.0.1", description="Address the operator console listens on (loopback by default; put it behind TLS before exposing it).")
    console_port: int = Field(5580, ge=0, le=65535, description="The operator console's HTTP port (0: `jobctl up` does not start it).")
    console_users: str | None = Field(
        None, description="Console users, comma-separated `name:role:hash` (role viewer or admin; hash from `jobctl console hash-password`). Unset: nobody can log in."
    )
    console_secret: SecretStr | None = Field(
        None, description="Key signing the console's session cookies (32+ characters). Required in production; unset in development: a random key per process (sessions end when it restarts)."
    )
    console_flower_url: str | None = Field(
        None, description="Flower's URL as the operator's browser reaches it, for links from a job's Celery task ids (default: http://127.0.0.1:JOBS_FLOWER_PORT)."
    )
    worker_metrics_port: int = Field(9101, ge=0, le=65535, description="Worker Prometheus endpoint (0: off).")
    scheduler_metrics_port: int = Field(9102, ge=0, le=65535, description="Scheduler Prometheus endpoint (0: off).")
    metrics_address: str = Field(
        "127.0.0.1", description="Address the worker and scheduler metrics endpoints listen on (no auth: keep them on a private network; 0.0.0.0 in containers)."
    )

    # Scheduling and maintenance (docs/scheduling.md).
    cron_misfire_grace_seconds: float = Field(
        2.0, gt=0, description="A cron fire enqueued later than this was missed: the schedule's misfire policy applies."
    )
    cron_max_sleep_seconds: float = Field(
        0.5, gt=0, description="Longest cron sleep: how soon schedules changed through the API are seen."
    )
    prune_interval_seconds: float = Field(60.0, gt=0, description="Pruner interval once it has caught up.")
    prune_batch_size: int = Field(500, ge=1, description="Rows deleted per pruning transaction (short locks).")
    worker_retention_seconds: int = Field(7 * 86400, ge=60, le=_TEN_YEARS, description="How long rows of stopped worker processes are kept.")
    metrics_retention_seconds: int = Field(
        30 * 86400, ge=3600, le=_TEN_YEARS, description="How long queue_metrics and job_metrics rows are kept."
    )
    proxy_log_retention_seconds: int = Field(
        30 * 86400, ge=3600, le=_TEN_YEARS,
        description="How long proxy_health_logs rows (one per check of a proxy) and finished proxy_sweeps rows are kept.",
    )
    rollup_delay_seconds: float = Field(2.0, ge=0, description="The metrics roll-up runs this long after each minute boundary.")

    # Workloads: proxy health checks, post publishing, proactive Telegram messages (docs/workloads.md).
    encryption_key: SecretStr | None = Field(
        None, description="Fernet key(s) encrypting bot tokens, OAuth tokens and proxy passwords at rest; comma-separated for rotation (the first encrypts, all decrypt). Required in production. Unset in development: a fixed key derived from a public string, INSECURE (anyone can decrypt). Make one: `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
    )
    telegram_api_base_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL (messages and Telegram channel posts).")
    instagram_api_base_url: str = Field("https://graph.facebook.com/v21.0", description="Instagram Graph API base URL (two-step publish).")
    threads_api_base_url: str = Field("https://graph.threads.net/v1.0", description="Threads API base URL (two-step publish).")
    platform_timeout_seconds: float = Field(15.0, gt=0, description="Timeout of one HTTP request to a platform; a request that times out after it was sent has an unknown outcome.")
    telegram_chat_interval_seconds: float = Field(1.0, gt=0, description="Proactive messages: at most one message per this many seconds per chat (per bot), as the chat receives them (checked at send time).")
    telegram_global_rate: int = Field(30, ge=1, description="Proactive messages: most sends per bot in any sliding second, as Telegram receives them (checked at send time; Telegram's broadcast limit).")
    send_wait_inline_seconds: float = Field(1.5, ge=0, description="Messages and posts: a send held back by a rate limit waits in its handler when the wait is at most this long; a longer wait snoozes the job (no attempt spent).")
    proxy_check_batch_size: int = Field(250, ge=1, description="Proxy sweeps: proxies per check job (`proxies.check_batch`); each job checks its proxies concurrently.")
    proxy_check_concurrency: int = Field(50, ge=1, description="Proxy sweeps: checks one batch job runs at once (threads); a sweep's total concurrency is this times the batch jobs running.")
    post_account_concurrency: int = Field(1, ge=1, description="Post publishing: most publications in flight per social account.")
    post_account_rate: int = Field(10, ge=1, description="Post publishing: most publications started per social account per `JOBS_POST_ACCOUNT_RATE_PERIOD_SECONDS`.")
    post_account_rate_period_seconds: float = Field(60.0, gt=0, description="The period of `JOBS_POST_ACCOUNT_RATE`.")
    proxy_check_url: str = Field("https://api.ipify.org?format=json", description="URL fetched through each proxy; an answer like {\"ip\": ...} or a bare address gives the exit address.")
    proxy_connect_timeout_seconds: float = Field(5.0, gt=0, description="Proxy check: timeout of the TCP connection to the proxy.")
    proxy_total_timeout_seconds: float = Field(15.0, gt=0, description="Proxy check: deadline of the whole check (connect, handshake, request, answer).")
    proxy_disable_after_failures: int = Field(10, ge=1, description="A proxy failing this many checks in a row is disabled (only an operator enables it again).")
    workload_schedules: bool = Field(True, description="Declare the workloads' recurring fan-out schedules (below); false leaves them out of this process.")
    proxy_check_cron: str = Field("*/5 * * * *", description="When every proxy that is not disabled gets a check job.")
    posts_due_cron: str = Field("*/10 * * * * *", description="When due posts are picked up (6 fields: seconds first).")
    messages_due_cron: str = Field("*/5 * * * * *", description="When due proactive messages are picked up (6 fields: seconds first).")

    @field_validator("default_queues", "imports", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(q.strip() for q in value.split(",") if q.strip())
        return value

    @field_validator("flower_address", "metrics_address", "console_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"must be an IP address to listen on (127.0.0.1, 0.0.0.0, ::1, ...); got {value!r}") from None
        return value

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _check_database_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in _DB_SCHEMES:
            raise ValueError(f"{info.field_name} must start with one of {', '.join(s + '://' for s in _DB_SCHEMES)}; got {parts.scheme or 'no scheme'}://")
        if parts.scheme == "postgresql":
            value = "postgresql+psycopg" + value[len("postgresql"):]
        if not (parts.hostname or "host=" in parts.query):
            raise ValueError(f"{info.field_name} names no host")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in _BROKER_SCHEMES:
            raise ValueError(f"broker_url must start with one of {', '.join(s + '://' for s in _BROKER_SCHEMES)}; got {scheme or 'no scheme'}://")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> "Settings":
        if self.backoff_base_seconds > self.backoff_max_seconds:
            raise ValueError("JOBS_BACKOFF_BASE_SECONDS must not exceed JOBS_BACKOFF_MAX_SECONDS")
        if self.cron_max_sleep_seconds > self.cron_misfire_grace_seconds:
            raise ValueError("JOBS_CRON_MAX_SLEEP_SECONDS must not exceed JOBS_CRON_MISFIRE_GRACE_SECONDS, or on-time fires count as missed")
        if self.worker_stale_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("JOBS_WORKER_STALE_AFTER_SECONDS must be at least twice JOBS_HEARTBEAT_SECONDS, or live workers look dead")
        if self.env == "production" and not self.flower_basic_auth:
            raise ValueError("JOBS_FLOWER_BASIC_AUTH (user:password) is required when JOBS_ENV is production")
        if self.flower_basic_auth is not None and ":" not in self.flower_basic_auth:
            raise ValueError("JOBS_FLOWER_BASIC_AUTH must look like user:password")
        if not self.default_queues:
            raise ValueError("JOBS_DEFAULT_QUEUES must name at least one queue")
        self._check_console()
        return self

    def _check_console(self) -> None:
        console_users(self)  # raises ValueError naming the bad entry
        if self.console_secret is not None and len(self.console_secret.get_secret_value()) < 32:
            raise ValueError("JOBS_CONSOLE_SECRET must be at least 32 characters")
        # Production without JOBS_CONSOLE_SECRET is refused where the console starts
        # (console/app.py): the settings of a worker or scheduler container never need it.

    @model_validator(mode="after")
    def _check_workloads(self) -> "Settings":
        # After _check_together (pydantic runs "after" validators in order): the platform's own
        # rules are reported first.
        if self.env == "production" and self.encryption_key is None:
            raise ValueError("JOBS_ENCRYPTION_KEY is required when JOBS_ENV is production (the development key is public)")
        if self.encryption_key is not None:
            for key in self.encryption_key.get_secret_value().split(","):
                try:
                    Fernet(key.strip())
                except (ValueError, TypeError):
                    # Never echo the value: it is a secret even when malformed.
                    raise ValueError("JOBS_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated") from None
        if self.proxy_connect_timeout_seconds > self.proxy_total_timeout_seconds:
            raise ValueError("JOBS_PROXY_CONNECT_TIMEOUT_SECONDS must not exceed JOBS_PROXY_TOTAL_TIMEOUT_SECONDS")
        return self

    @property
    def is_redis_broker(self) -> bool:
        return (self.broker_url or "redis").startswith(("redis", "rediss"))


CONSOLE_ROLES = ("viewer", "admin")


def console_users(settings: Settings) -> dict[str, tuple[str, str]]:
    """JOBS_CONSOLE_USERS as name -> (role, password hash); ValueError names a bad entry
    (by position and name, never echoing a hash)."""
    users: dict[str, tuple[str, str]] = {}
    for position, entry in enumerate((settings.console_users or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"console_users entry {position} must look like name:role:hash")
        name, role, hashed = parts
        if role not in CONSOLE_ROLES:
            raise ValueError(f"console_users entry {position} ({name}): role must be viewer or admin; got {role!r}")
        if not is_password_hash(hashed):
            raise ValueError(f"console_users entry {position} ({name}): the hash is not one `jobctl console hash-password` makes")
        if name in users:
            raise ValueError(f"console_users names {name!r} twice")
        users[name] = (role, hashed)
    return users


def _refuse_unknown_env(environ: dict[str, str]) -> None:
    known = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    for key in environ:
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
            hint = difflib.get_close_matches(key.upper(), sorted(known), n=1)
            suggestion = f"; did you mean {hint[0]}?" if hint else ""
            raise ConfigurationError(f"unknown setting {key}{suggestion}", key=key)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read, check and return the settings; raise `ConfigurationError` naming the bad key."""
    env = dict(os.environ if environ is None else environ)
    _refuse_unknown_env(env)
    for name in overrides:
        if name not in Settings.model_fields:
            hint = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
            raise ConfigurationError(f"unknown setting {name}" + (f"; did you mean {hint[0]}?" if hint else ""), key=name)
    try:
        if environ is None:
            return Settings(**overrides)
        return _settings_from_mapping(env, overrides)
    except PydanticValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _settings_from_mapping(env: dict[str, str], overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = f"{ENV_PREFIX}{name}".upper()
        if key in env:
            values[name] = env[key]
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _describe(exc: PydanticValidationError) -> str:
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            message = f"{ENV_PREFIX}{'.'.join(str(part) for part in error['loc'])}".upper() + f": {message}"
        problems.append(message)  # a rule across fields names its settings in its own words
    return "invalid settings: " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
