"""`jobctl up`: the whole platform in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from base64 import b64encode

import click

from shared import migrate
from shared.broker import make_celery
from shared.db import make_database
from shared.jobtypes.registry import io_lane
from shared.embedded import start_missing
from shared.errors import ServiceUnavailable
from shared.runtime import StackLock, clear_runtime, mask_url, write_runtime
from shared.settings import ENV_PREFIX, Settings, get_settings
from shared.store import queues as queue_store
from shared.cli.stack import Stack

READY_TIMEOUT_SECONDS = 120.0


@click.command()
@click.option("--queues", default=None, help="Queues the worker consumes, in priority order (default: all seeded).")
@click.option("--concurrency", type=int, default=None, help="Worker processes (default: JOBS_WORKER_CONCURRENCY).")
@click.option("--io-concurrency", type=int, default=None, help="IO worker threads (default: JOBS_IO_CONCURRENCY).")
@click.option("--flower/--no-flower", default=True, help="Start Flower.")
@click.option("--grace", type=float, default=10.0, show_default=True, help="Seconds running jobs get to finish on stop.")
def up(queues: str | None, concurrency: int | None, io_concurrency: int | None, flower: bool, grace: float) -> None:
    """Start (or connect to) PostgreSQL and Redis, migrate, seed queues, and run the workers (a
    prefork one for CPU-bound job types, a threads one for the IO-bound), the scheduler and
    Flower until Ctrl-C."""
    settings = get_settings()
    lock = StackLock(settings.data_dir)
    leftovers = lock.acquire()  # before anything starts: a second stack changes nothing
    if leftovers:
        click.echo(f"ended {len(leftovers)} processes a killed stack left on {settings.data_dir}", err=True)
    try:
        _run(settings, lock, queues, concurrency, io_concurrency, flower, grace)
    finally:
        lock.release()


def _run(
    settings: Settings, lock: StackLock, queues: str | None, concurrency: int | None, io_concurrency: int | None,
    flower: bool, grace: float,
) -> None:
    services = start_missing(settings.database_url, settings.broker_url, settings.data_dir)
    for pid in services.pids:
        lock.add_child(pid)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack: Stack | None = None
    try:
        assert services.database_url and services.broker_url
        settings = settings.model_copy(update={"database_url": services.database_url, "broker_url": services.broker_url})
        _prepare_database(settings)
        stack = Stack(_child_env(settings), on_spawn=lock.add_child)
        _spawn(stack, settings, queues or ",".join(settings.default_queues), concurrency or settings.worker_concurrency,
               io_concurrency or settings.io_concurrency, flower)
        _wait_ready(stack, settings, flower, stop)
        write_runtime(settings, services.database_url, services.broker_url, _flower_url(settings) if flower else None)
        click.echo(_ready_line(settings, flower), nl=True)
        sys.stdout.flush()
        while not stop.wait(0.5):
            dead = stack.first_dead()
            if dead is not None:
                raise click.ClickException(f"{dead.name} exited with code {dead.process.returncode}; stopping")
    finally:
        if stack is not None:
            stack.stop(grace)
        clear_runtime(settings)
        services.stop()
        click.echo("stopped", err=True)


def _prepare_database(settings: Settings) -> None:
    assert settings.database_url
    migrate.upgrade(settings.database_url)
    database = make_database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            queue_store.seed_queues(session, settings.default_queues)
    finally:
        database.dispose()


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.database_url or ""
    env[f"{ENV_PREFIX}BROKER_URL"] = settings.broker_url or ""
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _spawn(stack: Stack, settings: Settings, queues: str, concurrency: int, io_concurrency: int, flower: bool) -> None:
    python = sys.executable
    stack.spawn("worker", [
        python, "-m", "celery", "-A", "worker.app:app", "worker", "-Q", queues, "-c", str(concurrency),
        "-n", f"worker1@{socket.gethostname()}", "--loglevel", settings.log_level,
    ])
    # The IO worker class: one process of threads for the IO-bound job types, which the
    # dispatcher sends to their queues' IO lanes (io.<queue>); docs/architecture.md, Pools.
    stack.spawn("io-worker", [
        python, "-m", "celery", "-A", "worker.app:app", "worker", "-Q", io_lanes(queues), "-P", "threads",
        "-c", str(io_concurrency), "-n", f"io1@{socket.gethostname()}", "--loglevel", settings.log_level,
    ], env={f"{ENV_PREFIX}WORKER_METRICS_PORT": str(settings.io_worker_metrics_port)})
    stack.spawn("scheduler", [python, "-m", "scheduler"])
    if flower:
        stack.spawn("flower", [python, "-m", "shared.cli.main", "flower"])
    if settings.console_port:
        stack.spawn("console", [python, "-m", "shared.cli.main", "console"])


def io_lanes(queues: str) -> str:
    """The IO lanes of a worker's queues, in the same (priority) order."""
    return ",".join(io_lane(name.strip()) for name in queues.split(",") if name.strip())


