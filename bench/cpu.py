"""CPU time a contender's own processes spend on a run: a figure that, unlike throughput,
hardly moves when other processes share the machine.

Counted: the Celery worker (main process and pool children), the scheduler, and the
PostgreSQL backends serving them (found by database, the benchmark's own connections left
out). Redis is one server shared with everyone, so it is not counted.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from bench.processes import children_of

_HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU of one live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _HZ


def postgres_backends(database) -> list[int]:  # type: ignore[no-untyped-def]
    """Backends connected to the run's database, except this (the benchmark's) process's."""
    with database.engine.connect() as connection:
        return list(connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND coalesce(application_name, '') <> :mine AND pid <> pg_backend_pid()"
        ), {"mine": f"jobplatform:{os.getpid()}"}).scalars())


class CpuAccount:
    """CPU used by labelled processes from `track` until `spent`."""

    def __init__(self) -> None:
        self._start: dict[int, float] = {}
        self._label: dict[int, str] = {}

    def track(self, label: str, pids: list[int]) -> None:
        for pid in pids:
            if pid not in self._label:
                self._label[pid] = label
                self._start[pid] = cpu_seconds(pid) or 0.0

    def track_tree(self, label: str, pid: int) -> None:
        self.track(label, [pid, *children_of(pid)])

    def spent(self, late: dict[str, list[int]] | None = None) -> dict[str, float]:
        """Seconds per label; `late` processes (appeared during the run) count from zero."""
        for label, pids in (late or {}).items():
            for pid in pids:
                if pid not in self._label:
                    self._label[pid], self._start[pid] = label, 0.0
        totals: dict[str, float] = {}
        for pid, label in self._label.items():
            now = cpu_seconds(pid)
            if now is not None:
                totals[label] = totals.get(label, 0.0) + now - self._start[pid]
        return totals
