"""What every measurement gets: the run's options, its private environment, and ways to start
the contenders' processes (all stopped by the run, whatever happens)."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.environment import QUEUE, Environment
from bench.processes import Proc, Processes

PLATFORM_APP = "worker.app:app"
CELERY_APP = "bench.celery_app:app"


@dataclass
class Figure:
    """One row of the table: a contender's samples of one quantity."""

    name: str
    unit: str
    samples: list[float]
    baseline: str | None = None  # the name of the figure this one is compared with
    target: tuple[str, float] | None = None  # (">=" or "<=", value)
    method: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Results:
    """What a measurement returns: table rows, summary keys for latest.json, raw data."""

    figures: list[Figure] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    options: argparse.Namespace
    environment: Environment
    processes: Processes

    def platform_worker(self) -> Proc:
        return self.processes.celery_worker(PLATFORM_APP, QUEUE)

    def scheduler(self) -> Proc:
        return self.processes.scheduler()

    def celery_worker(self, result_backend: str | None = None) -> Proc:
        env = {"BENCH_RESULT_BACKEND": result_backend} if result_backend else None
        return self.processes.celery_worker(CELERY_APP, QUEUE, env)

    def stop(self, *procs: Proc) -> None:
        for proc in procs:
            self.processes.stop(proc)

    def say(self, message: str) -> None:
        print(f"  {message}", flush=True)