def _wait_ready(stack: Stack, settings: Settings, flower: bool, stop: threading.Event) -> None:
    app = make_celery(settings)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    pending = {"worker", "io-worker", "flower"} if flower else {"worker", "io-worker"}
    if settings.console_port:
        pending.add("console")
    try:
        while pending and time.monotonic() < deadline and not stop.is_set():
            dead = stack.first_dead()
            if dead is not None:
                raise ServiceUnavailable(f"{dead.name} exited with code {dead.process.returncode} before it was ready")
            if pending & {"worker", "io-worker"}:
                answered = {name.split("@")[0] for reply in app.control.ping(timeout=1.0) for name in reply}
                if "worker1" in answered:
                    pending.discard("worker")
                if "io1" in answered:
                    pending.discard("io-worker")
            if "flower" in pending and _flower_answers(settings):
                pending.discard("flower")
            if "console" in pending and _console_answers(settings):
                pending.discard("console")
            time.sleep(0.2)
    finally:
        app.close()
    if stop.is_set():
        raise click.Abort()
    if pending:
        raise ServiceUnavailable(f"not ready after {READY_TIMEOUT_SECONDS:.0f} s: {', '.join(sorted(pending))}")


def _flower_answers(settings: Settings) -> bool:
    request = urllib.request.Request(f"{_flower_url(settings)}/healthcheck")
    if settings.flower_basic_auth:
        request.add_header("Authorization", "Basic " + b64encode(settings.flower_basic_auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _flower_url(settings: Settings) -> str:
    return f"http://{_host(settings.flower_address)}:{settings.flower_port}"


def _host(address: str) -> str:
    """Where this host reaches a server listening on `address`."""
    if address in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


def _console_answers(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{_console_url(settings)}/login", timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _console_url(settings: Settings) -> str:
    return f"http://{_host(settings.console_address)}:{settings.console_port}"


def _ready_line(settings: Settings, flower: bool) -> str:
    parts = [
        "ready",
        f"database={mask_url(settings.database_url)}",
        f"broker={mask_url(settings.broker_url)}",
    ]
    if flower:
        parts.append(f"flower={_flower_url(settings)}")
    if settings.console_port:
        parts.append(f"console={_console_url(settings)}")
    if settings.worker_metrics_port:
        parts.append(f"worker_metrics=http://{_host(settings.metrics_address)}:{settings.worker_metrics_port}/metrics")
    if settings.io_worker_metrics_port:
        parts.append(f"io_worker_metrics=http://{_host(settings.metrics_address)}:{settings.io_worker_metrics_port}/metrics")
    if settings.scheduler_metrics_port:
        parts.append(f"scheduler_metrics=http://{_host(settings.metrics_address)}:{settings.scheduler_metrics_port}/metrics")
    return " ".join(parts)

