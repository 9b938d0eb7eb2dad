"""The worker process's own connection for the per-job statements.

Claiming and finishing a job are each one atomic statement, so they run in autocommit on a
connection kept open: one round trip each, with no pool checkout, no ping, no separate BEGIN
and COMMIT (a pooled transaction costs four round trips per statement). A prefork pool process
runs one job at a time and so opens one; a threads pool process shares a few of them among all
its threads (`JobConnectionPool`: a thread waits for a free one), so the connections a worker
holds stay bounded whatever its concurrency. The heartbeat thread has its own.

Any exception during a statement (a broken connection, a SQL error, a soft time limit or any
other exception raised from a signal handler while psycopg waited) discards the connection
before it is used again: a statement interrupted mid-flight leaves psycopg mid-command, and
reusing it would fail every later job ("another command is already in progress").

When the connection breaks (PostgreSQL restarted), the statement is retried once on a fresh
connection. A retried claim may find that the lost first attempt already went through: the
caller then asks `reclaim_own_job`, so a claimed job is never orphaned under a live worker.
"""

from __future__ import annotations

import logging
import queue
import threading
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
                return self._guarded(statement)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                log.warning("database connection lost (%s); reconnecting", exc.orig)
            return self._guarded(on_retry or statement)

    def _guarded(self, statement: Callable[[Connection], T]) -> T:
        try:
            return statement(self._connect())
        except BaseException:
            # BaseException too: KeyboardInterrupt, SystemExit and the like land mid-statement
            # just as well, and the process may go on using this object.
            self.discard()
            raise

    def discard(self) -> None:
        """Drop the connection without reusing it (its state is unknown): the next statement
        opens a fresh one."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not connection.invalidated:
                connection.invalidate()
            connection.close()
        except Exception:  # noqa: BLE001 - already broken; it is dropped either way
            pass

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


class JobConnectionPool:
    """At most `size` JobConnections shared by a process's threads, opened on first need: a
    statement takes a free one (waiting while all are busy), runs, and gives it back. Each
    statement is one round trip, so a handful serves hundreds of threads."""

    def __init__(self, database: Database, size: int) -> None:
        if size < 1:
            raise ValueError("a job connection pool needs at least one connection")
        self.database = database
        self.size = size
        self._free: queue.LifoQueue[JobConnection] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()

    def _take(self) -> JobConnection:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._opened < self.size:
                self._opened += 1
                return JobConnection(self.database)
        return self._free.get()  # all busy: wait for one

    def run(self, statement: Callable[[Connection], T], on_retry: Callable[[Connection], T] | None = None) -> T:
        """As `JobConnection.run`, on whichever pooled connection is free."""
        connection = self._take()
        try:
            return connection.run(statement, on_retry)
        finally:
            self._free.put(connection)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return
