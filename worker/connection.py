"""The worker process's own connection for the per-job statements.

Claiming and finishing a job are each one atomic statement, so they run in autocommit on a
connection this process keeps: one round trip each, with no pool checkout, no ping, no
separate BEGIN and COMMIT (a pooled transaction costs four round trips per statement). A pool
process runs one job at a time, so one connection is enough; the heartbeat thread uses the
pool.

When the connection breaks (PostgreSQL restarted), the statement is retried once on a fresh
connection. A retried claim may find that the lost first attempt already went through: the
caller then asks `reclaim_own_job`, so a claimed job is never orphaned under a live worker.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from shared.db import Database, translate_errors

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobConnection:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection: Connection | None = None

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.invalidated or self._connection.closed:
            self._connection = self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def run(self, statement: Callable[[Connection], T], on_retry: Callable[[Connection], T] | None = None) -> T:
        """Run one autocommit statement; after a broken connection, once more (or `on_retry`)."""
        with translate_errors():
            try:
                return statement(self._connect())
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                log.warning("database connection lost (%s); reconnecting", exc.orig)
                self.close()
            return (on_retry or statement)(self._connect())

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._connection = None
