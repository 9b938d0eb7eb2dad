"""What a handler gets besides its payload: who it is, what it may use (the database, the
settings, the clock: passed in, never looked up, so a test builds them and hands them over), a
logger that writes `job_logs`, and a way to report progress."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from shared.clock import Clock
from shared.db import Database
from shared.outcomes import Cancel
from shared.outside_text import clean
from shared.settings import Settings
from worker.deadlines import AttemptTimedOut

MAX_LOG_LINES_PER_ATTEMPT = 1000
MAX_LOG_LINE = 8000  # characters of one job_logs message
JOB_LOG_MIN_LEVEL = logging.INFO
PROGRESS_MIN_INTERVAL_SECONDS = 1.0


@dataclass
class LogLine:
    at: datetime
    level: str
    message: str


@dataclass
class JobContext:
    job_id: int
    attempt: int
    max_attempts: int
    job_type: str
    queue: str
    task_id: str | None
    metadata: dict[str, Any]
    logger: "JobLogger"
    database: Database  # the worker process's (its pool is bounded for the process's threads)
    settings: Settings
    clock: Clock
    _write_progress: Callable[[float], None]
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _timed_out: threading.Event = field(default_factory=threading.Event)
    _last_progress_at: float = 0.0
    _pending_progress: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    end_taken: bool = False  # set by the runner: the attempt's end is written once, by one thread

    @property
    def cancelled(self) -> bool:
        """True once an operator (API, CLI, Flower revoke) asked this job to stop, or once the
        attempt ran past its job's timeout on a pool without time limits (threads)."""
        return self._cancelled.is_set() or self._timed_out.is_set()

    def request_cancel(self) -> None:
        self._cancelled.set()

    def time_out(self) -> None:
        """The attempt's deadline passed (worker/deadlines.py): ask the handler to stop."""
        self._timed_out.set()

    @property
    def timed_out(self) -> bool:
        return self._timed_out.is_set()

    def checkpoint(self) -> None:
        """Stop here if cancellation was requested (raises `Cancel`, ending the job cancelled) or
        the attempt's deadline passed (raises `AttemptTimedOut`, recorded as timed out). Call it
        between units of work; a handler that never does is stopped by force after the grace
        period (prefork) or abandoned and recorded timed out (threads)."""
        if self._cancelled.is_set():
            raise Cancel("cancellation requested")
        if self._timed_out.is_set():
            raise AttemptTimedOut("the attempt ran past its job's timeout")

    def progress(self, fraction: float) -> None:
        """Report progress 0.0..1.0. Writes are coalesced to one a second; the last value is
        written when the attempt ends."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("progress must be between 0.0 and 1.0")
        with self._lock:
            self._pending_progress = fraction
            if time.monotonic() - self._last_progress_at < PROGRESS_MIN_INTERVAL_SECONDS:
                return
            self._last_progress_at = time.monotonic()
            self._pending_progress = None
        self._write_progress(fraction)

    def flush_progress(self) -> None:
        with self._lock:
            pending, self._pending_progress = self._pending_progress, None
        if pending is not None:
            self._write_progress(pending)


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose lines go to the process log *and* to the job's `job_logs` rows (kept in
    memory during the attempt, written when it ends, bounded per attempt)."""

    def __init__(self, base: logging.Logger, extra: dict[str, Any]) -> None:
        super().__init__(base, extra)
        self.lines: list[LogLine] = []
        self.dropped = 0

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        # Captured for `job_logs` whatever the process's own log level: operators read a job's
        # log per job, and a quiet worker log must not make it empty. A line may quote anything
        # (a remote answer, an exception), so it is cleaned like all text from outside.
        if level >= JOB_LOG_MIN_LEVEL:
            text = clean(str(msg) % args if args else str(msg), limit=MAX_LOG_LINE)
            if len(self.lines) < MAX_LOG_LINES_PER_ATTEMPT:
                self.lines.append(LogLine(datetime.now(timezone.utc), logging.getLevelName(level), text))
            else:
                self.dropped += 1
            # The process log gets the same cleaned line (a NUL or a surrogate breaks log shippers).
            msg, args = "%s", (text,)
        super().log(level, msg, *args, **kwargs)
