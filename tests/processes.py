"""Real platform processes for acceptance tests: Celery workers and schedulers, started as
subprocesses with the run's environment, waited on until they are really ready, and stopped
(with their whole process group) when the test ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy import text

from shared.db import get_database
from shared.embedded import free_port
from tests.process_groups import Proc, children_of, spawn, wait_for
from tests.scheduler_health import SchedulerHealth

__all__ = ["ALL_QUEUES", "THREADS_PER_PROCESS", "Proc", "ProcessFactory", "children_of", "wait_for"]

# The seeded queues and their IO lanes (shared/jobtypes/registry.py, broker_queue): a test's
# worker runs every job type unless a test asks for a worker class.
ALL_QUEUES = "high,default,low,bulk,io.high,io.default,io.low,io.bulk"
THREADS_PER_PROCESS = 8


class ProcessFactory:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None) -> Proc:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        proc = spawn(name, argv, dict(os.environ, **(env or {})), log_path)
        self.started.append(proc)
        return proc

    def worker(
        self, queues: str = ALL_QUEUES, concurrency: int = 2, env: dict[str, str] | None = None,
        pool: str | None = None,
    ) -> Proc:
        """A Celery worker. `pool="threads"`: one process running `concurrency` threads (the IO
        worker class); it is ready once that process heartbeats. Unset, the pool is
        TEST_WORKER_POOL's (default prefork): `TEST_WORKER_POOL=threads` runs every test's
        worker on threads, THREADS_PER_PROCESS threads for each process asked."""
        if pool is None:
            pool = os.environ.get("TEST_WORKER_POOL", "prefork")
            if pool == "threads":
                concurrency *= THREADS_PER_PROCESS
        name = f"w{len(self.started)}-{os.getpid()}"
        proc = self._spawn("worker", [
            sys.executable, "-m", "celery", "-A", "worker.app:app", "worker", "-Q", queues, "-c", str(concurrency),
            "-P", pool, "-n", f"{name}@%h", "--loglevel=WARNING", "--without-mingle", "--without-gossip",
        ], env)
        proc.pool = pool
        wait_for(lambda: self._pool_ready(proc, concurrency), 60, f"worker pool ready\n{proc.log()}")
        return proc

    def _pool_ready(self, proc: Proc, concurrency: int) -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited with {proc.process.returncode}:\n{proc.log()}")
        pids = self.pool_pids(proc)
        if proc.pool == "prefork" and len(pids) < concurrency:
            return False
        if proc.pool != "prefork":
            concurrency = 1  # one process runs every thread
        with get_database().session() as session:
            online = session.execute(
                text("SELECT count(*) FROM workers WHERE pid = ANY(:pids) AND state = 'online'"), {"pids": pids}
            ).scalar()
        return bool(online and online >= concurrency)

    def pool_pids(self, proc: Proc) -> list[int]:
        """The processes that run jobs: the pool children, or the worker itself (threads)."""
        return children_of(proc.pid) if proc.pool == "prefork" else [proc.pid]

    def scheduler(self, env: dict[str, str] | None = None) -> Proc:
        proc = self._spawn("scheduler", [sys.executable, "-m", "scheduler"], env)
        wait_for(lambda: self._connected(proc), 30, f"scheduler connected\n{proc.log()}")
        return proc

    def watched_scheduler(self, env: dict[str, str] | None = None) -> tuple[Proc, SchedulerHealth]:
        """A scheduler serving /healthz on a free port, and its health: a test waits on the
        dispatcher's rounds there (tests/scheduler_health.py)."""
        health = SchedulerHealth(free_port())
        proc = self.scheduler(dict(env or {}, JOBS_SCHEDULER_METRICS_PORT=str(health.port)))
        wait_for(lambda: self._connected(proc) and health.report(), 30, f"scheduler /healthz answers\n{proc.log()}")
        return proc, health

    def _connected(self, proc: Proc) -> bool:
        if not proc.alive():
            raise AssertionError(f"scheduler exited with {proc.process.returncode}:\n{proc.log()}")
        with get_database().session() as session:
            return bool(session.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"jobplatform:{proc.pid}"},
            ).scalar())

    def stop_all(self) -> None:
        # At the end of a test nothing needs a graceful stop: kill the groups, it saves seconds.
        for proc in reversed(self.started):
            proc.stop(timeout=0)
