"""Subprocesses of a benchmark run: each in a process group of its own, all of them killed
(SIGTERM, then SIGKILL to the whole group) when the run ends, fails or is interrupted."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

# One home for subprocess handling, shared with the acceptance tests (bench already uses tests' rigs).
from tests.process_groups import Proc, children_of, spawn
from tests.process_groups import wait_for as _wait_for

__all__ = ["CONCURRENCY", "Proc", "Processes", "children_of", "ignore_signals", "log_tails", "raise_on_signals", "wait_for"]

CONCURRENCY = 2  # prefork pool processes, for every contender

# The benchmarks poll faster than the tests, and a time-out is a TimeoutError the runs record.
wait_for = partial(_wait_for, interval=0.02, error=TimeoutError)


class Processes:
    """Starts worker and scheduler subprocesses and remembers every one to stop it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[Proc] = []
        self._count = 0

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        self._count += 1
        log_path = self.log_dir / f"{self._count:03d}-{name}.log"
        proc = spawn(name, argv, dict(self.env, **(env or {})), log_path)
        self.running.append(proc)
        return proc

    def celery_worker(self, app: str, queue: str, env: dict[str, str] | None = None) -> Proc:
        """The same command line for every contender: prefork, concurrency 2, one queue."""
        proc = self.spawn(app.split(".")[0] + "-worker", [
            sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork", "-c", str(CONCURRENCY),
            "-Q", queue, "-n", f"bench{self._count}-{os.getpid()}@%h", "--loglevel=WARNING",
            "--without-mingle", "--without-gossip",
        ], env)
        wait_for(lambda: proc.check_alive() or len(children_of(proc.pid)) >= CONCURRENCY, 60, f"{proc.name} pool")
        return proc

    def scheduler(self, env: dict[str, str] | None = None) -> Proc:
        return self.spawn("scheduler", [sys.executable, "-m", "scheduler"], env)

    def pool_pids(self, proc: Proc) -> list[int]:
        return children_of(proc.pid)

    def stop(self, proc: Proc, grace: float = 10.0) -> None:
        """Warm stop (SIGTERM) of the group, then SIGKILL whatever is left of it."""
        proc.stop(grace, whole_group=True)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self, grace: float = 10.0) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc, grace)


def raise_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind as KeyboardInterrupt, so every `finally` cleans up.
    SIGINT is set explicitly: a shell starts background jobs with it ignored."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def ignore_signals() -> None:
    """While cleaning up: a second Ctrl-C must not leave processes, a database or keys behind."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def log_tails(log_dir: Path, lines: int = 15) -> str:
    """The end of every process log of the run, for a failure report."""
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path.name}\n" + "\n".join(text))
    return "\n".join(parts)
