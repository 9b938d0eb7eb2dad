"""Engines and sessions, created lazily and per process.

A connection pool must never cross a fork (Celery's prefork children would share sockets with
their parent), so `get_database()` remembers the pid that built the engine and builds a fresh
one in a child. Errors from SQLAlchemy are translated into the platform's family here, at the
boundary, by `translate_errors`.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, Iterator

from psycopg.abc import Buffer
from psycopg.pq import TransactionStatus
from psycopg.types.datetime import TimestamptzLoader
from sqlalchemy import Connection, Engine, ExceptionContext, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared.errors import ConfigurationError, PlatformError, ServiceUnavailable, StoreError
from shared.runtime import with_runtime_urls
from shared.settings import Settings, get_settings


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    pid: int

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends, rolled back on an error. Like any SQLAlchemy
        session it begins on first use, so `with session.begin():` inside it works as usual."""
        with translate_errors(), self.sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def make_database(
    url: str, *, pool_size: int = 5, application_name: str | None = None, pooled: bool = True,
    pre_ping: bool = True, prepare: bool | None = None, max_overflow: int | None = None,
) -> Database:
    """`pool_size` connections kept, plus up to `max_overflow` more at a peak (default: as many
    again; 0 makes `pool_size` a hard cap, a thread then waits for a free connection).
    `pooled=False`: a connection per use, none kept (for processes that fork later).
    `pre_ping=False`: no liveness round trip per checkout, for loops that simply retry a round
    when a connection turns out broken (SQLAlchemy then replaces it).
    `prepare=False`: no server-side prepared statements (a transaction pooler hands each
    transaction to any server connection, where a statement prepared on another is unknown);
    None follows JOBS_DATABASE_POOLER."""
    # The pid in the name lets operators (and tests) tell processes apart in pg_stat_activity.
    application_name = application_name or f"jobplatform:{os.getpid()}"
    if prepare is None:
        prepare = get_settings().database_pooler != "transaction"
    connect_args: dict[str, Any] = {"application_name": application_name, "connect_timeout": 10}
    if not prepare:
        # psycopg prepares a statement on its 5th execution by default (prepare_threshold).
        connect_args["prepare_threshold"] = None
    if pooled:
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size if max_overflow is None else max_overflow, pool_pre_ping=pre_ping, pool_recycle=1800,
            connect_args=connect_args,
        )
    else:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    _load_timestamps_as_utc(engine)
    _discard_busy_connections(engine)
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False), pid=os.getpid())


class UtcTimestamptzLoader(TimestamptzLoader):
    """Every timestamp leaves the database in UTC, whatever the session's TimeZone.

    Done in the client rather than with `SET TIME ZONE` at connect: behind a transaction pooler
    the connection that ran a SET is not necessarily the one serving the next transaction, so
    the platform keeps no session state of its own. The instant is exact either way (the
    server's text carries its offset); only the zone the datetime is shown in changes. SQL that
    would depend on the session's zone (a timestamptz cast to date or text, date_trunc by hour
    or day) has no place in the store."""

    def load(self, data: Buffer) -> datetime:
        return super().load(data).astimezone(timezone.utc)


# The zone names a server reports for UTC itself (not zones that merely sit at +00:00 today).
UTC_ZONE_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
                            "GMT", "Etc/GMT", "Etc/GMT+0", "Etc/GMT-0", "Etc/GMT0", "GMT0", "Greenwich", "Etc/Greenwich"})


def _is_utc(zone: tzinfo) -> bool:
    return zone is timezone.utc or getattr(zone, "key", None) in UTC_ZONE_NAMES


def _load_timestamps_as_utc(engine: Engine) -> None:
    """psycopg's C loader already gives UTC datetimes when the server's zone (the database's
    `timezone`, reported at login, by PgBouncer too) is UTC: then nothing is changed, since
    the Python loader costs ~15 us a value against ~0.5. Any other zone gets the UTC loader."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        if not _is_utc(dbapi_connection.info.timezone):
            dbapi_connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)


def _busy(dbapi_connection: Any) -> bool:
    """True when the DBAPI connection is in the middle of a command or broken: an exception
    (a soft time limit, anything raised from a signal handler) interrupted psycopg while it
    waited for a reply, and the connection would refuse every later command."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return False
    return pgconn.transaction_status in (TransactionStatus.ACTIVE, TransactionStatus.UNKNOWN)


def _discard_busy_connections(engine: Engine) -> None:
    """Any exception during a database call leaves the connection reset, never half-used.

    SQLAlchemy only invalidates a connection on errors it reads as disconnects; a statement
    interrupted by a Python exception leaves psycopg mid-command, so the rollback that follows
    fails ("another command is already in progress") and hides the first exception. Here the
    rollback of a busy connection is replaced by invalidation (the pool then opens a fresh
    one), and an error met on a busy connection counts as a disconnect."""

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Connection) -> None:
        if _busy(_dbapi_connection_of(connection)):
            connection.invalidate()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if _busy(_dbapi_connection_of(context.connection)):
            context.is_disconnect = True

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _exception: BaseException | None) -> None:
        cancel_running_statement(dbapi_connection)


def _dbapi_connection_of(connection: Connection | None) -> Any:
    """The DBAPI connection under `connection`, or None when it has none (closed, invalidated):
    asking an invalidated Connection for it would reconnect."""
    if connection is None or connection.closed or connection.invalidated:
        return None
    try:
        return connection.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - no usable connection: nothing to discard
        return None


def cancel_running_statement(dbapi_connection: Any) -> None:
    """Ask the server to stop the statement an abandoned connection was running: closing the
    socket alone leaves it running (holding its locks) until it next writes to the client."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None or pgconn.transaction_status != TransactionStatus.ACTIVE:
        return
    try:
        dbapi_connection.cancel_safe(timeout=2.0)
    except Exception:  # noqa: BLE001 - best effort: the server may be gone, which stops it too
        pass


_lock = threading.Lock()
_database: Database | None = None


def get_database(settings: Settings | None = None, **pool: int) -> Database:
    """The process-wide database, rebuilt after a fork: JOBS_DATABASE_URL, or else the database
    of the `jobctl up` running on this data folder (found the way jobctl finds it). `pool`
    (pool_size, max_overflow) applies when the engine is built: a worker process bounds its
    connections this way (worker/app.py)."""
    global _database
    with _lock:
        if _database is None or _database.pid != os.getpid():
            # Unset, the URL of a `jobctl up` running on this data folder (its embedded server).
            settings = with_runtime_urls(settings or get_settings())
            if not settings.database_url:
                raise ConfigurationError("JOBS_DATABASE_URL is not set and no `jobctl up` is running on JOBS_DATA_DIR")
            _database = make_database(
                settings.database_url, prepare=settings.database_pooler != "transaction", **pool  # type: ignore[arg-type]
            )
        return _database


def reset_database() -> None:
    """Forget the process-wide database (after settings changed, or in a forked child)."""
    global _database
    with _lock:
        if _database is not None and _database.pid == os.getpid():
            _database.dispose()
        _database = None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn SQLAlchemy errors into the platform's family; platform errors pass through."""
    try:
        yield
    except PlatformError:
        raise
    except IntegrityError as exc:
        raise StoreError(f"the database refused the write: {_diag(exc)}", constraint=_constraint(exc)) from exc
    except OperationalError as exc:
        raise ServiceUnavailable(f"the database is not reachable: {_diag(exc)}") from exc
    except (DBAPIError, SQLAlchemyError) as exc:
        raise StoreError(f"database error: {_diag(exc)}") from exc


def _diag(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _constraint(exc: SQLAlchemyError) -> str | None:
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None)
