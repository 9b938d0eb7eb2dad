"""Watches one process's hold on PostgreSQL: the most connections it had open (by its
application_name, `jobplatform:<pid>`) and the most jobs `running` at once, sampled every 20 ms
on a connection of the sampler's own. Used by the threads-pool test and `bench/connections.py`."""

from __future__ import annotations

import threading

from sqlalchemy import text

from shared.db import Database

SAMPLE = text("SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = :n), "
              "(SELECT count(*) FROM jobs WHERE state = 'running')")


class ConnectionSampler:
    def __init__(self, database: Database, pid: int) -> None:
        self.database, self.name = database, f"jobplatform:{pid}"
        self.connections = self.running = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ConnectionSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        with self.database.engine.connect() as connection:
            while not self._stop.wait(0.02):
                connections, running = connection.execute(SAMPLE, {"n": self.name}).one()
                connection.commit()
                self.samples += 1
                self.connections = max(self.connections, int(connections))
                self.running = max(self.running, int(running))
